"""A planned Sentinel fail-over demotes the master under the store's open connection: the
store notices (Redis answers READONLY), asks the sentinel again and counts on where it was."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import pytest

from tollway.stores import StoreUnavailable, open_stores
from tollway.stores.base import LimitCheck

from ..redis_servers import sentinel_group

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_demoted_master_is_left_for_the_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = LimitCheck(f"test:{uuid.uuid4().hex}", 5, 60, 1000, 1.0, True)
    with sentinel_group(tmp_path) as group:
        counters, _ = open_stores(group.url)
        try:
            assert [(await counters.check([check]))[0] for _ in range(3)] == [True] * 3
            old = group.master
            await anyio.to_thread.run_sync(group.switch_over)
            assert old.info("replication")["role"] == "slave"  # alive, and read-only now
            failed, deadline = 0, time.monotonic() + 30
            while True:  # (the store waits a second after a failure before trying again)
                try:
                    first = (await counters.check([check]))[0]
                    break
                except StoreUnavailable:
                    failed += 1
                    assert time.monotonic() < deadline, "the store never found the new master"
                    await anyio.sleep(0.05)
            rest = [(await counters.check([check]))[0] for _ in range(2)]
        finally:
            await counters.aclose()
    assert [first, *rest] == [True, True, False]  # 3 + 2 = the limit, then refused
    assert failed <= 40  # about a second of refusals at most, not a stuck connection
    outage = [r.getMessage() for r in caplog.records if r.name == "tollway.stores"]
    assert outage[0].startswith("redis unreachable: READONLY")  # it was told, and left
