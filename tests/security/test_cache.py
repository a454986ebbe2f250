"""The cache policy never hands one caller's answer to another (issue 9, item 7).

A shared cache that ignores ``Host``, credentials or ``Vary`` lets one request decide what
everyone else receives (cache poisoning) or replays a signed-in user's answer to anonymous
callers (RFC 9111 §3, §3.5, §4.1).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tollway.gateway.exchange.gateway import Gateway

from ..conftest import REDIS_URL, require_service
from ..servers import free_port
from .conftest import GatewayFactory

CACHE: dict[str, Any] = {"type": "cache", "ttl": 60}


@pytest.fixture
def cached_gateway(
    open_gateway: GatewayFactory, transport: str, asgi_api_calls: list[str]
) -> GatewayFactory:
    """``open_gateway`` that also checks the transport under test served every call itself:
    the cache once moved its API's calls from the fast transport to the ASGI one (issue 10)."""

    @contextmanager
    def start(policies: list[dict[str, Any]], **settings: Any) -> Iterator[str]:
        with open_gateway(policies, **settings) as base:
            yield base
        if transport == "fast":
            assert asgi_api_calls == [], "the fast transport handed cached calls to ASGI"
        else:
            assert asgi_api_calls

    return start


def seen(response: httpx.Response) -> dict[str, str]:
    """The request headers the echo backend received for this answer."""
    return dict(response.json()["headers"])


def test_a_foreign_host_header_cannot_poison_other_callers(cached_gateway: GatewayFactory) -> None:
    with cached_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        poisoned = client.get("/open/page", headers={"Host": "evil.example"})
        victim = client.get("/open/page")
    assert seen(poisoned)["x-forwarded-host"] == "evil.example"
    assert victim.headers["x-cache"] == "MISS"
    assert seen(victim)["x-forwarded-host"] == base.removeprefix("http://")


@pytest.mark.parametrize(
    "credentials",
    [{"Authorization": "Bearer alice-token"}, {"Cookie": "session=alice-session"}],
    ids=["authorization", "cookie"],
)
def test_an_answer_to_a_signed_in_caller_is_not_replayed_to_others(
    cached_gateway: GatewayFactory, credentials: dict[str, str]
) -> None:
    with cached_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        alice = [client.get("/open/me", headers=credentials) for _ in range(2)]
        anonymous = client.get("/open/me")
    assert [r.headers.get("x-cache") for r in alice] == [None, None]  # the cache stays out
    assert anonymous.headers["x-cache"] == "MISS"
    assert "alice" not in anonymous.text


def test_private_caching_when_allowed_is_kept_per_credential(
    cached_gateway: GatewayFactory,
) -> None:
    policy = {**CACHE, "allow_private_response_caching": True}
    path = "/open/with-headers?Cache-Control=private"
    alice = {"Authorization": "Bearer alice-token"}
    with cached_gateway([policy]) as base, httpx.Client(base_url=base) as client:
        first, again = client.get(path, headers=alice), client.get(path, headers=alice)
        bob = client.get(path, headers={"Authorization": "Bearer bob-token"})
        anonymous = client.get(path)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert bob.headers["x-cache"] == "MISS" and "alice" not in bob.text
    assert anonymous.headers["x-cache"] == "MISS" and "alice" not in anonymous.text


def test_vary_keeps_one_answer_per_varied_header(cached_gateway: GatewayFactory) -> None:
    path = "/open/with-headers?Vary=Accept-Language"
    french, english = {"Accept-Language": "fr"}, {"Accept-Language": "en"}
    with cached_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        first = client.get(path, headers=french)
        other = client.get(path, headers=english)
        again = client.get(path, headers=french)
        english_again = client.get(path, headers=english)
    assert first.headers["x-cache"] == "MISS"
    assert other.headers["x-cache"] == "MISS"
    assert seen(other)["accept-language"] == "en"
    assert again.headers["x-cache"] == "HIT" and seen(again)["accept-language"] == "fr"
    assert english_again.headers["x-cache"] == "HIT"
    assert seen(english_again)["accept-language"] == "en"


def test_vary_star_is_never_served_from_the_cache(cached_gateway: GatewayFactory) -> None:
    with cached_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        answers = [client.get("/open/with-headers?Vary=*") for _ in range(2)]
    assert [r.headers["x-cache"] for r in answers] == ["MISS", "MISS"]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """(status, bytes in, bytes out) of every API call as usage records it."""
    calls: list[tuple[int, int, int]] = []
    record = Gateway.record_exchange

    def spy(self: Gateway, exchange: Any) -> None:
        calls.append((exchange.status, exchange.bytes_in, exchange.bytes_out))
        record(self, exchange)

    monkeypatch.setattr(Gateway, "record_exchange", spy)
    return calls


