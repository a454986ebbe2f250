"""The Docker Hub webhook sample: trust, callback, the deploy action and its safety, deliveries."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from pydantic import ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.clocks import Ticking
from tests.servers import read_body, serve_in_thread
from tollway.samples import webhook
from tollway.samples.webhook import WebhookSettings, create_app
from tollway.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio

PRINT_ACTION = [sys.executable, "-c", "import sys; print('pulled', sys.argv[1])", "{repo_name}"]


class CallbackTarget:
    """A local HTTP server standing in for Docker Hub's callback endpoint; records what it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.base = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.received.append({"path": scope["path"], "body": await read_body(receive)})
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def url(self) -> str:
        return f"{self.base}/u/account1/geo-api/hook/abc123/"


# Callbacks go to port 443 of an allowed host unless a host:port entry names another port.
CALLBACK_HOSTS = ["127.0.0.1"]


@pytest.fixture(scope="module")
def callback_server() -> Iterator[CallbackTarget]:
    target = CallbackTarget()
    with serve_in_thread(target, lifespan="off") as base:
        target.base = base
        CALLBACK_HOSTS.append(base.removeprefix("http://"))
        yield target
        CALLBACK_HOSTS.pop()


@pytest.fixture
def callback(callback_server: CallbackTarget) -> CallbackTarget:
    callback_server.received.clear()
    callback_server.status = 200
    return callback_server


def make_settings(**overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "trusted_pushers": ["account1", "account2"],
        "callback_hosts": list(CALLBACK_HOSTS),
        "callback_https_only": False,
        "action": PRINT_ACTION,
        "action_timeout": 20,
    }
    values.update(overrides)
    return WebhookSettings(_env_file=None, **values)  # type: ignore[call-arg]


def payload(callback_url: str, **changes: Any) -> dict[str, Any]:
    """Docker Hub's documented push body, with ``changes`` applied to push_data/repository."""
    push = {"pusher": "account1", "tag": "latest", "pushed_at": 1645586259}
    repo = {
        "repo_name": "account1/geo-api",
        "namespace": "account1",
        "name": "geo-api",
        "owner": "account1",
        "repo_url": "https://hub.docker.com/r/account1/geo-api",
        "date_created": 1644329839,
        "is_private": True,
        "star_count": 0,
        "status": "Active",
    }
    for key, value in changes.items():
        (push if key in push else repo)[key] = value
    return {"callback_url": callback_url, "push_data": push, "repository": repo}


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hook.test")


