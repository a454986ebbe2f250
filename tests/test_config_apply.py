"""``tollway apply`` / ``export`` on SQLite and PostgreSQL: idempotent, all or nothing, no leaks."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tollway.config.apply import MASKED, Plan, apply_config
from tollway.config.export import dump_yaml, export_config
from tollway.config.loader import ConfigError, load_config
from tollway.crypto import SecretBox
from tollway.db.models import ChangeLog, NamedValue, Product, ProductApi, Subscription
from tollway.db.session import transaction
from tollway.services.subscriptions import create_subscription
from tollway.services.users import create_user

BOX = SecretBox("a test key that is long enough to be realistic")

BASE = """
backends:
  names:
    url: http://names.internal:8000
    headers: {x-functions-key: "{{function-app-key}}"}
named_values:
  function-app-key: {value: "${FUNCTION_APP_KEY}", secret: true}
  region: {value: west}
apis:
  names:
    title: Names
    path: /names
    backend: names
    operations: ["GET /generate_name"]
products:
  starter:
    title: Starter
    apis: [names]
"""
ENV = {"FUNCTION_APP_KEY": "fak-123-very-secret"}


def apply(
    sessions: sessionmaker[Session], source: str, env: dict[str, str] | None = None, **kw: Any
) -> list[str]:
    config = load_config(source, source="tollway.yaml", env=ENV if env is None else env)
    plan: Plan = apply_config(sessions, config, secret_box=BOX, **kw)
    return plan.lines()


def exported(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as session:
        return dump_yaml(export_config(session))


def config_changes(sessions: sessionmaker[Session]) -> int:
    with transaction(sessions) as session:
        return session.scalar(select(func.count()).select_from(ChangeLog)) or 0


def subscribe(sessions: sessionmaker[Session], product_name: str, email: str) -> None:
    with transaction(sessions) as session:
        product = session.scalar(select(Product).where(Product.name == product_name))
        assert product is not None
        create_subscription(session, create_user(session, email), product)


def test_first_apply_creates_everything_and_a_second_apply_changes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    assert apply(sessions, BASE) == [
        "+ create named value function-app-key",
        "+ create named value region",
        "+ create backend names",
        "+ create api names",
        "+ create product starter",
        "+ create product-api starter/names",
    ]
    assert config_changes(sessions) == 1
    assert apply(sessions, BASE) == ["no changes"]
    assert config_changes(sessions) == 1  # nothing to tell the gateways


def test_updates_list_the_changed_fields(sessions: sessionmaker[Session]) -> None:
    apply(sessions, BASE)
    changed = BASE.replace(
        "url: http://names.internal:8000", "url: http://names2.internal\n    read_timeout: 5"
    ).replace("value: west", "value: east")
    assert apply(sessions, changed) == [
        "~ update named value region (value)",
        "~ update backend names (url, read_timeout)",
    ]
    assert apply(sessions, changed) == ["no changes"]
    assert config_changes(sessions) == 2


def test_dry_run_shows_the_plan_and_changes_nothing(sessions: sessionmaker[Session]) -> None:
    assert apply(sessions, BASE, dry_run=True)[0] == "+ create named value function-app-key"
    assert exported(sessions) == "{}\n"
    apply(sessions, BASE)
    before = exported(sessions)
    assert apply(sessions, "apis: {}\n", prune=True, dry_run=True)[:2] == [
        "- delete product starter",
        "- delete api names",
    ]
    assert exported(sessions) == before
    assert config_changes(sessions) == 1


def test_without_prune_nothing_missing_from_the_file_is_deleted(
    sessions: sessionmaker[Session],
) -> None:
    apply(sessions, BASE)
    before = exported(sessions)
    assert apply(sessions, "") == ["no changes"]
    assert exported(sessions) == before


def test_prune_deletes_what_the_file_no_longer_names(sessions: sessionmaker[Session]) -> None:
    legacy = "  legacy:\n    path: /legacy\n    backend: names\nproducts:"
    bigger = BASE.replace("products:", legacy).replace("apis: [names]", "apis: [names, legacy]")
    apply(sessions, bigger + "  gold:\n    apis: [legacy]\n")
    subscribe(sessions, "gold", "ann@example.com")
    subscribe(sessions, "gold", "bob@example.com")
    subscribe(sessions, "starter", "cy@example.com")

    assert apply(sessions, BASE, prune=True) == [
        "- delete product-api starter/legacy",
        "- delete product gold (and its 2 subscriptions)",
        "- delete api legacy",
    ]
    assert apply(sessions, BASE, prune=True) == ["no changes"]
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 1
        assert session.scalar(select(func.count()).select_from(ProductApi)) == 1


def test_a_products_api_list_follows_the_file(sessions: sessionmaker[Session]) -> None:
    two = BASE.replace("products:", "  more:\n    path: /more\n    backend: names\nproducts:")
    apply(sessions, two.replace("apis: [names]", "apis: [names, more]"))
    assert apply(sessions, two) == ["- delete product-api starter/more"]
    assert "    - more" not in exported(sessions)


def test_apis_can_swap_paths(sessions: sessionmaker[Session]) -> None:
    two = BASE.replace("products:", "  more:\n    path: /more\n    backend: names\nproducts:")
    apply(sessions, two)
    swapped = two.replace("path: /names", "path: /tmp").replace("path: /more", "path: /names")
    swapped = swapped.replace("path: /tmp", "path: /more")
    assert apply(sessions, swapped) == ["~ update api more (path)", "~ update api names (path)"]
    with transaction(sessions) as session:
        apis = export_config(session).apis
    assert (apis["names"].path, apis["more"].path) == ("/more", "/names")
    assert apply(sessions, swapped) == ["no changes"]


def test_a_path_held_by_an_api_outside_the_file_is_reported(
    sessions: sessionmaker[Session],
) -> None:
    apply(sessions, BASE)
    other = BASE.replace("  names:\n    title: Names", "  names2:\n    title: Names")
    other = other.replace("apis: [names]", "apis: [names2]")
    with pytest.raises(ConfigError) as caught:
        apply(sessions, other)
    assert caught.value.messages == [
        "apis.names2.path: '/names' is already used by api 'names', which is not in this file "
        "(remove that api or apply with prune)"
    ]
    assert apply(sessions, other, prune=True)[-1] == "- delete api names"


def boom(*_: Any) -> None:
    raise RuntimeError("disk full")


def test_a_failure_midway_leaves_everything_as_it_was(sessions: sessionmaker[Session]) -> None:
    apply(sessions, BASE.replace("  starter:", "  starter-old:"))
    before = exported(sessions)
    event.listen(Product, "before_insert", boom)  # fails after backends and apis were written
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            apply(sessions, BASE.replace("value: west", "value: east"), prune=True)
    finally:
        event.remove(Product, "before_insert", boom)
    assert exported(sessions) == before
    assert config_changes(sessions) == 1


def test_secrets_are_encrypted_at_rest_and_masked_on_export(
    sessions: sessionmaker[Session],
) -> None:
    apply(sessions, BASE)
    with transaction(sessions) as session:
        stored = session.execute(
            text("SELECT value FROM named_values WHERE name = 'function-app-key'")
        ).scalar_one()
        plain = session.execute(text("SELECT value FROM named_values WHERE name = 'region'"))
        assert plain.scalar_one() == "west"
    assert "fak-123" not in stored
    assert BOX.decrypt(stored) == "fak-123-very-secret"
    yaml_text = exported(sessions)
    assert "fak-123" not in yaml_text
    assert "function-app-key:\n    value: <masked>\n    secret: true" in yaml_text


def test_the_masked_value_keeps_the_stored_secret(sessions: sessionmaker[Session]) -> None:
    apply(sessions, BASE)
    masked = BASE.replace('"${FUNCTION_APP_KEY}"', f"'{MASKED}'")
    assert apply(sessions, masked, env={}) == ["no changes"]
    assert apply(sessions, BASE, env={"FUNCTION_APP_KEY": "rotated"}) == [
        "~ update named value function-app-key (value)"
    ]
    with transaction(sessions) as session:
        row = session.scalar(select(NamedValue).where(NamedValue.name == "function-app-key"))
        assert row is not None
        assert BOX.decrypt(row.value) == "rotated"


def test_the_masked_value_needs_an_existing_secret(sessions: sessionmaker[Session]) -> None:
    masked = BASE.replace('"${FUNCTION_APP_KEY}"', f"'{MASKED}'")
    with pytest.raises(ConfigError) as caught:
        apply(sessions, masked, env={})
    assert caught.value.messages == [
        "named_values.function-app-key.value: '<masked>' keeps an existing secret, but no secret "
        "named 'function-app-key' exists yet; set the real value "
        "(e.g. value: ${FUNCTION_APP_KEY})"
    ]
    assert exported(sessions) == "{}\n"


def test_turning_a_value_into_a_secret_encrypts_it(sessions: sessionmaker[Session]) -> None:
    apply(sessions, BASE)
    secret_region = BASE.replace("{value: west}", "{value: west, secret: true}")
    assert apply(sessions, secret_region) == ["~ update named value region (secret)"]
    assert "west" not in exported(sessions)


FULL = """
backends:
  names:
    description: costs $${PRICE} per call
    url: https://names.example.com/v1
    connect_timeout: 2
    preserve_host: true
    headers: {x-functions-key: "{{function-app-key}}", x-region: "{{region}}"}
  local:
    app: tollway.samples.names:app
  orders:
    targets:
      - {url: "https://10.0.0.5:8443/v2", weight: 3}
      - {url: "https://10.0.0.6:8443/v2"}
    balance: least-connections
    health_check: {path: /healthz, interval: 5, timeout: 2, healthy: 2, unhealthy: 3}
    circuit_breaker: {failures: 5, window: 10, open_for: 30}
    retries: 1
    tls: {ca_file: /etc/tollway/ca.pem, cert_file: /etc/tollway/gw.pem, server_name: orders}
    max_idle_seconds: 30
    max_requests: 1000
