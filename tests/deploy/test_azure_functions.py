"""The names sample on Azure Functions, and Tollway in front of it injecting x-functions-key.

Like the seed's tests: ``azure.functions.HttpRequest`` objects go through the function entry
point in-process (no Functions host). The end-to-end test adds a tiny stand-in for the
Functions host that enforces function-level auth, so the key Tollway injects is really checked.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import httpx
import pytest
from sqlalchemy import Engine

from tests.servers import serve_in_thread
from tollway.config.apply import apply_config
from tollway.config.loader import load_config_file
from tollway.crypto import SecretBox
from tollway.db.session import session_factory, transaction
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway
from tollway.types import Receive, Scope, Send

from .helpers import DEPLOY

FOLDER = DEPLOY / "azure-functions"
FUNCTION_KEY = "function-key-for-tests-0123456789"
SECRET = "test-secret-key-0123456789"

Entry = Callable[[func.HttpRequest, Any], Awaitable[func.HttpResponse]]


def load_function_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("function_app", FOLDER / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def function_app() -> Iterator[func.AsgiFunctionApp]:
    app = load_function_app().app
    assert isinstance(app, func.AsgiFunctionApp)
    yield app
    # The app shuts its ASGI lifespan down in __del__ on a new event loop; tests shut it down
    # on their own loop (see call_in_one_loop), so there is nothing left for __del__ to do.
    app.startup_task_done = False


def entry_point(app: func.AsgiFunctionApp) -> Entry:
    (function,) = app.get_functions()
    entry: Entry = function.get_user_function()
    return entry


def request(method: str, path: str, query: str = "", **headers: str) -> func.HttpRequest:
    url = f"https://names-func.azurewebsites.net{path}" + (f"?{query}" if query else "")
    return func.HttpRequest(
        method,
        url,
        headers=headers,
        params=dict(item.split("=", 1) for item in query.split("&") if item),
        route_params={"route": path.lstrip("/")},
        body=b"",
    )


def call(app: func.AsgiFunctionApp, *requests: func.HttpRequest) -> list[func.HttpResponse]:
    """Run requests through the function entry point on one loop, then shut the app down."""

    async def run() -> list[func.HttpResponse]:
        entry = entry_point(app)
        try:
            return [await entry(req, None) for req in requests]
        finally:
            await app.middleware.notify_shutdown()

    return asyncio.run(run())


def test_one_function_with_function_level_auth_serves_every_route(
    function_app: func.AsgiFunctionApp,
) -> None:
    (function,) = function_app.get_functions()
    trigger = json.loads(function.get_function_json())["bindings"][0]
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == "/{*route}"
    host = json.loads((FOLDER / "host.json").read_text())
    # No /api prefix: /generate_name on the function app is /generate_name in FastAPI.
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["version"] == "2.0"


def test_generate_name_openapi_and_docs_through_the_entry_point(
    function_app: func.AsgiFunctionApp,
) -> None:
    name, missing, openapi, docs = call(
        function_app,
        request("GET", "/generate_name", "starts_with=n"),
        request("GET", "/generate_name", "starts_with=zzz"),
        request("GET", "/openapi.json"),
        request("GET", "/docs"),
    )
    assert name.status_code == 200
    assert json.loads(name.get_body())["name"].startswith("N")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    assert openapi.status_code == 200
    assert "/generate_name" in json.loads(openapi.get_body())["paths"]
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.get_body()


class FunctionsHostStandIn:
    """What the Functions host does for an authLevel=function trigger, in a few lines: refuse
    calls without the right x-functions-key, hand the rest to the function entry point."""

    def __init__(self, app: func.AsgiFunctionApp) -> None:
        self.app = app
        self.seen_keys: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.app.middleware.notify_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen_keys.append(headers.get("x-functions-key"))
        if headers.get("x-functions-key") != FUNCTION_KEY:
            response = func.HttpResponse(b"", status_code=401)
        else:
            query = scope["query_string"].decode()
            response = await entry_point(self.app)(request("GET", scope["path"], query), None)
        body = response.get_body()
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(b"content-type", (response.mimetype or "text/plain").encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def test_tollway_config_keeps_the_function_key_secret() -> None:
    env = {"FUNCTION_APP_URL": "https://names-func.azurewebsites.net", "FUNCTION_APP_KEY": "k"}
    config = load_config_file(FOLDER / "tollway.yaml", env=env)
    assert config.named_values["function-app-key"].secret is True
    assert config.named_values["function-app-key"].value == "k"
    backend = config.backends[config.apis["names"].backend]
    assert backend.url == env["FUNCTION_APP_URL"]
    assert backend.headers == {"x-functions-key": "{{function-app-key}}"}


def test_tollway_injects_the_function_key_end_to_end(
    function_app: func.AsgiFunctionApp, sqlite_engine: Engine, sqlite_url: str
) -> None:
    host = FunctionsHostStandIn(function_app)
    with serve_in_thread(host, lifespan="on") as function_url:
        assert httpx.get(f"{function_url}/generate_name").status_code == 401
        env = {"FUNCTION_APP_URL": function_url, "FUNCTION_APP_KEY": FUNCTION_KEY}
        config = load_config_file(FOLDER / "tollway.yaml", env=env)
        sessions = session_factory(sqlite_engine)
        apply_config(sessions, config, secret_box=SecretBox(SECRET))
        with transaction(sessions) as session:
            user = users.create_user(session, "dev@example.com")
            key = subscriptions.create_subscription(
                session, user, subscriptions.get_product(session, "starter")
            ).primary
        settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
        with serve_in_thread(create_gateway(settings), lifespan="on") as gateway:
            ok = httpx.get(
                f"{gateway}/names/generate_name",
                params={"starts_with": "m"},
                headers={"X-API-Key": key},
            )
            no_key = httpx.get(f"{gateway}/names/generate_name")
    assert ok.status_code == 200, ok.text
    assert ok.json()["name"].startswith("M")
    assert no_key.status_code == 401
    # The client never sent x-functions-key; Tollway added it from the secret named value.
    assert host.seen_keys == [None, FUNCTION_KEY]


def test_function_app_files_are_complete() -> None:
    settings = json.loads((FOLDER / "local.settings.json").read_text())
    assert settings["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
    requirements = (FOLDER / "requirements.txt").read_text().split()
    assert "tollway" in requirements
    assert any(line.startswith("azure-functions") for line in requirements)
    assert Path(FOLDER / "function_app.py").is_file()
