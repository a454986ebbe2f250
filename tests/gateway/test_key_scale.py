"""A large key index (issue 17): config changes keep it, key changes touch only their keys.

25,000 keys (12,500 subscriptions written in bulk by ``bench/population.py``), over sockets on
both transports and both stores. What was loaded is read from the loader's counts, never from
timings; what a user notices is checked over HTTP.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from bench.population import Population, populate
from tollway.config.apply import apply_config
from tollway.config.model import TollwayConfig
from tollway.crypto import SecretBox
from tollway.db.models import SubscriptionState, UserState
from tollway.db.session import session_factory, transaction
from tollway.services import subscriptions, users

from .conftest import BASE_CONFIG, SECRET, Served, apply, over_sockets

pytestmark = pytest.mark.anyio

SUBSCRIPTIONS = 12_500
SAMPLE = (0, 1, 4_999, 6_250, SUBSCRIPTIONS - 1)  # subscriptions whose keys are called over HTTP


async def loaded(served: Served) -> Population:
    """The population in the store and in the gateway's index (a full load, as at start)."""
    population = populate(served.gateway.engine, "starter", SUBSCRIPTIONS)
    await served.in_server(served.gateway.reload)
    assert len(served.gateway.state.keys) == 2 * SUBSCRIPTIONS
    return population


async def status(served: Served, path: str, key: str) -> int:
    return (await served.client.get(path, headers={"X-API-Key": key})).status_code


def every_key_found(served: Served, population: Population) -> bool:
    lookup = served.gateway.state.keys.lookup
    return all(
        lookup(hashlib.sha256(population.key(n, slot).encode()).digest()) is not None
        for n in range(population.count)
        for slot in ("primary", "secondary")
    )


def with_apis(served: Served, *apis: str, extra: bool = True) -> dict[str, Any]:
    config: dict[str, Any] = {
        **BASE_CONFIG,
        "apis": {**BASE_CONFIG["apis"]},
        "products": {**BASE_CONFIG["products"], "starter": {"apis": list(apis)}},
    }
    if extra:
        config["apis"]["extra"] = {"path": "/extra", "backend": "echo"}
    return over_sockets(config, served.names_url, served.echo_url)


async def test_config_change_keeps_every_key_and_reads_none(served: Served) -> None:
    population = await loaded(served)
    index, counts = served.gateway.state.keys, served.gateway.loader.counts
    full_loads, keys_loaded = counts.full_loads, counts.keys_loaded
    assert await status(served, "/extra/x", population.key(0)) == 404  # no such API yet

    # An unrelated API, and a change to the product the keys belong to:
    apply(served.gateway.engine, with_apis(served, "names", "echo", "open"))
    await served.refresh()
    apply(served.gateway.engine, with_apis(served, "names", "echo", "open", "extra"))
    await served.refresh()

    assert counts.config_loads >= 2
    assert (counts.full_loads, counts.keys_loaded) == (full_loads, keys_loaded)
    assert served.gateway.state.keys is index  # the same index, not a rebuilt one
    assert every_key_found(served, population)
    for n in SAMPLE:
        for slot in ("primary", "secondary"):
            assert await status(served, "/echo/x", population.key(n, slot)) == 200
            # the product's new API is open to keys issued before the change
            assert await status(served, "/extra/x", population.key(n, slot)) == 200


async def test_an_api_taken_out_of_a_product_closes_to_its_existing_keys(served: Served) -> None:
    population = await loaded(served)
    full_loads = served.gateway.loader.counts.full_loads
    apply(served.gateway.engine, with_apis(served, "names", "open", extra=False))
    await served.refresh()
    for n in SAMPLE:
        assert await status(served, "/echo/x", population.key(n)) == 403
        assert await status(served, "/names/generate_name", population.key(n)) == 200
    assert served.gateway.loader.counts.full_loads == full_loads


