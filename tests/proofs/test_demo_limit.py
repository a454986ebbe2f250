"""The demo's names API carries seed 000's limit: 20 calls per 90 s per subscription."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import SECRET, in_process, longest_retry_after, make_gateway
from tollway.crypto import SecretBox
from tollway.demo.setup import prepare_demo

pytestmark = pytest.mark.anyio


async def test_demo_names_api_is_rate_limited(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # demo backends may keep files in the working directory
    demo = prepare_demo(sqlite_engine, SecretBox(SECRET))
    headers = {"X-API-Key": demo.key}
    async with in_process(make_gateway(sqlite_engine, sqlite_url)) as client:
        replies = [await client.get("/names/generate_name", headers=headers) for _ in range(20)]
        refused = await client.get("/names/generate_name", headers=headers)
    assert [r.status_code for r in replies] == [200] * 20
    assert replies[0].headers["ratelimit-policy"] == '"20-per-90s";q=20;w=90'
    assert replies[0].headers["ratelimit"].startswith('"20-per-90s";r=19;t=')
    assert replies[-1].headers["ratelimit"].startswith('"20-per-90s";r=0;t=')
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= longest_retry_after(20, 90)
    assert "20-per-90s" in refused.json()["detail"]
