"""Build the portal app that the gateway mounts at ``/portal``."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from importlib.resources import files

from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tollway.errors import NotFound, UserError
from tollway.portal import admin, auth, pages, session_pages, usage
from tollway.portal.api_bridge import AdminApiBridge
from tollway.portal.edge import PortalEdge, allowed_hosts
from tollway.portal.limits import CounterAttemptLimiter
from tollway.portal.oidc import OidcClient
from tollway.portal.security import PREFIX
from tollway.portal.sessions import PortalSessions, SignIns
from tollway.portal.settings import PortalSettings
from tollway.portal.verification import RESET_MAX_AGE, EmailLinks
from tollway.portal.web import Portal, render
from tollway.proxies import ProxyTrust
from tollway.services.portal_sessions import SessionRules
from tollway.settings import Settings
from tollway.stores import CounterStore, MemoryCounterStore
from tollway.types import ASGIApp

logger = logging.getLogger("tollway.portal")

SUB = "/subscriptions/{subscription_id:int}"


def _routes(admin_api: ASGIApp | None) -> list[Route | Mount]:
    bridge = [Mount("/admin/api/v1", app=AdminApiBridge(admin_api))] if admin_api else []
    return [
        *bridge,
        Route("/", pages.catalogue),
        Route("/signup", auth.signup, methods=["GET", "POST"]),
        Route("/signin", auth.signin, methods=["GET", "POST"]),
        Route("/signout", auth.signout, methods=["POST"]),
        Route("/signout/everywhere", auth.signout_everywhere, methods=["POST"]),
        Route("/sessions/{session_id:int}/end", session_pages.end_one, methods=["POST"]),
        Route("/verify", auth.verify_email),
        Route("/forgot", auth.forgot_password, methods=["GET", "POST"]),
        Route("/reset", auth.reset_password, methods=["GET", "POST"]),
        Route("/oidc/{provider}/start", auth.oidc_start),
        Route("/oidc/{provider}/callback", auth.oidc_callback),
        Route("/account", pages.account),
        Route("/subscribe", pages.subscribe, methods=["POST"]),
        Route(f"{SUB}/regenerate", pages.regenerate, methods=["POST"]),
        Route(f"{SUB}/cancel", pages.cancel, methods=["POST"]),
        Route(f"{SUB}/usage", usage.usage_page),
        Route(f"{SUB}/usage.svg", usage.usage_chart),
        Route(f"{SUB}/usage.csv", usage.usage_download),
        Route("/admin", admin.overview),
        Route("/admin/analytics", usage.analytics_page),
        Route("/admin/analytics.svg", usage.analytics_chart),
        Route("/admin/analytics.csv", usage.analytics_download),
        Route(f"/admin{SUB}", admin.change_subscription, methods=["POST"]),
        Route(f"/admin{SUB}/regenerate", admin.regenerate_key, methods=["POST"]),
        Route("/admin/config", admin.configuration),
        Route("/admin/audit", admin.audit_log),
        Route("/admin/users/{user_id:int}", admin.change_user, methods=["POST"]),
        Route(
            "/admin/users/{user_id:int}/sessions/end",
            session_pages.end_users_sessions,
            methods=["POST"],
        ),
        Mount("/static", StaticFiles(directory=str(files("tollway.portal") / "static"))),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return render(request, "error.html", exc.status_code, message=exc.detail)


async def _user_error(request: Request, exc: Exception) -> Response:
    status = 404 if isinstance(exc, NotFound) else 400
    return render(request, "error.html", status, message=str(exc))


def _session_secret(settings: Settings) -> str:
    if settings.secret_key is not None:
        return "portal-session:" + settings.secret_key.get_secret_value()
    logger.warning(
        "TOLLWAY_SECRET_KEY is not set: portal forms and e-mailed links work only until this "
        "process stops, and only in this process"
    )
    return secrets.token_urlsafe(32)


def check_portal_settings(settings: Settings, config: PortalSettings) -> None:
    """Refuse to start with settings that would make e-mailed links unsafe."""
    if config.verification_hook and settings.public_url is None:
        raise UserError(
            "TOLLWAY_PORTAL_VERIFICATION_HOOK is set, so the portal e-mails links: set "
            "TOLLWAY_PUBLIC_URL to the address people reach it at (e.g. "
            "https://api.example.com), so links never come from a request's Host header"
        )


def create_portal(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    portal_settings: PortalSettings | None = None,
    clock: Callable[[], float] = time.time,
    counters: CounterStore | None = None,
    admin_api: ASGIApp | None = None,
) -> Starlette:
    """The developer portal as an ASGI app; it expects full paths under ``/portal``.

    ``admin_api`` (the admin API app) is also served to signed-in admins at
    ``/portal/admin/api/v1`` with their session (``tollway.portal.api_bridge``).

    ``counters`` is the gateway's counter store (memory or Redis), which also counts sign-in
    attempts; without one the portal keeps its own in memory. ``clock`` times sessions, links'
    limits and ID tokens. Raises :class:`UserError` for unsafe settings.
    """
    config = portal_settings or PortalSettings()
    check_portal_settings(settings, config)
    counters = counters or MemoryCounterStore()
    secret = _session_secret(settings)
    rules = SessionRules(config.session_max_age, config.session_idle_timeout)
    signins = SignIns(sessions, rules, clock)
    portal = Portal(
        sessions,
        config,
        verification=EmailLinks(secret, config.verification_hook, "verify"),
        resets=EmailLinks(secret, config.verification_hook, "reset", RESET_MAX_AGE)
        if config.verification_hook
        else None,
        account_limiter=CounterAttemptLimiter(
            counters, "account", config.signin_attempts_per_account, config.signin_window, clock
        ),
        ip_limiter=CounterAttemptLimiter(
            counters, "ip", config.signin_attempts_per_ip, config.signin_window, clock
        ),
        signins=signins,
        public_url=settings.public_url,
        signup_limiter=CounterAttemptLimiter(
            counters, "signup", config.signups_per_ip, 3600, clock
        ),
        oidc={
            p.name: OidcClient(p, leeway=config.id_token_leeway, clock=clock)
            for p in config.oidc_providers
        },
    )
    app = Starlette(
        routes=[Mount(PREFIX, routes=_routes(admin_api))],
        middleware=[
            Middleware(
                PortalEdge,
                trust=ProxyTrust(settings.trusted_proxies),
                hosts=allowed_hosts(settings.public_url, config.allowed_hosts),
            ),
            Middleware(
                PortalSessions,
                signins=signins,
                form_secret=secret,
                secure_always=(settings.public_url or "").startswith("https://"),
            ),
        ],
        exception_handlers={HTTPException: _http_error, UserError: _user_error},
    )
    app.state.portal = portal
    return app
