"""The cache policy never hands one caller's answer to another (issue 9, item 7).

A shared cache that ignores ``Host``, credentials or ``Vary`` lets one request decide what
everyone else receives (cache poisoning) or replays a signed-in user's answer to anonymous
callers (RFC 9111 §3, §3.5, §4.1).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import GatewayFactory

CACHE: dict[str, Any] = {"type": "cache", "ttl": 60}


def seen(response: httpx.Response) -> dict[str, str]:
    """The request headers the echo backend received for this answer."""
    return dict(response.json()["headers"])


def test_a_foreign_host_header_cannot_poison_other_callers(open_gateway: GatewayFactory) -> None:
    with open_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
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
    open_gateway: GatewayFactory, credentials: dict[str, str]
) -> None:
    with open_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        alice = [client.get("/open/me", headers=credentials) for _ in range(2)]
        anonymous = client.get("/open/me")
    assert [r.headers.get("x-cache") for r in alice] == [None, None]  # the cache stays out
    assert anonymous.headers["x-cache"] == "MISS"
    assert "alice" not in anonymous.text


def test_private_caching_when_allowed_is_kept_per_credential(
    open_gateway: GatewayFactory,
) -> None:
    policy = {**CACHE, "allow_private_response_caching": True}
    path = "/open/with-headers?Cache-Control=private"
    alice = {"Authorization": "Bearer alice-token"}
    with open_gateway([policy]) as base, httpx.Client(base_url=base) as client:
        first, again = client.get(path, headers=alice), client.get(path, headers=alice)
        bob = client.get(path, headers={"Authorization": "Bearer bob-token"})
        anonymous = client.get(path)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert bob.headers["x-cache"] == "MISS" and "alice" not in bob.text
    assert anonymous.headers["x-cache"] == "MISS" and "alice" not in anonymous.text


def test_vary_keeps_one_answer_per_varied_header(open_gateway: GatewayFactory) -> None:
    path = "/open/with-headers?Vary=Accept-Language"
    french, english = {"Accept-Language": "fr"}, {"Accept-Language": "en"}
    with open_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
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


def test_vary_star_is_never_served_from_the_cache(open_gateway: GatewayFactory) -> None:
    with open_gateway([CACHE]) as base, httpx.Client(base_url=base) as client:
        answers = [client.get("/open/with-headers?Vary=*") for _ in range(2)]
    assert [r.headers["x-cache"] for r in answers] == ["MISS", "MISS"]
