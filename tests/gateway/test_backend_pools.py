"""Backend pools (issue 13): several targets, health checks, circuit breaker, retries, TLS.

Real backends on loopback (uvicorn in threads, or a raw socket server where a backend must
misbehave), the gateway served on both transports. A backend is "killed" by stopping its server
and "restarted" by serving it again on the same port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trustme
from sqlalchemy import Engine
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tollway.samples import live
from tollway.settings import Settings
from tollway.site.compose import create_gateway
from tollway.types import Receive, Scope, Send

from ..security.rawhttp import connect, read_answer
from ..servers import read_body, serve_in_thread
from .conftest import SECRET, apply, serving

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


class Instance:
    """One backend instance: counts what it receives; answers 500 while ``failing``."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.failing = False
        self.connections: set[int] = set()  # client ports seen
        self.hosts: set[bytes] = set()
        self.delay = 0.0
        self.probed_with: set[bytes] = set()  # x-key headers health probes carried

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await read_body(receive)
        self.connections.add(scope["client"][1])
        self.hosts.update(value for name, value in scope["headers"] if name == b"host")
        await asyncio.sleep(self.delay)
        if scope["path"] == "/healthz":
            status = 200
            self.probed_with.update(v for name, v in scope["headers"] if name == b"x-key")
        else:
            self.calls[scope["method"]] += 1
            status = 500 if self.failing else 200
        length = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": status, "headers": length})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})


@contextmanager
def instance_server(app: Instance, port: int = 0, **options: Any) -> Iterator[str]:
    with serve_in_thread(app, lifespan="off", port=port, **options) as base:  # type: ignore[arg-type]
        yield base


def pool_config(backend: dict[str, Any]) -> dict[str, Any]:
    """One open API ``/pool`` on ``backend``."""
    return {
        "backends": {"pool": backend},
        "apis": {"pool": {"path": "/pool", "backend": "pool", "subscription_required": False}},
    }


