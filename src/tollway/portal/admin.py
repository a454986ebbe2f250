"""The admin console: approve or reject pending subscriptions, suspend or activate them and
regenerate their keys, block or unblock users (blocking disables every key of theirs in all
gateways at their next change-log poll, about a second); APIs with their backends and policies,
products, named values (secrets masked) and the audit log.

Every page is a view of the services the admin API uses (``tollway.services``, and
``tollway.config.edit`` for the configuration); every change is audited under the signed-in
admin's name.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from tollway.config import edit
from tollway.db.models import Subscription, SubscriptionState, User, UserState
from tollway.errors import UserError
from tollway.portal.pages import NewKeys
from tollway.portal.security import PREFIX
from tollway.portal.web import admin_required, checked_form, portal_of, redirect, render, signed_in
from tollway.services import audit, subscriptions, users

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


async def _admin_page(
    request: Request, status: int = 200, error: str = "", new_keys: NewKeys | None = None
) -> Response:
    pending, everything, people = await portal_of(request).db(_overview)
    return render(
        request,
        "admin.html",
        status,
        pending=pending,
        subscriptions=everything,
        users=people,
        error=error,
        new_keys=new_keys,
        section="overview",
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


def _regenerate(session: Session, subscription_id: int, slot: str) -> NewKeys:
    if slot not in ("primary", "secondary"):
        raise UserError("Choose the primary or the secondary key.")
    subscription = subscriptions.get_subscription(session, subscription_id)
    key = subscriptions.regenerate_key(
        session, subscription, "primary" if slot == "primary" else "secondary"
    )
    return NewKeys(subscription.id, [(slot, key)])


@admin_required
async def regenerate_key(request: Request) -> Response:
    """A new key for any subscription, shown once on the page that made it."""
    form = await checked_form(request)
    try:
        keys = await portal_of(request).act(
            request, _regenerate, request.path_params["subscription_id"], str(form.get("slot", ""))
        )
    except UserError as exc:
        return await _admin_page(request, 400, str(exc))
    return await _admin_page(request, new_keys=keys)


@admin_required
async def configuration(request: Request) -> Response:
    """APIs with their backends and policies, products, global policies, named values."""
    document = await portal_of(request).db(edit.stored_document)
    named = {
        name: edit.view("named_values", name, spec)
        for name, spec in document["named_values"].items()
    }
    return render(
        request,
        "admin_config.html",
        document=document,
        named_values=named,
        section="config",
    )


AUDIT_PAGE = 100


@admin_required
async def audit_log(request: Request) -> Response:
    """The latest changes, newest first; ``before`` pages back, ``entity``/``actor`` filter."""
    entity = request.query_params.get("entity") or None
    actor = request.query_params.get("actor") or None
    before = request.query_params.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 18 else None
    rows = await portal_of(request).db(
        lambda s: audit.audit_entries(
            s, entity=entity, actor=actor, before_id=before_id, limit=AUDIT_PAGE
        )
    )
    return render(
        request,
        "admin_audit.html",
        rows=rows,
        entity=entity or "",
        actor=actor or "",
        older=rows[-1].id if len(rows) == AUDIT_PAGE else None,
        section="audit",
    )
