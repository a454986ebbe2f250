"""Catalogue, account, subscribing, keys and cancelling."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from tollway.db.models import Product, Subscription, SubscriptionState, User
from tollway.errors import NotFound, UserError
from tollway.portal.security import PREFIX
from tollway.portal.web import (
    checked_form,
    current_user,
    login_required,
    portal_of,
    redirect,
    render,
    signed_in,
)
from tollway.services import catalogue as catalogue_service
from tollway.services import subscriptions
from tollway.services.subscriptions import KeySlot

LIVE_STATES = {SubscriptionState.active, SubscriptionState.submitted, SubscriptionState.suspended}


@dataclass(frozen=True)
class NewKeys:
    """Keys shown once on the page that made them (never stored, never redirected with)."""

    subscription_id: int
    keys: list[tuple[str, str]]


async def catalogue(request: Request) -> Response:
    await current_user(request)
    entries = await portal_of(request).db(catalogue_service.catalogue)
    products = await portal_of(request).db(catalogue_service.published_products)
    return render(request, "catalogue.html", entries=entries, products=products)


def _account(session: Session, user: User) -> tuple[list[Subscription], list[Product]]:
    return (
        subscriptions.subscriptions_of(session, user),
        catalogue_service.published_products(session),
    )


async def _account_page(
    request: Request, status: int = 200, new_keys: NewKeys | None = None, error: str = ""
) -> Response:
    user = signed_in(request)
    subs, products = await portal_of(request).db(_account, user)
    return render(
        request,
        "account.html",
        status,
        subscriptions=subs,
        products=products,
        sessions=await portal_of(request).signins.list(user.id),
        this_session=request.scope.get("portal_session_id"),
        new_keys=new_keys,
        error=error,
        live_states=LIVE_STATES,
    )


@login_required
async def account(request: Request) -> Response:
    return await _account_page(request)


def _subscribe(
    session: Session, user: User, product_name: str, verified_only: bool = False
) -> NewKeys:
    if verified_only and not user.email_verified:
        raise UserError(
            "Verify your e-mail address first: open the link we sent when you signed up."
        )
    product = catalogue_service.published_product(session, product_name)
    issued = subscriptions.create_subscription(session, user, product)
    keys = [("primary", issued.primary), ("secondary", issued.secondary)]
    return NewKeys(issued.subscription.id, keys)


@login_required
async def subscribe(request: Request) -> Response:
    form = await checked_form(request)
    try:
        portal = portal_of(request)
        required = portal.settings.verification_required
        keys = await portal.act(
            request, _subscribe, signed_in(request), str(form.get("product", "")), required
        )
    except UserError as exc:
        return await _account_page(request, _status(exc), error=str(exc))
    return await _account_page(request, 201, new_keys=keys)


def _regenerate(session: Session, user: User, subscription_id: int, slot: str) -> NewKeys:
    subscription = subscriptions.owned_subscription(session, user, subscription_id)
    if slot not in ("primary", "secondary"):
        raise UserError("Choose the primary or the secondary key.")
    key_slot: KeySlot = "primary" if slot == "primary" else "secondary"
    return NewKeys(
        subscription.id, [(slot, subscriptions.regenerate_key(session, subscription, key_slot))]
    )


@login_required
async def regenerate(request: Request) -> Response:
    form = await checked_form(request)
    subscription_id = request.path_params["subscription_id"]
    try:
        keys = await portal_of(request).act(
            request, _regenerate, signed_in(request), subscription_id, str(form.get("slot", ""))
        )
    except UserError as exc:
        return await _account_page(request, _status(exc), error=str(exc))
    return await _account_page(request, new_keys=keys)


def _cancel(session: Session, user: User, subscription_id: int) -> None:
    subscription = subscriptions.owned_subscription(session, user, subscription_id)
    subscriptions.set_subscription_state(session, subscription, SubscriptionState.cancelled)


@login_required
async def cancel(request: Request) -> Response:
    await checked_form(request)
    try:
        await portal_of(request).act(
            request, _cancel, signed_in(request), request.path_params["subscription_id"]
        )
    except UserError as exc:
        return await _account_page(request, _status(exc), error=str(exc))
    return redirect(f"{PREFIX}/account")


def _status(exc: UserError) -> int:
    return 404 if isinstance(exc, NotFound) else 400
