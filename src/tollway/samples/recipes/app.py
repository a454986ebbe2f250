"""The app factory: routers, problem handlers, middleware, and a lifespan owning the clients."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
import httpx
from fastapi import FastAPI

from .db import make_engine, session_factory
from .middleware import ProcessTimeMiddleware
from .migrate import upgrade
from .problems import install_problem_handlers
from .routes import api_router, pages
from .security import Passwords
from .seed import seed
from .settings import RecipesSettings


def create_app(
    settings: RecipesSettings, *, clock: Callable[[], float] = time.perf_counter
) -> FastAPI:
    """Build the recipes API from ``settings``; the database is opened by the lifespan.

    ``clock`` times each request for ``X-Process-Time`` (tests pass one they control).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Made here, not in the factory: a relative SQLite path then resolves against the
        # working directory the server runs in, not the one the module was imported from.
        engine = make_engine(settings.database_url)
        app.state.sessions = session_factory(engine)
        try:
            # Migrations and seeding are blocking database work: keep them off the event loop.
            if settings.migrate_on_startup:
                await anyio.to_thread.run_sync(upgrade, engine)
            if settings.seed_on_startup:
                passwords = app.state.passwords
                await anyio.to_thread.run_sync(seed, app.state.sessions, settings, passwords)
            async with httpx.AsyncClient(timeout=settings.ideas_timeout) as client:
                app.state.http_client = client
                yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="Recipes",
        description="Sample API (seed 004): users, JWT sign-in, recipes and recipe ideas.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.passwords = Passwords(settings.password_memory_kib, settings.password_time_cost)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    app.state.token_secret = secret or secrets.token_urlsafe(32)
    install_problem_handlers(app)
    app.add_middleware(ProcessTimeMiddleware, clock=clock)
    app.include_router(api_router)
    app.include_router(pages.router)
    return app
