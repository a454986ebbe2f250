"""Build the admin API app that the gateway mounts at ``/admin`` (it serves ``/admin/api/v1``).

Every request needs ``Authorization: Bearer twa_...`` (``tollway token create``). A request with
a wrong, revoked or expired token counts as a failed attempt of its client address, with the
portal's sign-in limiter (counted before the token is checked; a success gives it back), so
guessing tokens is as slow as guessing passwords. Read-only tokens may only read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from tollway.admin.errors import FORBIDDEN, TOO_MANY, UNAUTHORIZED, Problem
from tollway.crypto import SecretBox
from tollway.db.session import transaction
from tollway.portal.api_bridge import PORTAL_ADMIN
from tollway.portal.edge import through_proxies
from tollway.portal.limits import AttemptLimiter
from tollway.proxies import ProxyTrust
from tollway.services.admin_tokens import authenticate_token
from tollway.services.audit import Actor, acting

PREFIX = "/admin/api/v1"
P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class AdminContext:
    sessions: sessionmaker[Session]
    secret_box: SecretBox
    limiter: AttemptLimiter
    trust: ProxyTrust
    clock: Callable[[], float]
    retry_after: int  # seconds a client refused for too many wrong tokens is told to wait

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Caller:
    """Who calls: the token's name (as the audit log's actor) and whether it may write."""

    actor: Actor
    read_only: bool


def context(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.admin
    return ctx


async def run(
    request: Request,
    caller: Caller | None,
    work: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``work(session, ...)`` in one transaction, off the event loop; what it changes is
    audited as ``caller``'s."""
    ctx = context(request)

    def go() -> T:
        with transaction(ctx.sessions) as session:
            if caller is not None:
                acting(session, caller.actor)
            return work(session, *args, **kwargs)

    return await run_in_threadpool(go)


def _address(request: Request) -> str:
    scope = through_proxies(request.scope, context(request).trust)
    client = scope.get("client")
    return str(client[0]) if client else ""


BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="twa_ admin token",
    description="An admin token from `tollway token create NAME [--read-only]`.",
)


async def caller(
    request: Request,
    _documented: HTTPAuthorizationCredentials | None = Depends(BEARER),  # noqa: B008
) -> Caller:
    """The token's holder (or the portal admin the portal let through, with their session);
    401 without a live token, 429 after too many failed attempts."""
    bridged = request.scope.get(PORTAL_ADMIN)
    if bridged is not None:
        email, address = bridged
        return Caller(Actor.user(email, address), read_only=False)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(UNAUTHORIZED, headers={"www-authenticate": 'Bearer realm="tollway-admin"'})
    ctx = context(request)
    address = _address(request)
    charge = await ctx.limiter.attempt(address)
    if charge is None:
        raise Problem(TOO_MANY, headers={"retry-after": str(ctx.retry_after)})
    now = ctx.now()
    found = await run(request, None, authenticate_token, token.strip(), now)
    if found is None:
        raise Problem(
            UNAUTHORIZED,
            "the admin token is unknown, revoked or expired",
            headers={"www-authenticate": 'Bearer realm="tollway-admin", error="invalid_token"'},
        )
    await ctx.limiter.forgive(charge)
    return Caller(Actor.token(found.name, address), found.read_only)


async def reader(who: Caller = Depends(caller)) -> Caller:  # noqa: B008
    return who


async def writer(who: Caller = Depends(caller)) -> Caller:  # noqa: B008
    if who.read_only:
        raise Problem(FORBIDDEN)
    return who