async def settled(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """``GET /deliveries`` once no action is running any more (polled, bounded to ~15 s)."""
    for _ in range(750):
        deliveries: list[dict[str, Any]] = (await client.get("/deliveries")).json()
        if all(d["state"] != "running" for d in deliveries):
            return deliveries
        await asyncio.sleep(0.02)
    raise AssertionError(f"actions still running: {deliveries}")


async def push(app: FastAPI, body: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST ``body`` to ``app``; return the response and the settled deliveries."""
    async with client_for(app) as client:
        response = await client.post("/", json=body)
        return response, await settled(client)


def assert_problem(response: httpx.Response, status: int, kind: str, *words: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"/-/problems/{kind}"
    assert problem["status"] == status
    assert all(word in problem["detail"] for word in words), problem["detail"]


async def test_ping() -> None:
    async with client_for(create_app(make_settings())) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.json() == {"ping": "pong"}


async def test_trusted_push_is_confirmed_then_the_action_runs(callback: CallbackTarget) -> None:
    app = create_app(make_settings(), clock=Ticking(0.25))  # read when it starts and ends
    response, deliveries = await push(app, payload(callback.url()))
    assert response.status_code == 200
    confirmation = {
        "state": "success",
        "description": "Received account1/geo-api:latest",
        "context": "tollway webhook sample",
    }
    assert response.json() == {**confirmation, "target_url": None}
    assert [r["path"] for r in callback.received] == ["/u/account1/geo-api/hook/abc123/"]
    assert httpx.Response(200, content=callback.received[0]["body"]).json() == confirmation
    (delivery,) = deliveries
    assert delivery["state"] == "succeeded"
    assert delivery["exit_code"] == 0
    assert delivery["output"] == "pulled account1/geo-api\n"
    assert delivery["timed_out"] is False
    assert delivery["duration_seconds"] == 0.25
    assert (delivery["repo_name"], delivery["tag"], delivery["pusher"]) == (
        "account1/geo-api",
        "latest",
        "account1",
    )


async def test_untrusted_pusher_is_rejected_logged_and_nothing_runs(
    callback: CallbackTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "ran"
    action = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    app = create_app(make_settings(action=action))
    with caplog.at_level(logging.WARNING, logger="tollway.samples.webhook"):
        response, deliveries = await push(app, payload(callback.url(), pusher="mallory"))
    assert_problem(response, 400, "untrusted-pusher", "'mallory'")
    assert "untrusted pusher 'mallory'" in caplog.text
    assert callback.received == []
    assert deliveries == []
    assert not marker.exists()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://evil.example/hook", ["'evil.example'", "not an allowed"]),
        ("http://169.254.169.254/latest/meta-data/", ["'169.254.169.254'"]),
        ("https://127.0.0.1@evil.example/hook", ["not an allowed"]),
        ("file:///etc/passwd", ["must use http or https"]),
        ("http://[::1", ["not a valid URL"]),
    ],
)
async def test_callback_to_a_host_not_allowed_is_rejected(
    callback: CallbackTarget, url: str, words: list[str]
) -> None:
    response, deliveries = await push(create_app(make_settings()), payload(url))
    assert_problem(response, 400, "callback-not-allowed", *words)
    assert deliveries == []
    assert callback.received == []


async def test_default_callback_hosts_are_docker_hub_over_https(callback: CallbackTarget) -> None:
    defaults = WebhookSettings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.callback_hosts == ["registry.hub.docker.com"]
    assert defaults.callback_https_only is True
    app = create_app(
        make_settings(callback_hosts=defaults.callback_hosts, callback_https_only=True)
    )
    response, _ = await push(app, payload(callback.url()))
    assert_problem(response, 400, "callback-not-allowed", "must use https")
    assert callback.received == []


@pytest.mark.parametrize(
    "changes",
    [
        {"repo_name": "foo; rm -rf /", "namespace": "foo;", "name": " rm -rf /"},
        {"repo_name": "account1/$(id)", "name": "$(id)"},
        {"repo_name": "account1/geo`id`", "name": "geo`id`"},
        {"repo_name": "account1/--help", "name": "--help"},
        {"repo_name": "../../etc/passwd", "namespace": "..", "name": "../etc/passwd"},
        {"repo_name": "Account1/Geo-API", "namespace": "Account1", "name": "Geo-API"},
        {"repo_name": "account1/other"},
        {"tag": "latest; id"},
        {"tag": "-v"},
        {"tag": "$(id)"},
    ],
)
async def test_injection_attempts_are_rejected_and_nothing_runs(
    callback: CallbackTarget, tmp_path: Path, changes: dict[str, str]
) -> None:
    marker = tmp_path / "ran"
    action = [sys.executable, "-c", f"open({str(marker)!r}, 'w')", "{repo_name}", "{tag}"]
    app = create_app(make_settings(action=action))
    response, deliveries = await push(app, payload(callback.url(), **changes))
    assert_problem(response, 400, "invalid-repository")
    assert deliveries == []
    assert callback.received == []
    assert not marker.exists()


async def test_names_reach_the_action_as_single_arguments(callback: CallbackTarget) -> None:
    action = [sys.executable, "-c", "import sys; print(sys.argv[1:])", "{namespace}", "{tag}"]
    body = payload(
        callback.url(),
        repo_name="my.org/geo__api-v2",
        namespace="my.org",
        name="geo__api-v2",
        tag="v1.2_rc-1",
    )
    _, (delivery,) = await push(create_app(make_settings(action=action)), body)
    assert delivery["output"] == "['my.org', 'v1.2_rc-1']\n"


async def test_slow_action_is_killed_at_the_timeout(callback: CallbackTarget) -> None:
    slow = [sys.executable, "-c", "import time; print('starting', flush=True); time.sleep(60)"]
    app = create_app(make_settings(action=slow, action_timeout=0.5))
    response, (delivery,) = await push(app, payload(callback.url()))
    assert response.status_code == 200
    assert delivery["state"] == "timed_out"
    assert delivery["timed_out"] is True
    assert delivery["exit_code"] == -signal.SIGKILL  # the whole process group is killed
    assert delivery["output"] == "starting\n"
    assert delivery["error"] == "killed after 0.5 s"
    assert delivery["duration_seconds"] < 30


async def test_shutdown_kills_a_running_action(callback: CallbackTarget, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    app = create_app(make_settings(action=[sys.executable, "-c", script]), clock=Ticking(0.25))
    async with client_for(app) as client:
        assert (await client.post("/", json=payload(callback.url()))).status_code == 200
        for _ in range(500):
            if pid_file.exists() and pid_file.read_text():
                break
            await asyncio.sleep(0.02)
        pid = int(pid_file.read_text())
        await app.state.receiver.stop()
        (delivery,) = (await client.get("/deliveries")).json()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert (delivery["state"], delivery["error"]) == ("failed", "killed at shutdown")
    assert delivery["duration_seconds"] == 0.25


async def test_failing_action_keeps_exit_code_and_the_start_of_its_output(
    callback: CallbackTarget,
) -> None:
    noisy = [sys.executable, "-c", "import sys; print('x' * 5000); sys.exit(3)"]
    app = create_app(make_settings(action=noisy, max_output_bytes=100))
    _, (delivery,) = await push(app, payload(callback.url()))
    assert delivery["state"] == "failed"
    assert delivery["exit_code"] == 3
    assert delivery["output"] == "x" * 100
    assert delivery["output_truncated"] is True


async def test_missing_executable_is_a_failed_delivery(callback: CallbackTarget) -> None:
    app = create_app(make_settings(action=["/nonexistent/docker", "pull", "{repo_name}"]))
    response, (delivery,) = await push(app, payload(callback.url()))
    assert response.status_code == 200
    assert delivery["state"] == "failed"
    assert delivery["exit_code"] is None
    assert "could not start '/nonexistent/docker'" in delivery["error"]


async def test_failed_callback_is_a_502_and_the_action_does_not_run(
    callback: CallbackTarget, tmp_path: Path
) -> None:
    callback.status = 500
    marker = tmp_path / "ran"
    app = create_app(make_settings(action=[sys.executable, "-c", f"open({str(marker)!r}, 'w')"]))
    response, (delivery,) = await push(app, payload(callback.url()))
    assert_problem(response, 502, "callback-failed", "answered 500")
    assert delivery["state"] == "callback_failed"
    assert delivery["error"] == "callback to 127.0.0.1 answered 500"
    assert len(callback.received) == 1
    assert not marker.exists()


async def test_without_an_action_the_delivery_is_skipped(callback: CallbackTarget) -> None:
    response, (delivery,) = await push(
        create_app(make_settings(action=[])), payload(callback.url())
    )
    assert response.status_code == 200
    assert delivery["state"] == "skipped"
    assert delivery["exit_code"] is None


async def test_deliveries_are_bounded_newest_first(callback: CallbackTarget) -> None:
    app = create_app(make_settings(max_deliveries=2))
    async with client_for(app) as client:
        for tag in ("v1", "v2", "v3"):
            assert (
                await client.post("/", json=payload(callback.url(), tag=tag))
            ).status_code == 200
        deliveries = await settled(client)
    assert [(d["id"], d["tag"]) for d in deliveries] == [(3, "v3"), (2, "v2")]
    assert {d["state"] for d in deliveries} == {"succeeded"}


async def test_malformed_payload_is_a_422_naming_the_field(callback: CallbackTarget) -> None:
    body = payload(callback.url())
    del body["push_data"]["pusher"]
    async with client_for(create_app(make_settings())) as client:
        response = await client.post("/", json=body)
    assert_problem(response, 422, "invalid-payload", "body.push_data.pusher")
    assert response.json()["errors"][0]["loc"] == ["body", "push_data", "pusher"]


async def test_body_that_is_not_utf8_json_is_a_400_problem() -> None:
    async with client_for(create_app(make_settings())) as client:
        response = await client.post(
            "/", content=b"\xff\xfe{", headers={"content-type": "application/json"}
        )
    assert_problem(response, 400, "invalid-body", "parsing the body")


@pytest.mark.parametrize(("enabled", "status"), [(True, 200), (False, 404)])
async def test_docs_can_be_switched_off(enabled: bool, status: int) -> None:
    async with client_for(create_app(make_settings(docs_enabled=enabled))) as client:
        responses = [await client.get(path) for path in ("/docs", "/redoc", "/openapi.json")]
        ping = await client.get("/")
    assert [r.status_code for r in responses] == [status] * 3
    if not enabled:
        assert responses[2].headers["content-type"] == "application/problem+json"
    assert ping.status_code == 200


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_TRUSTED_PUSHERS", "account1, account2")
    monkeypatch.setenv("WEBHOOK_CALLBACK_HOSTS", '["Registry.Hub.Docker.com", "hooks.local"]')
    monkeypatch.setenv("WEBHOOK_ACTION", '["docker", "pull", "{repo_name}:{tag}"]')
    monkeypatch.setenv("WEBHOOK_DOCS_ENABLED", "false")
    settings = WebhookSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.trusted_pushers == ["account1", "account2"]
    assert settings.callback_hosts == ["registry.hub.docker.com", "hooks.local"]
    assert settings.action == ["docker", "pull", "{repo_name}:{tag}"]
    assert settings.docs_enabled is False


def test_defaults_trust_nobody_and_run_nothing() -> None:
    settings = WebhookSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.trusted_pushers == []
    assert settings.action == []


@pytest.mark.parametrize("arg", ["{repo_name.__class__}", "{0}", "{token}", "{tag!r}", "{name:>9}"])
def test_action_placeholders_are_limited(arg: str) -> None:
    with pytest.raises(ValidationError, match="only \\{name\\}, \\{namespace\\}"):
        make_settings(action=["docker", "pull", arg])


def test_module_level_app_for_uvicorn() -> None:
    assert isinstance(webhook.app, FastAPI)


# Property test over the OpenAPI document: nothing real can be called back (".invalid" never
# resolves) and the action is a no-op, so generated payloads cannot reach anything.
schema_app = create_app(
    make_settings(callback_hosts=["callback.invalid"], action=[sys.executable, "-c", "pass"])
)
schema = schemathesis.openapi.from_asgi("/openapi.json", schema_app)


@schema.parametrize()
@hypothesis.settings(max_examples=40, deadline=None)
def test_openapi_property_no_5xx_and_responses_match_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
    assert schema_app.state.receiver.tasks == set()
