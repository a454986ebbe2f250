"""Dev container, Dependabot and the GitHub Actions workflow (parsed; they run elsewhere)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from .helpers import REPO, load_yaml

DEVCONTAINER = REPO / ".devcontainer"


def devcontainer() -> dict[str, Any]:
    data = json.loads((DEVCONTAINER / "devcontainer.json").read_text())
    assert isinstance(data, dict)
    return data


def test_devcontainer_compose_has_app_postgres_and_redis_on_one_network() -> None:
    config = devcontainer()
    compose = load_yaml(DEVCONTAINER / config["dockerComposeFile"])
    services = compose["services"]
    app = services[config["service"]]
    assert {"db", "redis"} <= set(services)
    # Shared network namespace: the services are on localhost inside the app container.
    assert app["network_mode"] == "service:db"
    assert services["redis"]["network_mode"] == "service:db"
    assert f"..:{config['workspaceFolder']}:cached" in app["volumes"]
    assert (DEVCONTAINER / app["build"]["dockerfile"].split("/")[-1]).is_file()
    assert "postgres-data" in compose["volumes"]
    assert config["postCreateCommand"] == "scripts/bootstrap"


def test_devcontainer_urls_match_the_database_it_starts() -> None:
    config = devcontainer()
    compose = load_yaml(DEVCONTAINER / config["dockerComposeFile"])
    db_env = compose["services"]["db"]["environment"]
    env = config["containerEnv"]
    for name in ("TOLLWAY_DATABASE_URL", "TOLLWAY_TEST_POSTGRES_URL"):
        url = urlsplit(env[name])
        assert (url.hostname, url.port) == ("localhost", 5432)
        assert (url.username, url.password) == (
            db_env["POSTGRES_USER"],
            db_env["POSTGRES_PASSWORD"],
        )
        assert url.path == "/" + db_env["POSTGRES_DB"]
    assert urlsplit(env["TOLLWAY_TEST_REDIS_URL"]).port == 6379
    assert set(config["forwardPorts"]) >= {8000, 5432, 6379}


def test_dependabot_updates_pip_and_github_actions() -> None:
    config = load_yaml(REPO / ".github" / "dependabot.yml")
    assert config["version"] == 2
    ecosystems = {update["package-ecosystem"]: update for update in config["updates"]}
    assert set(ecosystems) == {"pip", "github-actions"}
    for update in ecosystems.values():
        assert update["directory"] == "/"
        assert update["schedule"]["interval"] in ("daily", "weekly", "monthly")


def test_workflow_runs_ci_run_with_postgres_and_redis_services() -> None:
    workflow = load_yaml(REPO / ".github" / "workflows" / "ci.yml")
    # PyYAML reads the bare key `on` as True (YAML 1.1).
    triggers = workflow.get("on", workflow.get(True))
    assert "pull_request" in triggers and "push" in triggers
    (job,) = workflow["jobs"].values()
    services = job["services"]
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["postgres"]["env"]["POSTGRES_DB"] == "test"
    assert services["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert services["redis"]["ports"] == ["6379:6379"]
    runs = [step["run"].strip() for step in job["steps"] if "run" in step]
    assert runs[-1] == ".ci/run"
    assert (REPO / ".ci" / "run").stat().st_mode & 0o111
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
