"""Administrator pages: approve or reject pending subscriptions, suspend or activate
subscriptions, block or unblock users (blocking disables every key of theirs in all gateways
at their next change-log poll, about a second)."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from tollway.db.models import Subscription, SubscriptionState, User, UserState
from tollway.errors import UserError
from tollway.portal.security import PREFIX
from tollway.portal.web import admin_required, checked_form, portal_of, redirect, render, signed_in
from tollway.services import subscriptions, users

SUBSCRIPTION_ACTIONS = {
    "approve": SubscriptionState.active,
    "reject": SubscriptionState.rejected,
    "suspend": SubscriptionState.suspended,
    "activate": SubscriptionState.active,
}
USER_ACTIONS = {"block": UserState.blocked, "unblock": UserState.active}


def _overview(session: Session) -> tuple[list[Subscription], list[Subscription], list[User]]:
    return (
        subscriptions.list_subscriptions(session, SubscriptionState.submitted),
        subscriptions.list_subscriptions(session),
        users.list_users(session),
    )


async def _admin_page(request: Request, status: int = 200, error: str = "") -> Response:
    pending, everything, people = await portal_of(request).db(_overview)
    return render(
        request,
        "admin.html",
        status,
        pending=pending,
        subscriptions=everything,
        users=people,
        error=error,
    )


@admin_required
async def overview(request: Request) -> Response:
    return await _admin_page(request)


def _change_subscription(session: Session, subscription_id: int, action: str) -> None:
    state = SUBSCRIPTION_ACTIONS.get(action)
    if state is None:
        raise UserError(f"Unknown action {action!r}: use approve, reject, suspend or activate.")
    subscription = subscriptions.get_subscription(session, subscription_id)
    subscriptions.set_subscription_state(session, subscription, state)


def _change_user(session: Session, admin: User, user_id: int, action: str) -> None:
    state = USER_ACTIONS.get(action)
    if state is None:
        raise UserError(f"Unknown action {action!r}: use block or unblock.")
    if user_id == admin.id:
        raise UserError("You cannot block your own account.")
    users.set_user_state(session, users.get_user_by_id(session, user_id), state)


@admin_required
async def change_subscription(request: Request) -> Response:
    form = await checked_form(request)
    try:
        await portal_of(request).act(
            request,
            _change_subscription,
            request.path_params["subscription_id"],
            str(form.get("action", "")),
        )
    except UserError as exc:
        return await _admin_page(request, 400, str(exc))
    return redirect(f"{PREFIX}/admin")


@admin_required
async def change_user(request: Request) -> Response:
    form = await checked_form(request)
    try:
        await portal_of(request).act(
            request,
            _change_user,
            signed_in(request),
            request.path_params["user_id"],
            str(form.get("action", "")),
        )
    except UserError as exc:
        return await _admin_page(request, 400, str(exc))
    return redirect(f"{PREFIX}/admin")