async def test_key_changes_take_effect_and_touch_only_their_keys(served: Served) -> None:
    population = await loaded(served)
    counts = served.gateway.loader.counts
    engine = served.gateway.engine
    revoked, suspended, rotated = (population.subscription_id(engine, n) for n in (1, 2, 3))
    full_loads, keys_loaded = counts.full_loads, counts.keys_loaded

    new = served.subscribe("new@example.com")
    with transaction(served.sessions) as session:
        subscriptions.set_subscription_state(
            session, subscriptions.get_subscription(session, revoked), SubscriptionState.cancelled
        )
        subscriptions.set_subscription_state(
            session, subscriptions.get_subscription(session, suspended), SubscriptionState.suspended
        )
        new_primary = subscriptions.regenerate_key(
            session, subscriptions.get_subscription(session, rotated), "primary"
        )
    before = counts.subscriptions_updated
    await served.refresh()

    assert counts.subscriptions_updated - before == 4  # the four changed subscriptions, no more
    assert counts.full_loads == full_loads
    assert len(served.gateway.state.keys) == 2 * SUBSCRIPTIONS - 4 + 2
    assert await status(served, "/echo/x", new.primary) == 200
    assert await status(served, "/echo/x", new.secondary) == 200
    assert await status(served, "/echo/x", population.key(1)) == 401
    assert await status(served, "/echo/x", population.key(2, "secondary")) == 401
    assert await status(served, "/echo/x", population.key(3)) == 401  # the regenerated one
    assert await status(served, "/echo/x", new_primary) == 200
    assert await status(served, "/echo/x", population.key(3, "secondary")) == 200
    assert await status(served, "/echo/x", population.key(4)) == 200

    # Resuming the suspended one brings its keys back; blocking a user takes all of theirs.
    with transaction(served.sessions) as session:
        subscriptions.set_subscription_state(
            session, subscriptions.get_subscription(session, suspended), SubscriptionState.active
        )
        owner = users.get_user(session, population.email(3))  # subscriptions 6 and 7
        users.set_user_state(session, owner, UserState.blocked)
    before = counts.subscriptions_updated
    await served.refresh()
    assert counts.subscriptions_updated - before == 3
    assert await status(served, "/echo/x", population.key(2)) == 200
    assert await status(served, "/echo/x", population.key(6)) == 401
    assert await status(served, "/echo/x", population.key(7, "secondary")) == 401
    assert await status(served, "/echo/x", population.key(8)) == 200
    assert counts.full_loads == full_loads

    # A full load (as at the next start) agrees: blocked users' and suspended keys stay out.
    await served.in_server(served.gateway.reload)
    assert counts.keys_loaded - keys_loaded == SUBSCRIPTIONS + 1 - 2 - 1  # new, blocked, cancelled
    assert await status(served, "/echo/x", population.key(7)) == 401
    assert await status(served, "/echo/x", population.key(1)) == 401
    assert await status(served, "/echo/x", population.key(2)) == 200
    assert await status(served, "/echo/x", new.primary) == 200


async def test_deleting_a_product_removes_its_keys_without_a_reload(served: Served) -> None:
    population = populate(served.gateway.engine, "other-only", 500, tag="other")
    await served.in_server(served.gateway.reload)
    full_loads = served.gateway.loader.counts.full_loads
    keep = served.subscribe()
    await served.refresh()
    assert await status(served, "/other/x", population.key(499)) == 200

    config = {**over_sockets(BASE_CONFIG, served.names_url, served.echo_url)}
    config["products"] = {"starter": BASE_CONFIG["products"]["starter"]}
    apply_config(
        session_factory(served.gateway.engine),
        TollwayConfig.model_validate(config),
        prune=True,
        secret_box=SecretBox(SECRET),
    )
    await served.refresh()
    assert await status(served, "/other/x", population.key(499)) == 401  # unknown now, not 403
    assert len(served.gateway.state.keys) == 2
    assert await status(served, "/echo/x", keep.primary) == 200
    assert served.gateway.loader.counts.full_loads == full_loads
