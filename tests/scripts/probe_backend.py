"""The smallest PEP 517/660 build backend: an empty wheel named probe 0.

The scratch project of tests/scripts/test_bootstrap.py builds with it (it is not Tollway's).
"""

from __future__ import annotations

import zipfile

DIST = "probe-0.dist-info"
FILES = {
    f"{DIST}/METADATA": "Metadata-Version: 2.1\nName: probe\nVersion: 0\n",
    f"{DIST}/WHEEL": "Wheel-Version: 1.0\nGenerator: probe\nRoot-Is-Purelib: true\n"
    "Tag: py3-none-any\n",
}


def build_wheel(
    wheel_directory: str,
    config_settings: object = None,
    metadata_directory: str | None = None,
) -> str:
    name = "probe-0-py3-none-any.whl"
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as wheel:
        for path, text in FILES.items():
            wheel.writestr(path, text)
        wheel.writestr(f"{DIST}/RECORD", "".join(f"{p},,\n" for p in [*FILES, f"{DIST}/RECORD"]))
    return name


build_editable = build_wheel
