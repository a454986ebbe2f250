"""The composition root: the gateway with Tollway's own pages mounted on reserved prefixes.

``/docs`` (API catalogue and Swagger UI), ``/-/`` (health, readiness, problem pages),
``/portal`` and the admin API (``/admin/api/v1``). Kept apart from
:class:`~tollway.gateway.exchange.gateway.Gateway`, the hot-path class, so the gateway imports
nothing of the pages it serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine

from tollway.admin import create_admin_api
from tollway.gateway.exchange.gateway import Gateway
from tollway.gateway.recording.metrics import Readings
from tollway.gateway.upstream.backends import HttpBackend
from tollway.portal import create_portal
from tollway.settings import Settings
from tollway.site.docs import create_docs_app
from tollway.site.internal import create_internal_app


def readiness(gateway: Gateway) -> tuple[bool, dict[str, object]]:
    """Ready when the config is loaded and the store answered recently."""
    health = gateway.health
    ok = health.loaded and health.store_error is None
    report: dict[str, object] = {
        "config_loaded": health.loaded,
        "store": "ok" if health.store_error is None else "unreachable",
        "apis": len(gateway.state.routes.routes),
        "active_keys": len(gateway.state.keys),
        "usage_buffered_rows": len(gateway.usage.rows),
        "usage_dropped_calls": gateway.usage.dropped,
    }
    # each HTTP backend's targets (health, circuit breaker), as this process sees them
    described = (backend.describe() for backend in gateway.state.backends.values())
    report["backends"] = dict(entry for entry in described if entry is not None)
    return ok, report


def metric_readings(gateway: Gateway) -> Readings:
    """The gateway's state for the gauges of ``/-/metrics`` (docs/observability.md)."""
    health = gateway.health
    contact = health.last_store_contact
    return Readings(
        config_version=gateway.loader.high_water,
        config_age_seconds=time.monotonic() - contact if contact else 0.0,
        usage_buffered_rows=len(gateway.usage.rows),
        usage_dropped_calls=gateway.usage.dropped,
        limits_store_errors=gateway.policing.store_failures,
        limits_fail_open=gateway.policing.fail_open_calls,
        pools=[
            (backend.name, target.label, *target.pool_counts())
            for backend in gateway.state.backends.values()
            if isinstance(backend, HttpBackend)
            for target in backend.pool.targets
        ],
    )


def create_gateway(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], float] = time.time,
) -> Gateway:
    """Build the gateway with its own pages (``/docs``, ``/-/``, ``/portal``, ``/admin``)."""
    gateway = Gateway(settings, engine=engine, clock=clock)
    gateway.mount("/docs", create_docs_app(lambda: gateway.state))
    gateway.observer.probe = lambda: metric_readings(gateway)
    gateway.mount(
        "/-", create_internal_app(lambda: readiness(gateway), gateway.observer.exposition)
    )
    admin_api = create_admin_api(settings, gateway.sessions, counters=gateway.counters, clock=clock)
    gateway.mount("/admin", admin_api)
    gateway.mount(
        "/portal",
        create_portal(
            settings,
            gateway.sessions,
            counters=gateway.counters,
            clock=clock,
            admin_api=admin_api,
        ),
    )
    return gateway
