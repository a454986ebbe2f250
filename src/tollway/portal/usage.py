"""The usage page of one subscription: a chart plus the same numbers in a table."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tollway.db.models import Subscription, User
from tollway.portal.chart import usage_svg
from tollway.portal.web import login_required, portal_of, render, signed_in
from tollway.services import subscriptions
from tollway.services.usage import QuotaStatus, Span, UsageReport, quota_status, usage_report


def _span(request: Request) -> Span:
    return "month" if request.query_params.get("span") == "month" else "day"


def _report(
    session: Session, user: User, subscription_id: int, span: Span
) -> tuple[Subscription, UsageReport, list[QuotaStatus]]:
    subscription = subscriptions.owned_subscription(session, user, subscription_id)
    now = datetime.now(UTC)
    report = usage_report(session, subscription.id, span, now.replace(tzinfo=None))
    return subscription, report, quota_status(session, subscription, now.timestamp())


@login_required
async def usage_page(request: Request) -> Response:
    span = _span(request)
    subscription, report, quotas = await portal_of(request).db(
        _report, signed_in(request), request.path_params["subscription_id"], span
    )
    return render(
        request, "usage.html", subscription=subscription, report=report, span=span, quotas=quotas
    )


@login_required
async def usage_chart(request: Request) -> Response:
    _, report, _ = await portal_of(request).db(
        _report, signed_in(request), request.path_params["subscription_id"], _span(request)
    )
    svg = await run_in_threadpool(usage_svg, report)
    return Response(svg, media_type="image/svg+xml", headers={"cache-control": "no-store"})
