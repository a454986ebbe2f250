"""Attacks on the developer portal (issue 9: items 3, 8, 9, 10 and the low ones), over real
sockets on both transports: the portal is served by the same gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine

from tests.gateway.conftest import SECRET
from tests.portal.conftest import PASSWORD, cheap_argon2, csrf_of  # noqa: F401 (autouse fixture)
from tests.portal.mailbox import running_mailbox
from tollway.db.models import UserState
from tollway.db.session import session_factory, transaction
from tollway.services import users
from tollway.services.passwords import hash_password
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..servers import free_port, serve_gateway

pytestmark = pytest.mark.anyio

PUBLIC_HOST = "portal.example"
PROXY = ["127.0.0.1"]  # the test client plays a reverse proxy on loopback


@contextmanager
def served(database_url: str, transport: str, **settings: Any) -> Iterator[str]:
    """The gateway, with its portal, over sockets; yields its base URL."""
    gateway = create_gateway(
        Settings(
            database_url=database_url,
            secret_key=SECRET,  # type: ignore[arg-type]
            refresh_interval=60,
            usage_flush_interval=3600,
            **settings,
        )
    )
    with serve_gateway(gateway, transport) as base:
        yield base


def make_user(engine: Engine, email: str) -> None:
    with transaction(session_factory(engine)) as session:
        users.create_user(session, email, password_hash=hash_password(PASSWORD))


async def submit(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    """Open the form at ``path`` and send it back, both with ``headers``."""
    page = await client.get(path, headers=headers)
    data = {"csrf_token": csrf_of(page), **fields}
    return await client.post(path, data=data, headers=headers)


def cookies_set(response: httpx.Response) -> dict[str, str]:
    """Each cookie the response sets, by name: its whole Set-Cookie line."""
    found = {}
    for line in response.headers.get_list("set-cookie"):
        found[next(iter(SimpleCookie(line)))] = line
    return found


@pytest.mark.parametrize("alias", [False, True], ids=["unknown-host", "allowed-alias"])
async def test_reset_links_never_point_at_the_host_the_attacker_sent(
    sqlite_engine: Engine,
    sqlite_url: str,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
    alias: bool,
) -> None:
    make_user(sqlite_engine, "victim@example.com")
    if alias:  # even a host the operator allows never ends up in a link
        monkeypatch.setenv("TOLLWAY_PORTAL_ALLOWED_HOSTS", "evil.example")
    with running_mailbox() as (box, hook):
        monkeypatch.setenv("TOLLWAY_PORTAL_VERIFICATION_HOOK", hook)
        with served(sqlite_url, transport, public_url=f"http://{PUBLIC_HOST}") as base:
            async with httpx.AsyncClient(base_url=base) as client:
                page = await client.get("/portal/forgot", headers={"Host": PUBLIC_HOST})
                forged = await client.post(
                    "/portal/forgot",
                    data={"csrf_token": csrf_of(page), "email": "victim@example.com"},
                    headers={"Host": "evil.example"},
                )
                if not alias:
                    assert forged.status_code == 400
                    assert forged.headers["content-type"] == "application/problem+json"
                    assert forged.json()["type"] == "/-/problems/portal-host-not-allowed"
                    assert "evil.example" not in forged.text
                await submit(
                    client,
                    "/portal/forgot",
                    headers={"Host": PUBLIC_HOST},
                    email="victim@example.com",
                )
                mails = await box.wait_for(2 if alias else 1)
    assert mails and all("evil.example" not in str(mail) for mail in mails)
    assert all(
        mail["reset_url"].startswith(f"http://{PUBLIC_HOST}/portal/reset?token=") for mail in mails
    )


async def test_a_burst_of_guesses_is_counted_before_any_is_checked(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    make_user(sqlite_engine, "target@example.com")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    with served(sqlite_url, transport) as base:
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            token = csrf_of(await client.get("/portal/signin"))

            async def guess(password: str) -> httpx.Response:
                data = {"csrf_token": token, "email": "target@example.com", "password": password}
                return await client.post("/portal/signin", data=data)

            burst = [asyncio.create_task(guess(f"wrong guess number {n}")) for n in range(60)]
            deadline = time.monotonic() + 30
            # Wait until the burst has used up the limit (or was all answered, as before the fix).
            while not any(t.done() and t.result().status_code == 429 for t in burst):
                if all(t.done() for t in burst) or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.01)
            right = await guess(PASSWORD)  # the right password, while the burst is under way
            answers = [await task for task in burst]
    checked = [answer for answer in answers if answer.status_code != 429]
    assert len(checked) <= 5  # TOLLWAY_PORTAL_SIGNIN_ATTEMPTS_PER_ACCOUNT
    assert right.status_code == 429


async def test_failures_behind_a_trusted_proxy_count_the_client_not_the_proxy(
    sqlite_engine: Engine, sqlite_url: str, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLWAY_PORTAL_SIGNIN_ATTEMPTS_PER_IP", "3")
    make_user(sqlite_engine, "victim@example.com")
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    with served(sqlite_url, transport, trusted_proxies=PROXY) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            for n in range(3):
                email = f"guess{n}@example.com"
                wrong = await submit(
                    client, "/portal/signin", attacker, email=email, password="wrong again"
                )
                assert wrong.status_code == 400
            refused = await submit(
                client, "/portal/signin", attacker, email="x@example.com", password="nope"
            )
            assert refused.status_code == 429
            victim = await submit(
                client,
                "/portal/signin",
                {"X-Forwarded-For": "198.51.100.8"},
                email="victim@example.com",
                password=PASSWORD,
            )
    assert victim.status_code == 303


async def test_behind_a_tls_terminating_proxy_the_cookies_are_secure(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    make_user(sqlite_engine, "dev@example.com")
    proxied = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    with served(sqlite_url, transport, trusted_proxies=PROXY) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/portal/signin", headers=proxied)
            assert all("; secure" in line.lower() for line in cookies_set(page).values())
            # (a browser sends Secure cookies back over https, which the proxy turns into http)
            cookie = "; ".join(line.split(";")[0] for line in cookies_set(page).values())
            fields = {"csrf_token": csrf_of(page), "email": "dev@example.com", "password": PASSWORD}
            signin = await client.post(
                "/portal/signin", data=fields, headers={**proxied, "Cookie": cookie}
            )
    assert signin.status_code == 303
    assert "tollway_portal" in cookies_set(signin)
    assert all("; secure" in line.lower() for line in cookies_set(signin).values())


@pytest.mark.parametrize("ending", ["sign-out", "password-change", "block-then-unblock"])
async def test_a_copied_session_cookie_is_worthless_once_the_session_ends(
    sqlite_engine: Engine, sqlite_url: str, transport: str, ending: str
) -> None:
    make_user(sqlite_engine, "dev@example.com")
    sessions = session_factory(sqlite_engine)
    with served(sqlite_url, transport) as base:
        async with (
            httpx.AsyncClient(base_url=base) as owner,
            httpx.AsyncClient(base_url=base) as thief,
        ):
            signin = await submit(
                owner, "/portal/signin", email="dev@example.com", password=PASSWORD
            )
            assert signin.status_code == 303
            thief.cookies.update(owner.cookies)  # e.g. read off a shared computer
            assert (await thief.get("/portal/account")).status_code == 200
            if ending == "sign-out":
                home = await owner.get("/portal/")
                await owner.post("/portal/signout", data={"csrf_token": csrf_of(home)})
            else:
                with transaction(sessions) as session:
                    user = users.get_user(session, "dev@example.com")
                    if ending == "password-change":
                        users.set_password(session, user, "a brand new long passphrase")
                    else:
                        users.set_user_state(session, user, UserState.blocked)
                with transaction(sessions) as session:
                    user = users.get_user(session, "dev@example.com")
                    users.set_user_state(session, user, UserState.active)
            stolen = await thief.get("/portal/account")
    assert stolen.status_code == 303 and stolen.headers["location"].startswith("/portal/signin")


async def test_a_common_breached_password_is_refused_at_sign_up(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    with served(sqlite_url, transport) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            # 12 characters, all different, no dictionary word: only a breach list knows it
            signup = await submit(
                client, "/portal/signup", email="new@example.com", password="1q2w3e4r5t6y"
            )
            signin = await submit(
                client, "/portal/signin", email="new@example.com", password="1q2w3e4r5t6y"
            )
    assert signup.status_code == 400 and "less predictable" in signup.text
    assert "very common password" in signup.text
    assert signin.status_code == 400


async def test_the_portal_answers_503_while_its_database_is_down(transport: str) -> None:
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/tollway"
    with served(down, transport) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            api = await client.get("/portal/", headers={"Accept": "application/json"})
            page = await client.get("/portal/", headers={"Accept": "text/html"})
    assert api.status_code == 503
    assert api.headers["content-type"] == "application/problem+json"
    assert api.json()["type"] == "/-/problems/portal-unavailable"
    assert "Traceback" not in api.text and "psycopg" not in api.text
    assert page.status_code == 503 and "cannot reach its database" in page.text
