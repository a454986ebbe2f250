"""compose.yaml's structure and the tollway.yaml it applies (Docker cannot run here)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine

from tollway.config.apply import apply_config
from tollway.config.loader import load_config_file
from tollway.crypto import SecretBox
from tollway.db.session import session_factory

from .helpers import DEPLOY, REPO, load_yaml

COMPOSE_CONFIG = DEPLOY / "compose" / "tollway.yaml"
SAMPLES = {"names", "charts", "recipes", "webhook"}
LONG_RUNNING = {"postgres", "redis", "tollway", *SAMPLES}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(REPO / "compose.yaml")
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def test_gateway_runs_two_replicas_on_shared_postgres_and_redis(compose: dict[str, Any]) -> None:
    gateway = services(compose)["tollway"]
    assert gateway["deploy"]["replicas"] == 2
    env = gateway["environment"]
    assert urlsplit(env["TOLLWAY_DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["TOLLWAY_REDIS_URL"]).hostname == "redis"
    assert env["TOLLWAY_MIGRATE"] == "false", "replicas must not race on migrations"
    assert env["TOLLWAY_SECRET_KEY"].startswith("${TOLLWAY_SECRET_KEY:?")
    assert gateway["command"] == ["serve"]
    # Two replicas cannot share one host port: a range gives each its own.
    assert gateway["ports"] == ["8000-8001:8000"]


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    assert set(all_services) >= LONG_RUNNING | {"migrate", "config"}
    for name in LONG_RUNNING:
        check = all_services[name].get("healthcheck")
        assert check and check["test"][0] == "CMD", f"{name} has no healthcheck"
    assert all_services["tollway"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "/app/healthcheck.py",
    ]


def test_start_order_waits_for_health_and_one_shot_jobs(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    gateway_deps = all_services["tollway"]["depends_on"]
    assert gateway_deps["postgres"]["condition"] == "service_healthy"
    assert gateway_deps["redis"]["condition"] == "service_healthy"
    assert gateway_deps["config"]["condition"] == "service_completed_successfully"
    for sample in SAMPLES:
        assert gateway_deps[sample]["condition"] == "service_healthy"
    assert all_services["config"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert all_services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert all_services["migrate"]["command"] == ["tollway", "migrate"]


def test_data_lives_in_declared_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in services(compose).values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared == {"postgres-data", "redis-data"}
    assert "postgres-data:/var/lib/postgresql/data" in services(compose)["postgres"]["volumes"]


def test_each_sample_is_its_own_uvicorn_service(compose: dict[str, Any]) -> None:
    for sample in SAMPLES:
        command = services(compose)[sample]["command"]
        assert command[:2] == ["uvicorn", f"tollway.samples.{sample}:app"]
        assert command[command.index("--port") + 1] == "8000"


def test_compose_tollway_yaml_points_at_the_sample_services(compose: dict[str, Any]) -> None:
    config = load_config_file(COMPOSE_CONFIG, env={})
    mounted = services(compose)["config"]["volumes"][0].split(":")
    assert (REPO / mounted[0]).resolve() == COMPOSE_CONFIG
    assert services(compose)["config"]["command"][-1] == mounted[1]
    assert set(config.backends) == SAMPLES
    for name, backend in config.backends.items():
        assert backend.url is not None
        parts = urlsplit(backend.url)
        assert (parts.hostname, parts.port) == (name, 8000)
        assert name in services(compose)
    assert set(config.products["samples"].apis) == SAMPLES


def test_compose_tollway_yaml_applies_cleanly(sqlite_engine: Engine) -> None:
    config = load_config_file(COMPOSE_CONFIG, env={})
    sessions = session_factory(sqlite_engine)
    plan = apply_config(sessions, config, dry_run=True, secret_box=SecretBox(None))
    lines = plan.lines()
    assert any(re.search(r"\+ .*names", line) for line in lines), lines
    applied = apply_config(sessions, config, secret_box=SecretBox(None))
    assert applied.lines() == lines
    again = apply_config(sessions, config, secret_box=SecretBox(None))
    assert again.empty
