"""Build the admin API app that the gateway mounts at ``/admin`` (docs/admin-api.md)."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from tollway.admin.app import PREFIX, AdminContext
from tollway.admin.errors import install_handlers
from tollway.admin.routes import router
from tollway.crypto import SecretBox
from tollway.portal.limits import CounterAttemptLimiter
from tollway.portal.settings import PortalSettings
from tollway.proxies import ProxyTrust
from tollway.settings import Settings
from tollway.stores import CounterStore, MemoryCounterStore


def create_admin_api(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    counters: CounterStore | None = None,
    clock: Callable[[], float] = time.time,
    portal_settings: PortalSettings | None = None,
) -> FastAPI:
    """The admin API as an ASGI app expecting full paths under ``/admin/api/v1``."""
    config = portal_settings or PortalSettings()
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    app = FastAPI(
        title="Tollway admin API",
        version="1",
        description="Manage Tollway: APIs, backends, products, policies, named values, users, "
        "subscriptions, keys, usage, the audit log and the declarative config (docs/admin-api.md).",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.admin = AdminContext(
        sessions=sessions,
        secret_box=SecretBox(secret),
        limiter=CounterAttemptLimiter(
            counters or MemoryCounterStore(),
            "admin-ip",
            config.signin_attempts_per_ip,
            config.signin_window,
            clock,
        ),
        trust=ProxyTrust(settings.trusted_proxies),
        clock=clock,
        retry_after=max(1, round(config.signin_window)),
    )
    install_handlers(app)
    app.include_router(router)
    return app