def test_a_repeat_is_answered_by_the_gateway_without_the_backend(
    cached_gateway: GatewayFactory, recorded: list[tuple[int, int, int]]
) -> None:
    with cached_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        first, again = client.get("/open/doc"), client.get("/open/doc")
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert again.json()["served"] == first.json()["served"]  # the backend was not called
    assert again.content == first.content
    assert int(again.headers["age"]) >= 0 and "age" not in first.headers
    assert again.headers["content-length"] == str(len(first.content))
    assert recorded == [(200, 0, len(first.content))] * 2


def test_head_is_answered_from_the_get_entry_without_a_body(
    cached_gateway: GatewayFactory,
) -> None:
    with cached_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        head_first = client.head("/open/doc")
        got = client.get("/open/doc")
        head = client.head("/open/doc")
        again = client.get("/open/doc")  # (the same connection: HEAD left it in step)
    assert "x-cache" not in head_first.headers  # a HEAD is never stored
    assert got.headers["x-cache"] == "MISS"
    assert head.headers["x-cache"] == "HIT" and head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert again.headers["x-cache"] == "HIT" and again.content == got.content


def test_a_response_over_max_entry_bytes_is_never_kept(cached_gateway: GatewayFactory) -> None:
    policy = {**CACHE, "max_entry_bytes": 1000}
    with cached_gateway([policy]) as base, httpx.Client(base_url=base) as client:
        large = [client.get("/open/stream?size=3000&chunk=400") for _ in range(2)]
        small = [client.get("/open/stream?size=1000&chunk=400") for _ in range(2)]
    assert [r.headers["x-cache"] for r in large] == ["MISS", "MISS"]
    assert all(r.content == b"x" * 3000 for r in large)  # streamed whole all the same
    assert [r.headers["x-cache"] for r in small] == ["MISS", "HIT"]
    assert small[1].content == b"x" * 1000


def test_a_hit_carries_the_cors_and_limit_headers_of_its_own_caller(
    cached_gateway: GatewayFactory,
) -> None:
    first_origin, other_origin = "https://a.example", "https://b.example"
    policies = [
        {"type": "cors", "origins": [first_origin, other_origin]},
        {"type": "rate-limit", "calls": 5, "period": 60, "key": "ip", "name": "per-ip"},
        {"type": "set-header", "response": {"x-served-by": "tollway"}},
        CACHE,
    ]
    with cached_gateway(policies) as base, httpx.Client(base_url=base) as client:
        first = client.get("/open/doc", headers={"Origin": first_origin})
        hit = client.get("/open/doc", headers={"Origin": other_origin})
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["access-control-allow-origin"] == other_origin
    assert first.headers["ratelimit"].startswith('"per-ip";r=4;')
    assert hit.headers["ratelimit"].startswith('"per-ip";r=3;')  # a hit is still a call
    assert hit.headers["x-served-by"] == "tollway"


def test_the_shared_redis_cache_answers_repeats(cached_gateway: GatewayFactory) -> None:
    redis_url = require_service(REDIS_URL, "redis")
    path = f"/open/doc?nonce={uuid.uuid4().hex}"  # (entries outlive the test in Redis)
    with (
        cached_gateway([CACHE], redis_url=redis_url) as base,
        httpx.Client(base_url=base) as client,
    ):
        first = client.get(path)
        # The fast transport stores a miss once it has gone out: a repeat may race the write.
        answers = [client.get(path) for _ in range(20)]
    assert first.headers["x-cache"] == "MISS"
    hits = [r for r in answers if r.headers["x-cache"] == "HIT"]
    assert hits and hits[-1].json()["served"] == hits[0].json()["served"]
    assert answers[-1].headers["x-cache"] == "HIT"


def test_cache_hits_cannot_dodge_a_byte_quota(cached_gateway: GatewayFactory) -> None:
    quota = {"type": "quota", "bytes": 1500, "period": "day", "key": "ip", "name": "volume"}
    with cached_gateway([quota, CACHE]) as base, httpx.Client(base_url=base) as client:
        answers = [client.get("/open/stream?size=1000") for _ in range(3)]
    assert [r.headers.get("x-cache") for r in answers[:2]] == ["MISS", "HIT"]
    assert answers[2].status_code == 429  # the hit's 1000 bytes counted too
    assert answers[2].json()["type"] == "/-/problems/quota-exceeded"


def test_an_unreachable_cache_store_only_costs_the_cache(cached_gateway: GatewayFactory) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with cached_gateway([CACHE], redis_url=redis_url) as base, httpx.Client(base_url=base) as c:
        answers = [c.get("/open/doc") for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200]
    assert [r.headers["x-cache"] for r in answers] == ["MISS", "MISS"]
    assert answers[1].json()["served"] > answers[0].json()["served"]
