"""Subscription keys at the gateway: who gets in, who gets which error (over sockets, both
transports)."""

from __future__ import annotations

import pytest

from tollway.db.models import SubscriptionState, UserState
from tollway.db.session import transaction
from tollway.services import subscriptions, users

from .conftest import Served

pytestmark = pytest.mark.anyio


async def test_valid_key_reaches_the_names_backend(served: Served) -> None:
    keys = served.subscribe()
    await served.refresh()
    response = await served.client.get(
        "/names/generate_name", params={"starts_with": "n"}, headers={"X-API-Key": keys.primary}
    )
    assert response.status_code == 200
    assert response.json()["name"].lower().startswith("n")


async def test_no_match_is_a_404_problem_not_a_500(served: Served) -> None:
    keys = served.subscribe()
    await served.refresh()
    response = await served.client.get(
        "/names/generate_name?starts_with=zzz", headers={"X-API-Key": keys.primary}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_missing_key_is_401_problem(served: Served) -> None:
    response = await served.client.get("/names/generate_name")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/-/problems/missing-key"


@pytest.mark.parametrize("state", [SubscriptionState.suspended, SubscriptionState.cancelled])
async def test_wrong_and_revoked_keys_get_the_same_401(
    served: Served, state: SubscriptionState
) -> None:
    keys = served.subscribe()
    with transaction(served.sessions) as session:
        sub = subscriptions.get_subscription(session, keys.subscription.id)
        subscriptions.set_subscription_state(session, sub, state)
    await served.refresh()
    wrong = await served.client.get("/names/generate_name", headers={"X-API-Key": "tw_nope"})
    revoked = await served.client.get("/names/generate_name", headers={"X-API-Key": keys.primary})
    assert wrong.status_code == revoked.status_code == 401
    assert wrong.json() == revoked.json()  # nothing tells a guessed key from a revoked one


async def test_blocked_user_keys_stop_working(served: Served) -> None:
    keys = served.subscribe()
    await served.refresh()
    ok = await served.client.get("/echo/x", headers={"X-API-Key": keys.primary})
    assert ok.status_code == 200
    with transaction(served.sessions) as session:
        users.set_user_state(session, users.get_user(session, "dev@example.com"), UserState.blocked)
    await served.refresh()
    blocked = await served.client.get("/echo/x", headers={"X-API-Key": keys.primary})
    assert blocked.status_code == 401


async def test_key_for_a_product_without_the_api_is_403(served: Served) -> None:
    keys = served.subscribe(product="other-only")
    await served.refresh()
    allowed = await served.client.get("/other/x", headers={"X-API-Key": keys.primary})
    denied = await served.client.get("/names/generate_name", headers={"X-API-Key": keys.primary})
    assert allowed.status_code == 200
    assert denied.status_code == 403
    assert denied.json()["type"] == "/-/problems/api-not-in-subscription"


async def test_key_in_query_parameter_works_and_is_not_forwarded(served: Served) -> None:
    keys = served.subscribe()
    await served.refresh()
    response = await served.client.get(
        "/echo/things", params={"subscription-key": keys.primary, "colour": "red"}
    )
    assert response.status_code == 200
    assert response.json()["query"] == "colour=red"
    assert keys.primary not in response.text


async def test_key_header_is_not_forwarded(served: Served) -> None:
    keys = served.subscribe()
    await served.refresh()
    response = await served.client.get("/echo/x", headers={"X-API-Key": keys.primary})
    forwarded = {name for name, _ in response.json()["headers"]}
    assert "x-api-key" not in forwarded
    assert keys.primary not in response.text


async def test_rotation_old_primary_stops_secondary_keeps_working(served: Served) -> None:
    keys = served.subscribe()
    await served.refresh()
    with transaction(served.sessions) as session:
        sub = subscriptions.get_subscription(session, keys.subscription.id)
        new_primary = subscriptions.regenerate_key(session, sub, "primary")
    await served.refresh()

    async def status(key: str) -> int:
        response = await served.client.get("/echo/x", headers={"X-API-Key": key})
        return response.status_code

    assert await status(keys.primary) == 401
    assert await status(keys.secondary) == 200
    assert await status(new_primary) == 200


async def test_open_api_needs_no_key(served: Served) -> None:
    response = await served.client.get("/open/anything")
    assert response.status_code == 200
    assert response.json()["path"] == "/anything"


async def test_unknown_path_is_a_404_problem(served: Served) -> None:
    response = await served.client.get("/nothing-here/x")
    assert response.status_code == 404
    assert response.json()["type"] == "/-/problems/not-found"


async def test_problem_types_are_documented(served: Served) -> None:
    missing = await served.client.get("/names/generate_name")
    page = await served.client.get(missing.json()["type"])
    assert page.status_code == 200
    assert "Subscription key required" in page.text
