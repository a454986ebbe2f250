"""Usage pages: a developer's subscription (``/subscriptions/<id>/usage``) and, for admins, all
traffic (``/admin/analytics``). Each is a page with figures and tables, an SVG chart and a CSV
of the rows behind the chart, all read from the same query parameters (period and filters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tollway.db.models import Subscription, User
from tollway.errors import UserError
from tollway.portal.chart import usage_svg
from tollway.portal.web import admin_required, login_required, portal_of, render, signed_in
from tollway.services import subscriptions
from tollway.services import usage as usage_service
from tollway.services.usage import (
    BREAKDOWNS,
    PERIODS,
    Period,
    QuotaStatus,
    Scope,
    UsageReport,
    period_named,
    quota_status,
    usage_csv,
)


@dataclass
class View:
    """What one usage page shows, and the filters it was asked for (to keep in links)."""

    period: Period
    scope: Scope
    filters: dict[str, str]
    report: UsageReport | None = None
    subscription: Subscription | None = None
    quotas: list[QuotaStatus] = field(default_factory=list)
    apis: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)

    def query(self, **changes: str) -> str:
        """The query string of this view, with ``changes`` (empty values dropped)."""
        params = {"period": self.period.name, **self.filters, **changes}
        return urlencode({k: v for k, v in params.items() if v})


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _period(request: Request) -> Period:
    params = request.query_params
    return period_named(params.get("period") or params.get("span"))


# a developer's subscription ----------------------------------------------------------------------
def _subscription_view(
    session: Session, user: User, subscription_id: int, period: Period, api: str, full: bool
) -> View:
    subscription = subscriptions.owned_subscription(session, user, subscription_id)
    api_id = usage_service.api_named(session, api).id if api else None
    view = View(period, Scope(subscription_id=subscription.id, api_id=api_id), {"api": api})
    view.subscription = subscription
    if full:
        view.report = usage_service.usage_report(session, view.scope, period, _now())
        view.quotas = quota_status(session, subscription, datetime.now(UTC).timestamp())
        used = {line.value for line in view.report.breakdowns["api"]}
        view.apis = sorted(({a.name for a in subscription.product.apis} | used | {api}) - {""})
    return view


async def _subscription(request: Request, full: bool = True) -> View:
    return await portal_of(request).db(
        _subscription_view,
        signed_in(request),
        request.path_params["subscription_id"],
        _period(request),
        request.query_params.get("api", ""),
        full,
    )


@login_required
async def usage_page(request: Request) -> Response:
    view = await _subscription(request)
    return render(request, "usage.html", view=view, periods=PERIODS.values())


@login_required
async def usage_chart(request: Request) -> Response:
    view = await _subscription(request)
    return await _svg(view)


@login_required
async def usage_download(request: Request) -> Response:
    view = await _subscription(request, full=False)
    assert view.subscription is not None
    return await _csv(request, view, f"usage-subscription-{view.subscription.id}")


# all traffic, for admins -------------------------------------------------------------------------
def _subscription_number(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise UserError(f"Subscription {text!r}: give a subscription number such as 12.")
    return int(text)


def _admin_view(
    session: Session, period: Period, api: str, product: str, subscription: str, full: bool
) -> View:
    scope = Scope(
        subscription_id=_subscription_number(subscription),
        api_id=usage_service.api_named(session, api).id if api else None,
        product_id=usage_service.product_named(session, product).id if product else None,
    )
    view = View(period, scope, {"api": api, "product": product, "subscription": subscription})
    if full:
        view.report = usage_service.usage_report(session, scope, period, _now(), BREAKDOWNS)
        if scope.subscription_id:  # one subscription: its quotas too
            view.subscription = session.get(Subscription, scope.subscription_id)
        if view.subscription is not None:
            view.quotas = quota_status(session, view.subscription, datetime.now(UTC).timestamp())
        view.apis = usage_service.api_names(session)
        view.products = usage_service.product_names(session)
    return view


async def _admin(request: Request, full: bool = True) -> View:
    params = request.query_params
    return await portal_of(request).db(
        _admin_view,
        _period(request),
        params.get("api", ""),
        params.get("product", ""),
        params.get("subscription", "").strip(),
        full,
    )


@admin_required
async def analytics_page(request: Request) -> Response:
    view = await _admin(request)
    return render(request, "analytics.html", view=view, periods=PERIODS.values())


@admin_required
async def analytics_chart(request: Request) -> Response:
    return await _svg(await _admin(request))


@admin_required
async def analytics_download(request: Request) -> Response:
    return await _csv(request, await _admin(request, full=False), "usage-all")


# shared ------------------------------------------------------------------------------------------
async def _svg(view: View) -> Response:
    assert view.report is not None
    svg = await run_in_threadpool(usage_svg, view.report)
    return Response(svg, media_type="image/svg+xml", headers={"cache-control": "no-store"})


async def _csv(request: Request, view: View, name: str) -> Response:
    text = await portal_of(request).db(usage_csv, view.scope, view.period, _now())
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "cache-control": "no-store",
            "content-disposition": f'attachment; filename="{name}-{view.period.name}.csv"',
        },
    )
