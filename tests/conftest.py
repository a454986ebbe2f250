"""Shared fixtures: migrated stores on SQLite and on the real PostgreSQL.

One rule for everything outside Python that a test needs (a service or a program): locally the
test skips and says what to set or install; in CI (.ci/run sets TOLLWAY_TEST_REQUIRE_SERVICES=1
and installs them) a missing one is a failure, so those tests can never silently skip there.
Postgres/Redis tests read TOLLWAY_TEST_POSTGRES_URL / TOLLWAY_TEST_REDIS_URL (``require_service``);
programs such as nginx or systemd-analyze are found with ``require_tool``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tollway.db.migrate import upgrade
from tollway.db.session import make_engine, session_factory

from .servers import TRANSPORTS, serve_in_thread

POSTGRES_URL = os.environ.get("TOLLWAY_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL")
REQUIRE_SERVICES = os.environ.get("TOLLWAY_TEST_REQUIRE_SERVICES") == "1"


def missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it where every service is required (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (TOLLWAY_TEST_REQUIRE_SERVICES=1: .ci/run provides it)")
    pytest.skip(reason)


def require_service(url: str | None, name: str) -> str:
    if url:
        return url
    missing(f"set TOLLWAY_TEST_{name.upper()}_URL to run this test")


def require_tool(name: str, *, package: str | None = None, path: str | None = None) -> str:
    """The full path of the program ``name`` (``path`` first, then ``$PATH``).

    When it is missing the test skips, or fails under TOLLWAY_TEST_REQUIRE_SERVICES=1.
    ``package`` is the Debian package that provides it (default: ``name``).
    """
    found = path if path and os.path.exists(path) else shutil.which(name)
    if found is None:
        missing(f"{name} is not installed (apt-get install {package or name})")
    return found


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL schema, dropped after the test."""
    base = require_service(POSTGRES_URL, "postgres")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/tollway.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on the real PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated store (SQLite and PostgreSQL)."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite store, for tests that do not depend on the database kind."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Every security and behaviour test over sockets runs on the fast path and the ASGI path."""
    return str(request.param)


@pytest.fixture
def asgi_api_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the API calls that took the ASGI transport (``Gateway.handle_api``), so a test
    can show that the fast transport served a call itself rather than handing it over."""
    from tollway.gateway.exchange.gateway import Gateway

    calls: list[str] = []
    handle_api = Gateway.handle_api

    async def counted(self: Gateway, route: Any, rest: bytes, scope: Any, *args: Any) -> None:
        calls.append(scope["path"])
        await handle_api(self, route, rest, scope, *args)

    monkeypatch.setattr(Gateway, "handle_api", counted)
    return calls


@pytest.fixture(scope="session")
def echo_url() -> Iterator[str]:
    """The echo sample over a real socket, one for the session (its ``served`` counter is only
    compared within a test)."""
    from tollway.samples.echo import app

    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="session")
def names_url() -> Iterator[str]:
    """The names sample over a real socket, one for the session (it keeps no state)."""
    from tollway.samples.names import app

    with serve_in_thread(app) as base:
        yield base


# Redis as production runs it (tests/redis_servers.py): servers of the session's own, started
# when a test first asks for them and killed at the end.
@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Redis that speaks TLS only and wants a client certificate from a test CA."""
    from .redis_servers import TlsFiles, redis_server

    directory = tmp_path_factory.mktemp("redis-tls")
    with redis_server(directory / "server", tls=TlsFiles.make(directory), client_certs=True) as s:
        yield s


@pytest.fixture(scope="session")
def sentinel_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A master, its replica and a sentinel (not failed over: a test that kills a master
    starts a group of its own)."""
    from .redis_servers import sentinel_group

    with sentinel_group(tmp_path_factory.mktemp("redis-sentinel")) as group:
        yield group


@pytest.fixture(scope="session")
def tls_sentinel_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The same over TLS only (servers, replication, sentinel), client certificates required."""
    from .redis_servers import TlsFiles, sentinel_group

    directory = tmp_path_factory.mktemp("redis-tls-sentinel")
    with sentinel_group(directory, tls=TlsFiles.make(directory)) as group:
        yield group


@pytest.fixture(scope="session")
def cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A 3-node Redis Cluster (its nodes, as a list)."""
    from .redis_servers import redis_cluster

    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as nodes:
        yield nodes


@pytest.fixture(scope="session")
def tls_cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A 3-node Redis Cluster over TLS only, client certificates required."""
    from .redis_servers import TlsFiles, redis_cluster

    directory = tmp_path_factory.mktemp("redis-tls-cluster")
    with redis_cluster(directory, tls=TlsFiles.make(directory)) as nodes:
        yield nodes