named_values:
  function-app-key: {value: "${FUNCTION_APP_KEY}", secret: true}
  region: {value: west}
apis:
  orders:
    path: /orders
    backend: orders
  names:
    title: Names
    description: "Names: yes, no, null and ~ are text here"
    path: /names
    backend: names
    subscription_required: false
    key_header: X-Key
    openapi: null
    operations:
      - GET /generate_name
      - {method: post, path: "/names/{id}", policies: [{type: rate-limit, calls: 2}]}
    policies: [{type: rate-limit, calls: 100, period: 1}]
  local:
    path: /local
    backend: local
    published: false
products:
  starter:
    title: Starter
    approval_required: true
    apis: [names, local]
    policies: [{type: rate-limit, calls: 1000}]
  empty: {}
policies: [{type: rate-limit, calls: 5000}]
"""


@pytest.mark.parametrize("prune", [False, True])
def test_export_then_apply_gives_no_changes(sessions: sessionmaker[Session], prune: bool) -> None:
    apply(sessions, FULL)
    yaml_text = exported(sessions)
    assert apply(sessions, yaml_text, env={}, prune=prune) == ["no changes"]
    assert exported(sessions) == yaml_text
    assert "- GET /generate_name\n" in yaml_text
    assert "costs $${PRICE} per call" in yaml_text
    assert "fak-123" not in yaml_text


def test_backend_pools_round_trip(sessions: sessionmaker[Session]) -> None:
    apply(sessions, FULL)
    yaml_text = exported(sessions)
    assert "health_check:\n      path: /healthz\n" in yaml_text  # (the defaults are left out)
    assert "weight: 3" in yaml_text
    assert "verify" not in yaml_text
    changed = FULL.replace("retries: 1", "retries: 2")
    assert apply(sessions, changed) == ["~ update backend orders (retries)"]


def test_policies_round_trip_normalised(sessions: sessionmaker[Session]) -> None:
    apply(sessions, FULL)
    with transaction(sessions) as session:
        config = export_config(session)
    assert config.policies == [{"type": "rate-limit", "calls": 5000}]
    assert config.apis["names"].operations[1].policies == [{"type": "rate-limit", "calls": 2}]
    changed = FULL.replace("calls: 5000", "calls: 10")
    assert apply(sessions, changed) == ["~ update global policies"]


def test_omitted_global_policies_are_kept_unless_pruning(sessions: sessionmaker[Session]) -> None:
    apply(sessions, FULL)
    without = FULL.replace("policies: [{type: rate-limit, calls: 5000}]\n", "")
    assert apply(sessions, without) == ["no changes"]
    assert apply(sessions, without, prune=True) == ["~ update global policies"]
    assert "\npolicies:" not in exported(sessions)


def test_values_longer_than_the_database_allows_are_reported(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(ConfigError) as caught:
        apply(sessions, BASE.replace("title: Starter", "title: " + "x" * 201))
    assert caught.value.messages == [
        "products.starter.title: at most 200 characters (this one has 201)"
    ]


def test_policies_referring_to_missing_or_secret_values_are_refused(
    sessions: sessionmaker[Session],
) -> None:
    missing = BASE + (
        "policies:\n  - type: set-header\n    request: {x-functions-key: '{{nowhere}}'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        apply(sessions, missing)
    assert caught.value.messages == ["policies: no named value 'nowhere'"]
    leaking = BASE + (
        "policies:\n  - type: set-header\n    response: {x-key: '{{function-app-key}}'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        apply(sessions, leaking)
    assert caught.value.messages == [
        "policies: secret named value 'function-app-key' cannot go in a response header"
    ]
