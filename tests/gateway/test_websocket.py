"""WebSocket APIs and streaming responses through the gateway, over real sockets: a real
backend (the live sample under uvicorn, or in-process), a real client (the ``websockets``
library), on both of the gateway's protocols. WebSockets always take the ASGI transport (uvicorn's
protocol switch hands the upgrade to the WebSocket protocol, whatever the HTTP protocol is);
running them on both checks that the fast protocol hands upgrades over intact."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tollway.config.export import export_config
from tollway.config.loader import ConfigError, load_config
from tollway.db.models import Usage
from tollway.db.session import session_factory, transaction
from tollway.gateway.calltrace import parse_traceparent
from tollway.gateway.exchange.gateway import Gateway
from tollway.samples import live
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..conftest import REDIS_URL, require_service
from ..policies.test_jwt import Issuer
from ..servers import free_port, serve_gateway, serve_in_thread
from .conftest import SECRET, apply
from .test_usage import usage_rows

pytestmark = pytest.mark.anyio

LIVE_APP = {"app": "tollway.samples.live:app"}
WAIT = 15.0  # generous bound for anything a test waits for


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    """The live sample over a real socket (one for the module)."""
    with serve_in_thread(live.app) as base:
        yield base


def live_config(live_url: str, policies: list[Any] | None = None, **apis: Any) -> dict[str, Any]:
    """``/live`` (the sample over HTTP), ``/live-app`` (in-process), ``/other`` (another
    product's); ``policies`` on both live APIs."""
    config: dict[str, Any] = {
        "backends": {"live": {"url": live_url}, "live-app": LIVE_APP},
        "apis": {
            "live": {"path": "/live", "backend": "live", "policies": policies or []},
            "live-app": {"path": "/live-app", "backend": "live-app", "policies": policies or []},
            "other": {"path": "/other", "backend": "live"},
        },
        "products": {"starter": {"apis": ["live", "live-app"]}, "other-only": {"apis": ["other"]}},
    }
    config["apis"].update(apis)
    return config


def subscribe(engine: Engine, config: dict[str, Any], product: str = "starter") -> Any:
    """A subscription to ``product`` of ``config`` (applied first)."""
    apply(engine, config)
    with transaction(session_factory(engine)) as session:
        email = "dev@example.com"
        user = users.find_user(session, email) or users.create_user(session, email)
        return subscriptions.create_subscription(
            session, user, subscriptions.get_product(session, product)
        )


def build(engine: Engine, database_url: str, config: dict[str, Any], **settings: Any) -> Gateway:
    apply(engine, config)
    options = {"database_url": database_url, "secret_key": SECRET, **settings}
    return create_gateway(Settings(**options), engine=engine)


@asynccontextmanager
async def gateway_on(
    transport: str, engine: Engine, url: str, config: dict[str, Any], **settings: Any
) -> AsyncIterator[tuple[Gateway, str]]:
    """The gateway over ``config``, served on ``transport``; yields it and its base URL."""
    gateway = build(engine, url, config, usage_flush_interval=3600, **settings)
    with serve_gateway(gateway, transport) as base:
        yield gateway, base


def ws(base: str, path: str) -> str:
    return "ws" + base.removeprefix("http") + path


def open_ws(base: str, path: str, key: str | None = None, **options: Any) -> Any:
    headers = {"X-API-Key": key} if key else None
    return connect(
        ws(base, path), additional_headers=headers, open_timeout=WAIT, close_timeout=5, **options
    )


async def closed_with(socket: ClientConnection) -> tuple[int, str]:
    """Read until the gateway closes the session; its close code and reason."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                await socket.recv()
    except ConnectionClosed as closed:
        frame = closed.rcvd
    assert frame is not None, "the gateway dropped the connection without a close"
    return frame.code, frame.reason


async def refusal(base: str, path: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
    """The HTTP answer to an upgrade the gateway refuses: its status and problem+json body."""
    with pytest.raises(InvalidStatus) as refused:
        async with open_ws(base, path, key):
            pass
    response = refused.value.response
    assert response.headers["content-type"] == "application/problem+json"
    return response.status_code, json.loads(response.body or b"{}")


async def poll(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("api", ["live", "live-app"])
async def test_messages_flow_both_ways_and_closes_pass_on(
    transport: str,
    sqlite_engine: Engine,
    sqlite_url: str,
    live_url: str,
    api: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = live_config(live_url)
    keys = subscribe(sqlite_engine, config)
    caplog.set_level(logging.DEBUG)
    async with gateway_on(transport, sqlite_engine, sqlite_url, config, access_log=True) as (
        _,
        base,
    ):
        # key in the header; a subprotocol is negotiated with the backend
        async with open_ws(base, f"/{api}/ws/echo?x=1", keys.primary, subprotocols=["chat"]) as s:
            assert s.subprotocol == "chat"
            await s.send("hello")
            assert await s.recv() == "hello"
            await s.send(b"\x00\x01binary")
            assert await s.recv() == b"\x00\x01binary"
            await s.send("request")
            seen = json.loads(await s.recv())
            assert seen["path"] == "/ws/echo" and seen["query"] == "x=1"
            assert "x-api-key" not in seen["headers"]
            assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
            assert seen["headers"]["x-forwarded-prefix"] == f"/{api}"
            # the session's request id (also on the 101) and trace context reach the backend
            assert seen["headers"]["x-request-id"] == s.response.headers["x-request-id"]
            assert parse_traceparent(seen["headers"]["traceparent"].encode()) is not None
            # the backend closes: the client gets its code and reason
            await s.send("close 4001 bye now")
            assert await closed_with(s) == (4001, "bye now")
        # key in the query string (browsers cannot set headers): never forwarded
        before = len(live.CLOSES)
        path = f"/{api}/ws/echo?subscription-key={keys.secondary}&x=2"
        async with open_ws(base, path) as s:
            await s.send("request")
            seen = json.loads(await s.recv())
            assert seen["query"] == "x=2"
            # the client closes: the backend gets its code and reason
            await s.close(4002, "done here")
        await poll(lambda: len(live.CLOSES) > before, "the backend never saw the close")
        assert live.CLOSES[-1] == (4002, "done here")
    # (what the test's own client logs, websockets.client, has the key it sent, of course)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.client")
    assert f'"GET /{api}" 101' in logged  # the access line of each session
    assert f'"WEBSOCKET /{api}" closed 4001 messages in=4 out=3' in logged
    assert keys.secondary not in logged and keys.primary not in logged


async def test_a_session_is_one_json_access_line_with_its_close_and_messages(
    transport: str,
    sqlite_engine: Engine,
    sqlite_url: str,
    live_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = live_config(live_url)
    keys = subscribe(sqlite_engine, config)
    caplog.set_level(logging.INFO, logger="tollway.access")
    settings = {"access_log": "json"}
    async with gateway_on(transport, sqlite_engine, sqlite_url, config, **settings) as (_, base):
        async with open_ws(base, "/live/ws/echo", keys.primary) as s:
            await s.send("hello")
            assert await s.recv() == "hello"
            request_id = s.response.headers["x-request-id"]
            await s.send("close 4001 bye now")
            assert await closed_with(s) == (4001, "bye now")

        def lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "tollway.access"]

        await poll(lambda: len(lines()) == 1, "no access line for the session")
    (entry,) = [json.loads(line) for line in lines()]  # one line, and it is JSON
    assert entry["status"] == 101 and entry["request_id"] == request_id
    assert entry["websocket"] == {"close_code": 4001, "messages_in": 2, "messages_out": 1}
    assert keys.primary not in lines()[0]


async def test_upgrades_are_admitted_like_calls(
    transport: str, sqlite_engine: Engine, sqlite_url: str, live_url: str
) -> None:
    config = live_config(live_url, down={"path": "/down", "backend": "down"})
    config["backends"]["down"] = {"url": f"http://127.0.0.1:{free_port()}"}  # nothing listens
    config["products"]["starter"]["apis"].append("down")
    keys = subscribe(sqlite_engine, config)
    other = subscribe(sqlite_engine, config, "other-only")
    async with gateway_on(transport, sqlite_engine, sqlite_url, config) as (_, base):
        status, problem = await refusal(base, "/live/ws/echo")
        assert (status, problem["type"]) == (401, "/-/problems/missing-key")
        status, problem = await refusal(base, "/live/ws/echo", "tw_not-a-key")
        assert (status, problem["type"]) == (401, "/-/problems/invalid-key")
        status, problem = await refusal(base, "/live/ws/echo?subscription-key=tw_nope")
        assert (status, problem["type"]) == (401, "/-/problems/invalid-key")
        status, problem = await refusal(base, "/live-app/ws/echo", other.primary)
        assert (status, problem["type"]) == (403, "/-/problems/api-not-in-subscription")
        status, problem = await refusal(base, "/nowhere/ws", keys.primary)
        assert (status, problem["type"]) == (404, "/-/problems/not-found")
        # the backend's own refusal of the upgrade (no such WebSocket route) is passed on
        for api in ("live", "live-app"):
            with pytest.raises(InvalidStatus) as refused:
                async with open_ws(base, f"/{api}/no-such-socket", keys.primary):
                    pass
            assert refused.value.response.status_code == 403  # (what Starlette answers)
        status, problem = await refusal(base, "/down/ws", keys.primary)
        assert (status, problem["type"]) == (502, "/-/problems/backend-unreachable")


async def test_a_token_is_checked_before_the_upgrade_and_its_claims_forwarded(
    transport: str, sqlite_engine: Engine, sqlite_url: str, live_url: str
) -> None:
    issuer = Issuer()
    with serve_in_thread(issuer) as jwks:
        policy = {
            "type": "validate-jwt",
            "issuer": "https://issuer.test",
            "jwks_uri": f"{jwks}/jwks.json",
            "audiences": ["tollway-api"],
            "claims_to_headers": {"sub": "X-User-Id"},
        }
        config = live_config(live_url, [policy])
        keys = subscribe(sqlite_engine, config)
        async with gateway_on(transport, sqlite_engine, sqlite_url, config) as (_, base):
            status, problem = await refusal(base, "/live/ws/echo", keys.primary)
            assert (status, problem["type"]) == (401, "/-/problems/invalid-token")
            token = {"Authorization": f"Bearer {issuer.token()}", "X-User-Id": "spoofed"}
            async with connect(
                ws(base, "/live/ws/echo"),
                additional_headers={**token, "X-API-Key": keys.primary},
                open_timeout=WAIT,
            ) as s:
                await s.send("request")
                seen = json.loads(await s.recv())
    assert seen["headers"]["x-user-id"] == "dev-42"


async def test_session_limits_close_with_their_codes(
    transport: str, sqlite_engine: Engine, sqlite_url: str, live_url: str
) -> None:
    limits = {"type": "websocket", "max_message_bytes": 1000, "max_messages_per_second": 3}
    config = live_config(
        live_url,
        [limits],
        idle={
            "path": "/idle",
            "backend": "live",
            "policies": [{"type": "websocket", "idle_timeout": 0.5}],
        },
        brief={
            "path": "/brief",
            "backend": "live-app",
            "policies": [{"type": "websocket", "max_lifetime": 0.5}],
        },
    )
    config["products"]["starter"]["apis"] += ["idle", "brief"]
    keys = subscribe(sqlite_engine, config)
    async with gateway_on(transport, sqlite_engine, sqlite_url, config) as (_, base):
        for api in ("live", "live-app"):
            async with open_ws(base, f"/{api}/ws/echo", keys.primary) as s:
                await s.send("x" * 1000)  # at the limit: passes
                assert len(await s.recv()) == 1000
                await s.send("x" * 1001)
                assert await closed_with(s) == (1009, "message over 1000 bytes")
            async with open_ws(base, f"/{api}/ws/echo", keys.primary) as s:
                await s.send("big 1001")  # the backend's message is too big
                code, reason = await closed_with(s)
                assert (code, reason) == (1009, "message from the backend over 1000 bytes")
            async with open_ws(base, f"/{api}/ws/echo", keys.primary) as s:
                for n in range(10):  # a burst of 3 passes, then the rate of 3/s is over
                    await s.send(str(n))
                code, reason = await closed_with(s)
                assert (code, reason) == (1008, "more than 3 messages per second")
        async with open_ws(base, "/idle/ws/echo", keys.primary) as s:
            assert await closed_with(s) == (1001, "idle for 0.5 s")
        async with open_ws(base, "/brief/ws/ticker?interval=0.05", keys.primary) as s:
            assert await closed_with(s) == (1008, "connection lifetime of 0.5 s reached")


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_rate_limit_counts_connections_and_usage_records_sessions(
    transport: str, engine: Engine, database_url: str, live_url: str, store: str
) -> None:
    # (on Redis the limit is settled by Gateway.settle; a fresh name keeps runs apart there)
    redis_url = "memory://" if store == "memory" else require_service(REDIS_URL, "redis")
    limit = {"type": "rate-limit", "period": "2/60s", "name": f"ws-{uuid.uuid4().hex[:8]}"}
    config = live_config(live_url, [limit])
    keys = subscribe(engine, config)
    sid = keys.subscription.id
    async with gateway_on(transport, engine, database_url, config, redis_url=redis_url) as (
        gateway,
        base,
    ):
        for _ in range(2):
            async with open_ws(base, "/live/ws/echo", keys.primary) as s:
                await s.send("12345")
                assert await s.recv() == "12345"
                await s.send(b"123")
                assert await s.recv() == b"123"
        status, problem = await refusal(base, "/live/ws/echo", keys.primary)
        assert (status, problem["type"]) == (429, "/-/problems/rate-limited")

        def counted() -> bool:
            return sum(row[0] for row in list(gateway.usage.rows.values())) >= 3

        await poll(counted, "the sessions were not counted")
    rows = usage_rows(engine)  # (written at shutdown)
    assert rows[(sid, "live", 1)] == (2, 16, 16)  # two sessions, 8 payload bytes each way each
    assert rows[(sid, "live", 4)][0] == 1
    with engine.connect() as connection:
        messages = connection.execute(
            select(func.sum(Usage.messages_in), func.sum(Usage.messages_out)).where(
                Usage.subscription_id == sid, Usage.status_class == 1
            )
        ).one()
    assert tuple(messages) == (4, 4)  # two messages each way in each session


async def test_sessions_count_against_the_connection_cap(
    transport: str, sqlite_engine: Engine, sqlite_url: str, live_url: str
) -> None:
    config = live_config(live_url)
    keys = subscribe(sqlite_engine, config)
    async with (
        gateway_on(transport, sqlite_engine, sqlite_url, config, max_connections=2) as (
            _,
            base,
        ),
        open_ws(base, "/live/ws/echo", keys.primary) as first,
    ):
        async with open_ws(base, "/live/ws/echo", keys.primary) as second:
            async with httpx.AsyncClient(base_url=base) as client:
                refused = await client.get("/-/health")
                assert refused.status_code == 503
                assert refused.json()["type"] == "/-/problems/too-many-connections"
            await second.send("still here")
            assert await second.recv() == "still here"
        await first.send("and here")
        assert await first.recv() == "and here"

        async def health() -> int:
            async with httpx.AsyncClient(base_url=base) as client:
                return (await client.get("/-/health")).status_code

        deadline = time.monotonic() + WAIT  # the closed session's place is free again
        while await health() != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def test_graceful_shutdown_closes_sessions_with_1001(
    transport: str, sqlite_engine: Engine, sqlite_url: str, live_url: str
) -> None:
    config = live_config(live_url)
    keys = subscribe(sqlite_engine, config)
    gateway = build(sqlite_engine, sqlite_url, config)
    serving = serve_gateway(gateway, transport)
    base = serving.__enter__()
    stopper: threading.Thread | None = None
    try:
        async with open_ws(base, "/live/ws/echo", keys.primary) as s:
            await s.send("hi")
            assert await s.recv() == "hi"
            before = len(live.CLOSES)
            stopper = threading.Thread(target=serving.__exit__, args=(None, None, None))
            stopper.start()
            assert await closed_with(s) == (1001, "server shutting down")
        await poll(lambda: len(live.CLOSES) > before, "the backend never saw the close")
        assert live.CLOSES[-1] == (1001, "server shutting down")
    finally:
        if stopper is None:
            serving.__exit__(None, None, None)
        else:
            await asyncio.to_thread(stopper.join, WAIT)


async def first_line(response: httpx.Response) -> str:
    async for line in response.aiter_lines():
        if line.strip():
            return line
    raise AssertionError("the stream ended without a line")


async def test_streams_reach_the_client_as_they_are_sent(
    transport: str,
    sqlite_engine: Engine,
    sqlite_url: str,
    live_url: str,
    asgi_api_calls: list[str],
) -> None:
    config = live_config(
        live_url,
        [{"type": "cache", "ttl": 60}],
        timed={
            "path": "/timed",
            "backend": "live",
            "policies": [{"type": "timeout", "seconds": 0.3}],
        },
    )
    config["products"]["starter"]["apis"].append("timed")
    keys = subscribe(sqlite_engine, config)
    headers = {"X-API-Key": keys.primary}
    async with (
        gateway_on(transport, sqlite_engine, sqlite_url, config) as (_, base),
        httpx.AsyncClient(base_url=base, timeout=WAIT) as client,
    ):
        # The second event and chunk are an hour away: the first arrives on its own.
        for path, first in (
            ("/live/events?count=2&interval=3600", "id: 1"),
            ("/live/chunks?count=2&interval=3600", '{"tick": 1,'),
        ):
            async with client.stream("GET", path, headers=headers) as response:
                assert response.status_code == 200
                assert (await first_line(response)).startswith(first)
        # The cache never stores an event stream, however short.
        for _ in range(2):
            answer = await client.get("/live/events?count=2&interval=0.01", headers=headers)
            assert answer.headers["x-cache"] == "MISS"
            assert answer.text.count("event: tick") == 2
        # The timeout policy bounds the wait for the response head, not the stream.
        answer = await client.get("/timed/events?count=2&interval=0.6", headers=headers)
        assert answer.status_code == 200
        assert answer.text.count("event: tick") == 2
    if transport == "fast":  # (the fast transport streamed them itself)
        assert asgi_api_calls == []


def test_the_websocket_policy_round_trips_and_names_bad_options(
    sqlite_engine: Engine, live_url: str
) -> None:
    policy = {"type": "websocket", "idle_timeout": 60, "max_message_bytes": 65536}
    config = live_config(live_url, [policy])
    apply(sqlite_engine, config)
    with transaction(session_factory(sqlite_engine)) as session:
        exported = export_config(session)
    assert exported.apis["live"].policies == [policy]
    text = "apis: {a: {path: /a, backend: b, policies: [{type: websocket, max_message_bytes: 0}]}}"
    with pytest.raises(ConfigError) as error:
        load_config(text, source="tollway.yaml", env={})
    assert "apis.a.policies[0].max_message_bytes" in str(error.value)


async def test_a_server_without_http_answers_gets_a_close_with_1008(
    sqlite_engine: Engine, sqlite_url: str, live_url: str
) -> None:
    """Under an ASGI server without the ``websocket.http.response`` extension, a refusal before
    the upgrade is a close with 1008 (which the server answers with 403)."""
    gateway = build(sqlite_engine, sqlite_url, live_config(live_url))
    await gateway.startup()
    try:
        scope = {
            "type": "websocket",
            "path": "/live/ws/echo",
            "raw_path": b"/live/ws/echo",
            "query_string": b"",
            "headers": [(b"host", b"gateway.test")],
            "client": ("203.0.113.7", 50000),
            "scheme": "ws",
            "subprotocols": [],
        }
        incoming = [{"type": "websocket.connect"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await gateway(scope, receive, send)
    finally:
        await gateway.shutdown()
    assert sent == [{"type": "websocket.close", "code": 1008}]
