"""What every portal page shares: the portal context, the signed-in user, rendering."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote, urlencode

import jinja2
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tollway.db.models import LATENCY_BOUNDS, User, UserRole
from tollway.db.session import transaction
from tollway.portal.limits import AttemptLimiter
from tollway.portal.oidc import OidcClient
from tollway.portal.security import CSRF_FIELD, PREFIX, check_csrf, csrf_token, session_slot
from tollway.portal.sessions import SignIns
from tollway.portal.settings import PortalSettings
from tollway.portal.verification import EmailLinks
from tollway.services.audit import Actor, acting

P = ParamSpec("P")
T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(files("tollway.portal") / "templates")),
    autoescape=True,  # every template, whatever its extension
    undefined=jinja2.StrictUndefined,
)


def milliseconds(value: float | None) -> str:
    """A latency for people: "0.42 ms", "12.3 ms", "1.25 s"; from the last bucket on, "≥"."""
    if value is None:
        return "-"
    if value >= LATENCY_BOUNDS[-1]:
        return f"≥ {LATENCY_BOUNDS[-1] / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.{0 if value >= 100 else 1 if value >= 1 else 2}f} ms"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


TEMPLATES.filters["ms"] = milliseconds
TEMPLATES.filters["percent"] = percent


@dataclass
class Portal:
    """The portal's collaborators, built once by ``create_portal``."""

    sessions: sessionmaker[Session]
    settings: PortalSettings
    account_limiter: AttemptLimiter
    ip_limiter: AttemptLimiter
    signins: SignIns
    oidc: dict[str, OidcClient] = field(default_factory=dict)
    verification: EmailLinks | None = None
    resets: EmailLinks | None = None
    signup_limiter: AttemptLimiter | None = None
    public_url: str | None = None  # TOLLWAY_PUBLIC_URL: where links in e-mails point

    async def db(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``work(session, *args)`` in one transaction, off the event loop."""

        def run() -> T:
            with transaction(self.sessions) as session:
                return work(session, *args, **kwargs)

        return await run_in_threadpool(run)

    async def act(
        self,
        request: Request,
        work: Callable[Concatenate[Session, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Like :meth:`db`, for work that changes something: the audit log names the
        signed-in user (else ``portal``) and the client's address."""
        actor = actor_of(request)

        def run() -> T:
            with transaction(self.sessions) as session:
                return work(acting(session, actor), *args, **kwargs)

        return await run_in_threadpool(run)


def actor_of(request: Request) -> Actor:
    """Who acts through this request, for the audit log."""
    user = request.scope.get("user")
    address = request.client.host if request.client else ""
    return Actor.user(user.email, address) if user is not None else Actor("portal", address)


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


async def current_user(request: Request) -> User | None:
    """The signed-in, still active user (a page view: it keeps the session from idling out).

    A session that ended, expired or whose user was blocked has its cookie cleared here.
    """
    if "user" in request.scope:
        return request.scope["user"]  # type: ignore[no-any-return]
    slot = session_slot(request)
    found = await portal_of(request).signins.user(slot.token) if slot.token else None
    if found is None and slot.token is not None:
        slot.end = True
    request.scope["user"] = found[0] if found else None
    request.scope["portal_session_id"] = found[1].id if found else None
    return request.scope["user"]  # type: ignore[no-any-return]


def public_link(request: Request, path: str, **query: str) -> str:
    """An absolute link to ``path``: on TOLLWAY_PUBLIC_URL when set, else on the host this
    request was sent to (allowed by ``PortalEdge``), with the scheme the client used."""
    base = portal_of(request).public_url or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base}{path}" + (f"?{urlencode(query)}" if query else "")


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page; pages that may show a key in full are never cached."""
    body = TEMPLATES.get_template(template).render(
        request=request,
        base=PREFIX,
        user=request.scope.get("user"),
        csrf_field=CSRF_FIELD,
        csrf_token=csrf_token(request),
        providers=list(portal_of(request).settings.oidc_providers),
        **context,
    )
    response = HTMLResponse(body, status)
    response.headers["cache-control"] = "no-store"
    response.headers["x-frame-options"] = "DENY"
    response.headers["content-security-policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    response.headers["referrer-policy"] = "same-origin"
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def signin_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{PREFIX}/signin?next_url={quote(target, safe='')}"


def login_required(endpoint: Endpoint) -> Endpoint:
    """Anonymous visitors go to the sign-in page, which brings them back here after."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        if await current_user(request) is None:
            return redirect(signin_url(request))
        return await endpoint(request)

    return wrapper


def admin_required(endpoint: Endpoint) -> Endpoint:
    """Like ``login_required``, and the user must have the admin role."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        user = await current_user(request)
        if user is None:
            return redirect(signin_url(request))
        if user.role != UserRole.admin:
            raise HTTPException(403, "This page is for administrators.")
        return await endpoint(request)

    return wrapper


async def checked_form(request: Request) -> FormData:
    """The posted form, after its CSRF token was checked (403 otherwise)."""
    form = await request.form(max_files=0, max_fields=50)
    check_csrf(request, form)
    return form


def signed_in(request: Request) -> User:
    """The user that ``login_required`` already loaded."""
    user = request.scope.get("user")
    if user is None:
        raise HTTPException(401, "Sign in first.")
    return user  # type: ignore[no-any-return]
