"""Usage recording: per subscription x API x minute x status class, batched, outage-proof (over
sockets, both transports)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from tollway.db.models import Api, Usage

from .conftest import Served

pytestmark = pytest.mark.anyio


def usage_rows(engine: Engine) -> dict[tuple[int, str, int], tuple[int, int, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Usage.subscription_id,
                Api.name,
                Usage.status_class,
                Usage.calls,
                Usage.bytes_in,
                Usage.bytes_out,
            ).join(Api, Api.id == Usage.api_id)
        )
        totals: dict[tuple[int, str, int], tuple[int, int, int]] = {}
        for sid, api, status_class, calls, bytes_in, bytes_out in rows:
            old = totals.get((sid, api, status_class), (0, 0, 0))
            totals[(sid, api, status_class)] = (
                old[0] + calls,
                old[1] + bytes_in,
                old[2] + bytes_out,
            )
        return totals


async def test_calls_are_counted_by_subscription_api_and_status_class(
    served: Served, engine: Engine
) -> None:
    keys = served.subscribe()
    sid = keys.subscription.id
    await served.refresh()
    headers = {"X-API-Key": keys.primary}
    for _ in range(3):
        assert (await served.client.post("/echo/x", content=b"12345", headers=headers)).is_success
    await served.client.get("/names/generate_name?starts_with=zzz", headers=headers)
    await served.client.get("/names/generate_name")  # no key: counted against no subscription
    await served.counted(5)
    await served.flush_usage()
    rows = usage_rows(engine)
    calls, bytes_in, bytes_out = rows[(sid, "echo", 2)]
    assert (calls, bytes_in) == (3, 15)
    assert bytes_out > 0
    assert rows[(sid, "names", 4)][0] == 1
    assert rows[(0, "names", 4)][0] == 1


async def test_flushes_add_up_instead_of_overwriting(served: Served, engine: Engine) -> None:
    keys = served.subscribe()
    await served.refresh()
    for _ in range(2):
        await served.client.get("/echo/x", headers={"X-API-Key": keys.primary})
        await served.counted(1)
        await served.flush_usage()
    assert usage_rows(engine)[(keys.subscription.id, "echo", 2)][0] == 2


async def test_store_outage_neither_blocks_traffic_nor_loses_usage(
    served: Served, engine: Engine
) -> None:
    keys = served.subscribe()
    await served.refresh()
    Usage.__table__.drop(engine)  # the usage table is gone: every write now fails
    for _ in range(5):
        response = await served.client.get("/echo/x", headers={"X-API-Key": keys.primary})
        assert response.status_code == 200
    await served.counted(5)
    await served.flush_usage()
    assert served.gateway.health.usage_write_failures == 1
    assert sum(row[0] for row in served.gateway.usage.rows.values()) == 5  # kept for retry
    Usage.__table__.create(engine)
    await served.flush_usage()
    assert usage_rows(engine)[(keys.subscription.id, "echo", 2)][0] == 5
    assert served.gateway.usage.rows == {}