@asynccontextmanager
async def _serve(
    engine: Engine, url: str, transport: str, config: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway over ``config`` on ``transport`` (the database kind does not matter here)."""
    apply(engine, config)
    settings = Settings(database_url=url, secret_key=SECRET)  # type: ignore[arg-type]
    gateway = create_gateway(settings, engine=engine)
    with serving(gateway, transport) as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=20) as client:
            yield client


Serve = Callable[[dict[str, Any]], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def gateway_for(sqlite_engine: Engine, sqlite_url: str, transport: str) -> Serve:
    """``gateway_for(config)``: a client of the gateway over ``config``, on both transports."""
    return partial(_serve, sqlite_engine, sqlite_url, transport)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        await asyncio.sleep(0.05)


async def targets(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    ready = (await client.get("/-/ready")).json()
    return list(ready["backends"]["pool"])


def assert_unavailable(response: httpx.Response) -> None:
    """The all-targets-out answer: 503 problem+json with Retry-After, not a timeout."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/-/problems/backend-unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def test_weights_hold_over_1000_calls(gateway_for: Serve) -> None:
    heavy, light = Instance(), Instance()
    with instance_server(heavy) as heavy_url, instance_server(light) as light_url:
        backend = {"targets": [{"url": heavy_url, "weight": 3}, {"url": light_url, "weight": 1}]}
        async with gateway_for(pool_config(backend)) as client:
            # (raw keep-alive requests: 1000 calls through httpx would take seconds of CPU)
            with connect(str(client.base_url)) as sock:
                for _ in range(1000):
                    sock.sendall(b"GET /pool/x HTTP/1.1\r\nhost: gateway\r\n\r\n")
                    assert read_answer(sock, then_closed=False).status == 200
    assert heavy.calls["GET"] + light.calls["GET"] == 1000
    assert abs(heavy.calls["GET"] - 750) <= 75, heavy.calls
    assert abs(light.calls["GET"] - 250) <= 25, light.calls
    # each instance got its own Host
    assert heavy.hosts == {urlsplit(heavy_url).netloc.encode()}
    assert light.hosts == {urlsplit(light_url).netloc.encode()}


async def test_least_connections_favours_the_quick_target(gateway_for: Serve) -> None:
    slow, quick = Instance(), Instance()
    slow.delay = 0.1
    with instance_server(slow) as slow_url, instance_server(quick) as quick_url:
        backend = {
            "targets": [{"url": slow_url}, {"url": quick_url}],
            "balance": "least-connections",
        }
        async with gateway_for(pool_config(backend)) as client:

            async def worker() -> None:
                for _ in range(10):
                    assert (await client.get("/pool/x")).status_code == 200

            await asyncio.gather(*(worker() for _ in range(4)))
    assert slow.calls["GET"] + quick.calls["GET"] == 40
    assert slow.calls["GET"] < 14, (slow.calls, quick.calls)  # round-robin would give it 20


async def test_a_killed_target_leaves_rotation_and_comes_back(gateway_for: Serve) -> None:
    first, second = Instance(), Instance()
    unhealthy = 2
    first_server = ExitStack()
    with first_server, instance_server(second) as second_url:
        first_url = first_server.enter_context(instance_server(first))
        backend = {
            "targets": [{"url": first_url}, {"url": second_url}],
            "health_check": {
                "path": "/healthz",
                "interval": 0.2,
                "timeout": 2,
                "healthy": 2,
                "unhealthy": unhealthy,
            },
            "retries": 1,
            "headers": {"x-key": "k1"},
        }
        async with gateway_for(pool_config(backend)) as client:
            failures: list[int] = []
            done = asyncio.Event()

            async def load() -> None:
                while not done.is_set():
                    answer = await client.get("/pool/x")
                    if answer.status_code != 200:
                        failures.append(answer.status_code)

            workers = [asyncio.create_task(load()) for _ in range(4)]
            await until(lambda: _true(first.calls["GET"] > 20), "the first target takes calls")
            await asyncio.to_thread(first_server.close)  # killed, under load
            await until(lambda: _down(client, 0), "the killed target is out of rotation")
            served = second.calls["GET"]
            await until(lambda: _true(second.calls["GET"] > served + 100), "more calls served")
            done.set()
            await asyncio.gather(*workers)
            assert len(failures) <= unhealthy, failures
            first_calls = first.calls["GET"]
            with instance_server(first, port=urlsplit(first_url).port or 0):
                await until(lambda: _up(client, 0), "the restarted target is back")

                async def first_gets_calls() -> bool:
                    assert (await client.get("/pool/x")).status_code == 200
                    return first.calls["GET"] > first_calls

                await until(first_gets_calls, "the restarted target takes calls again")
    assert first.probed_with == second.probed_with == {b"k1"}  # probes carry the backend's headers


async def _true(value: bool) -> bool:
    return value


async def _down(client: httpx.AsyncClient, index: int) -> bool:
    return (await targets(client))[index]["health"] == "down"


async def _up(client: httpx.AsyncClient, index: int) -> bool:
    return (await targets(client))[index]["health"] == "up"


async def test_all_targets_down_is_503_with_retry_after_at_once(gateway_for: Serve) -> None:
    nothing = [f"http://127.0.0.1:{_closed_port()}" for _ in range(2)]
    backend = {
        "targets": [{"url": url} for url in nothing],
        "health_check": {"path": "/healthz", "interval": 0.1, "unhealthy": 1},
        "connect_timeout": 30,
        "read_timeout": 30,
    }
    async with gateway_for(pool_config(backend)) as client:

        async def all_down() -> bool:
            return all(target["health"] == "down" for target in await targets(client))

        await until(all_down, "every target is out of rotation")
        for _ in range(3):
            assert_unavailable(await client.get("/pool/x"))
            assert_unavailable(await client.post("/pool/x", content=b"{}"))


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_circuit_breaker_opens_half_opens_and_closes(gateway_for: Serve) -> None:
    app = Instance()
    with instance_server(app) as url:
        backend = {"url": url, "circuit_breaker": {"failures": 3, "window": 60, "open_for": 1}}
        async with gateway_for(pool_config(backend)) as client:
            assert (await client.get("/pool/x")).status_code == 200
            assert (await targets(client))[0]["circuit"] == "closed"
            app.failing = True
            for _ in range(3):  # the backend's own 500s reach the client, and count
                assert (await client.get("/pool/x")).status_code == 500
            assert (await targets(client))[0]["circuit"] == "open"
            assert_unavailable(await client.get("/pool/x"))  # not sent: the backend saw 4
            assert app.calls["GET"] == 4

            async def trial_sent() -> bool:  # after open_for, one trial call goes through
                return (await client.get("/pool/x")).status_code != 503

            await until(trial_sent, "the circuit half-opens")
            assert app.calls["GET"] == 5  # the trial failed (500): open again at once
            assert_unavailable(await client.get("/pool/x"))
            assert app.calls["GET"] == 5
            app.failing = False

            async def closed_again() -> bool:
                return (await client.get("/pool/x")).status_code == 200

            await until(closed_again, "a successful trial closes the circuit")
            assert (await targets(client))[0]["circuit"] == "closed"
            for _ in range(5):
                assert (await client.get("/pool/x")).status_code == 200


class Dropper:
    """A backend that reads a whole request, counts it, and closes without answering."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data.split(b" ", 1)[0])

    def close(self) -> None:
        self.listener.close()


async def test_a_post_is_never_sent_twice(gateway_for: Serve) -> None:
    dropper, app = Dropper(), Instance()
    try:
        with instance_server(app) as url:
            backend = {"targets": [{"url": dropper.url}, {"url": url}], "retries": 3}
            config = pool_config(backend)
            statuses: Counter[int] = Counter()
            async with gateway_for(config) as client:
                for _ in range(6):
                    statuses[(await client.post("/pool/x", content=b'{"n": 1}')).status_code] += 1
    finally:
        dropper.close()
    # Every POST reached exactly one backend once: the dropped ones were not sent again.
    assert len(dropper.requests) + app.calls["POST"] == 6
    assert dropper.requests == [b"POST"] * statuses[502]
    assert statuses[200] == app.calls["POST"] == 3


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A test CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("gateway@example.com")
    files = {
        "ca": folder / "ca.pem",
        "server": folder / "server.pem",
        "client": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    return {name: str(path) for name, path in files.items()}


async def test_tls_to_backends(
    gateway_for: Serve,
    tls_files: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tollway.gateway")
    server = {"ssl_certfile": tls_files["server"]}
    mutual = {**server, "ssl_ca_certs": tls_files["ca"], "ssl_cert_reqs": ssl.CERT_REQUIRED}
    client_cert = {"cert_file": tls_files["client"], "key_file": tls_files["client_key"]}
    app = Instance()
    with instance_server(app, **server) as url, instance_server(app, **mutual) as mutual_url:
        assert url.startswith("https://")
        backends = {
            "trusted": {"url": url, "tls": {"ca_file": tls_files["ca"]}},
            "untrusted": {"url": url},  # the system store does not know the test CA
            "by-name": {
                "url": url,
                "tls": {"ca_file": tls_files["ca"], "server_name": "localhost"},
            },
            "unverified": {"url": url, "tls": {"verify": False}},
            "mutual": {"url": mutual_url, "tls": {"ca_file": tls_files["ca"], **client_cert}},
            "no-client-cert": {"url": mutual_url, "tls": {"ca_file": tls_files["ca"]}},
            "missing-ca": {"url": url, "tls": {"ca_file": tls_files["ca"] + ".missing"}},
        }
        config = {
            "backends": backends,
            "apis": {
                name: {"path": f"/{name}", "backend": name, "subscription_required": False}
                for name in backends
            },
        }
        async with gateway_for(config) as client:
            answers = {name: (await client.get(f"/{name}/x")) for name in backends}
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "trusted": 200,
        "untrusted": 502,
        "by-name": 200,
        "unverified": 200,
        "mutual": 200,
        "no-client-cert": 502,
        "missing-ca": 502,
    }
    assert answers["untrusted"].json()["type"] == "/-/problems/backend-unreachable"
    warnings = [r.getMessage() for r in caplog.records if "verification is off" in r.getMessage()]
    assert warnings == [
        "backend unverified: TLS certificate verification is off (tls.verify: false)"
    ]
    assert Path(tls_files["client_key"]).read_text() not in caplog.text
    assert "backend 'missing-ca': its TLS settings cannot be used" in caplog.text


async def test_pooled_connections_are_limited(gateway_for: Serve) -> None:
    by_count, by_age = Instance(), Instance()
    with instance_server(by_count) as count_url, instance_server(by_age) as age_url:
        config = {
            "backends": {
                "count": {"url": count_url, "max_requests": 2},
                "age": {"url": age_url, "max_idle_seconds": 0.2},
            },
            "apis": {
                name: {"path": f"/{name}", "backend": name, "subscription_required": False}
                for name in ("count", "age")
            },
        }
        async with gateway_for(config) as client:
            for _ in range(6):
                assert (await client.get("/count/x")).status_code == 200
            for _ in range(3):
                assert (await client.get("/age/x")).status_code == 200
            await asyncio.sleep(0.5)  # (idle longer than max_idle_seconds)
            assert (await client.get("/age/x")).status_code == 200
            ready = (await client.get("/-/ready")).json()
    assert len(by_count.connections) == 3  # two calls per connection
    assert len(by_age.connections) == 2  # reused while fresh, then a new one
    assert ready["backends"]["count"] == [{"target": 1, "weight": 1}]


async def test_websocket_sessions_use_the_pool(gateway_for: Serve) -> None:
    with serve_in_thread(live.app) as first, serve_in_thread(live.app) as second:
        config = {
            "backends": {
                "live": {"targets": [{"url": first}, {"url": second}]},
                "gone": {
                    "url": f"http://127.0.0.1:{_closed_port()}",
                    "health_check": {"path": "/", "interval": 0.1, "unhealthy": 1},
                },
            },
            "apis": {
                name: {"path": f"/{name}", "backend": name, "subscription_required": False}
                for name in ("live", "gone")
            },
        }
        async with gateway_for(config) as client:
            base = "ws" + str(client.base_url).removeprefix("http")
            hosts = set()
            for _ in range(2):
                async with ws_connect(f"{base}/live/ws/echo", open_timeout=20) as session:
                    await session.send("request")
                    hosts.add(json.loads(await session.recv())["headers"]["host"])
            assert hosts == {urlsplit(first).netloc, urlsplit(second).netloc}

            async def gone_is_down() -> bool:
                ready = (await client.get("/-/ready")).json()
                return bool(ready["backends"]["gone"][0]["health"] == "down")

            await until(gone_is_down, "the gone backend is out of rotation")
            with pytest.raises(InvalidStatus) as refused:
                async with ws_connect(f"{base}/gone/ws", open_timeout=20):
                    pass
    response = refused.value.response
    assert response.status_code == 503
    assert json.loads(response.body or b"")["type"] == "/-/problems/backend-unavailable"
    assert int(response.headers["retry-after"]) >= 1
