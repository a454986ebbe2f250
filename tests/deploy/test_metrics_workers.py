"""``tollway serve --workers 2``: ``/-/metrics`` adds up both workers, whichever one answers the
scrape; the JSON access log is one object per line (issue 12, items 1 and 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL, require_service
from tests.servers import free_port, tollway_env

from .helpers import CLEAN_EXIT, prepare_store, process_env, running, stop, wait_http

CALLS = 24
REFUSED = 6


def totals(base: str) -> dict[str, float]:
    """Calls counted per status class, from one scrape on a new connection (any worker)."""
    response = httpx.get(f"{base}/-/metrics", headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "tollway_requests_total" and sample.labels["api"] == "echo":
                status_class = sample.labels["status_class"]
                out[status_class] = out.get(status_class, 0) + sample.value
    return out


@pytest.mark.slow
def test_two_workers_add_up_and_log_json(tmp_path: Path, echo_url: str) -> None:
    redis_url = require_service(REDIS_URL, "redis")
    database_url = f"sqlite:///{tmp_path / 'tollway.db'}"
    key = prepare_store(database_url, echo_url)
    port = free_port()
    scratch = tmp_path / "tmp"  # where the server makes (and removes) its metrics directory
    scratch.mkdir()
    env = process_env(
        tollway_env(
            database_url,
            TOLLWAY_REDIS_URL=redis_url,
            TOLLWAY_PORT=str(port),
            TOLLWAY_ACCESS_LOG="json",
            TMPDIR=str(scratch),
        )
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base = f"http://127.0.0.1:{port}"
    with running(["tollway", "serve", "--workers", "2"], env, cwd=tmp_path) as process:
        wait_http(f"{base}/-/ready", process, timeout=60)
        assert len(list(scratch.iterdir())) == 1  # the workers' shared metrics directory
        # Every call on a new connection, so that both workers take their share.
        fresh = {"Connection": "close"}
        codes = [
            httpx.get(f"{base}/echo/x", headers={**fresh, "X-API-Key": key}).status_code
            for _ in range(CALLS)
        ]
        codes += [httpx.get(f"{base}/echo/x", headers=fresh).status_code for _ in range(REFUSED)]
        assert codes == [200] * CALLS + [401] * REFUSED
        deadline = time.monotonic() + 10
        while totals(base) != {"2xx": CALLS, "4xx": REFUSED} and time.monotonic() < deadline:
            time.sleep(0.05)
        scrapes = [totals(base) for _ in range(8)]  # answered by one worker or the other
        gauges = httpx.get(f"{base}/-/metrics", headers={"Connection": "close"}).text
        (shared,) = scratch.iterdir()
        pids = {path.stem.rsplit("_", 1)[1] for path in shared.glob("counter_*.db")}
        assert len(pids) == 2, pids  # both workers write there
        code, output = stop(process)
    assert code in CLEAN_EXIT, output
    assert scrapes == [{"2xx": CALLS, "4xx": REFUSED}] * 8, scrapes
    assert list(scratch.iterdir()) == []  # removed once the workers stopped
    # Gauges too: the lowest configuration version of the running workers, their backends.
    families = {f.name: f for f in text_string_to_metric_families(gauges)}
    assert families["tollway_config_version"].samples[0].value > 0
    pools = {s.labels["state"] for s in families["tollway_upstream_connections"].samples}
    assert pools == {"open", "idle"}
    lines = [line for line in output.splitlines() if line.startswith("{")]
    calls = [json.loads(line) for line in lines if '"api":"echo"' in line]
    assert len(calls) == CALLS + REFUSED
    assert {entry["status"] for entry in calls} == {200, 401}
    assert all(entry["path"] == "/echo/x" and entry["request_id"] for entry in calls)
    assert key not in output
    assert "Traceback" not in output
