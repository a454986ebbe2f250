"""Runs the deploy action: an argv template, without a shell, with a timeout.

The seed built ``docker pull {repo_name}`` as one string and ran it with ``shell=True``, so a
repository name such as ``x; rm -rf /`` was a command. Here the names are validated first
(``checks.py``) and each is substituted into exactly one argv element, which no shell reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from tollway.samples.webhook.deliveries import Delivery

logger = logging.getLogger("tollway.samples.webhook")
CHUNK = 65536
OUTPUT_GRACE = 2.0  # seconds to drain output after the action ended


def render_argv(template: list[str], values: dict[str, str]) -> list[str]:
    """The template with ``{repo_name}`` etc. filled in; placeholders were checked at load."""
    return [arg.format_map(values) for arg in template]


async def read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Everything up to ``limit`` bytes of ``stream``, and whether more was discarded."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(CHUNK):
        room = limit - len(kept)
        kept += chunk[:room]
        truncated = truncated or len(chunk) > room
    return bytes(kept), truncated


async def run_action(
    argv: list[str],
    delivery: Delivery,
    time_limit: float,
    max_output: int,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``argv`` and record exit code, duration, output and timeout on ``delivery``.

    The duration is measured with ``clock`` (seconds; tests pass one they control).
    """
    started = clock()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
    except OSError as exc:
        delivery.state = "failed"
        delivery.error = f"could not start {argv[0]!r}: {exc.strerror or exc}"
        logger.error("deploy action for %r failed to start: %s", delivery.repo_name, exc)
        return
    assert process.stdout is not None
    reading = asyncio.ensure_future(read_bounded(process.stdout, max_output))
    try:
        try:
            await asyncio.wait_for(process.wait(), time_limit)
        except TimeoutError:
            delivery.timed_out = True
            await kill(process)
        output, truncated = await asyncio.wait_for(reading, OUTPUT_GRACE)
    except TimeoutError:  # a detached grandchild still holds the pipe open
        output, truncated = b"", True
    finally:
        delivery.duration_seconds = round(clock() - started, 3)
        reading.cancel()
        if process.returncode is None:  # cancelled at shutdown: leave no orphan behind
            await kill(process)
            delivery.state, delivery.error = "failed", "killed at shutdown"
    record_outcome(delivery, process.returncode, output, truncated, time_limit)


async def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the action's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def record_outcome(
    delivery: Delivery, exit_code: int | None, output: bytes, truncated: bool, time_limit: float
) -> None:
    """Store how the action ended on ``delivery`` and log it."""
    delivery.output = output.decode("utf-8", errors="replace")
    delivery.output_truncated = truncated
    delivery.exit_code = exit_code
    if delivery.timed_out:
        delivery.state = "timed_out"
        delivery.error = f"killed after {time_limit:g} s"
    else:
        delivery.state = "succeeded" if exit_code == 0 else "failed"
    logger.info(
        "deploy action for %r ended: %s (exit code %s)",
        delivery.repo_name,
        delivery.state,
        exit_code,
    )
