"""Sign up, sign in (password or OpenID Connect), sign out.

Messages never say whether an address has an account: sign-up always answers the same way,
and a failed sign-in says only that the e-mail or password is wrong.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import UserError
from tollway.portal.oidc import OidcError, Pending
from tollway.portal.security import HOME, PREFIX, end_session, safe_next, start_session
from tollway.portal.web import checked_form, portal_of, public_link, redirect, render
from tollway.services import identities, users

logger = logging.getLogger("tollway.portal")

SIGNUP_DONE = "Thanks! If this address is new, its account is ready: sign in below."
BAD_SIGNIN = "The e-mail or password is not right, or the account cannot sign in."
TOO_MANY = "Too many failed sign-ins. Wait a few minutes, then try again."
VERIFIED = "Your e-mail address is verified. Sign in to subscribe to APIs."
TOO_MANY_SIGNUPS = "Too many requests from your network. Try again in an hour."
NO_RESET = "Password reset is not set up on this portal: ask its administrator."
RESET_SENT = "If an account uses this address, a reset link is on its way. It works for an hour."
BAD_RESET = "This reset link is not valid, was already used, or has expired. Ask for a new one."
RESET_DONE = "Your password is changed. Sign in with the new one."


async def signup(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "signup.html", email="", error=None)
    form = await checked_form(request)
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    portal = portal_of(request)
    if not await _spend_signup(request):
        return render(request, "signup.html", 429, email=email, error=TOO_MANY_SIGNUPS)
    try:
        user = await portal.act(
            request, users.register, email, password, name=str(form.get("name", ""))
        )
    except UserError as exc:
        return render(request, "signup.html", 400, email=email, error=str(exc))
    if user is not None and portal.verification is not None and portal.verification.hook_url:
        token = portal.verification.token(user.id, user.email)
        link = public_link(request, f"{PREFIX}/verify", token=token)
        portal.verification.send(user.email, link)
    return render(request, "signin.html", email=email, next_url=HOME, message=SIGNUP_DONE)


async def _spend_signup(request: Request) -> bool:
    """Count a sign-up or reset request against the client's address; False when over."""
    limiter = portal_of(request).signup_limiter
    if limiter is None:
        return True
    if await limiter.attempt(_peer(request)) is None:
        logger.warning("sign-up/reset refused: too many from one address")
        return False
    return True


def _peer(request: Request) -> str:
    """The client's address (through trusted proxies: ``PortalEdge`` resolved it)."""
    return f"ip:{request.client.host if request.client else '-'}"


async def verify_email(request: Request) -> Response:
    """The link from the verification hook: mark the address verified."""
    portal = portal_of(request)
    found = (
        portal.verification.read(request.query_params.get("token", ""))
        if (portal.verification is not None)
        else None
    )
    if found is None or not await portal.act(request, users.mark_email_verified, *found):
        message = "This verification link is not valid or has expired. Sign up again for a new one."
        return render(request, "error.html", 400, message=message)
    return render(request, "signin.html", email=found[1], next_url=HOME, message=VERIFIED)


async def forgot_password(request: Request) -> Response:
    """Ask for a reset link: the same answer whether or not the address has an account."""
    portal = portal_of(request)
    if portal.resets is None:
        return render(request, "error.html", 404, message=NO_RESET)
    if request.method == "GET":
        return render(request, "forgot.html", email="")
    form = await checked_form(request)
    email = str(form.get("email", "")).strip()
    if not await _spend_signup(request):
        return render(request, "forgot.html", 429, email=email, error=TOO_MANY_SIGNUPS)
    found = await portal.db(users.reset_candidate, email)
    if found is not None:
        user_id, address, fingerprint = found
        token = portal.resets.token(user_id, fingerprint)
        portal.resets.send(address, public_link(request, f"{PREFIX}/reset", token=token))
    return render(request, "forgot.html", email=email, message=RESET_SENT)


async def reset_password(request: Request) -> Response:
    """The link from the hook: choose a new password (the link then stops working)."""
    portal = portal_of(request)
    if portal.resets is None:
        return render(request, "error.html", 404, message=NO_RESET)
    if request.method == "GET":
        token = request.query_params.get("token", "")
        if portal.resets.read(token) is None:
            return render(request, "error.html", 400, message=BAD_RESET)
        return render(request, "reset.html", token=token)
    form = await checked_form(request)
    token, password = str(form.get("token", "")), str(form.get("password", ""))
    found = portal.resets.read(token)
    if found is None:
        return render(request, "error.html", 400, message=BAD_RESET)
    try:
        email = await portal.act(request, users.reset_password, found[0], found[1], password)
    except UserError as exc:
        return render(request, "reset.html", 400, token=token, error=str(exc))
    if email is None:
        return render(request, "error.html", 400, message=BAD_RESET)
    await portal.account_limiter.reset(f"account:{email}")
    return render(request, "signin.html", email=email, next_url=HOME, message=RESET_DONE)


async def signin(request: Request) -> Response:
    if request.method == "GET":
        next_url = safe_next(request.query_params.get("next_url"))
        return render(request, "signin.html", email="", next_url=next_url, message=None)
    form = await checked_form(request)
    email, password = str(form.get("email", "")).strip(), str(form.get("password", ""))
    next_url = safe_next(form.get("next_url"))
    portal = portal_of(request)
    account, peer = f"account:{email.lower()}", _peer(request)
    # Count the attempt first (atomically), then check the password: concurrent guesses
    # cannot all slip in before the first failure is counted.
    by_account = await portal.account_limiter.attempt(account)
    by_peer = await portal.ip_limiter.attempt(peer) if by_account else None
    if by_account is None or by_peer is None:
        if by_account is not None:
            await portal.account_limiter.forgive(by_account)
        logger.warning("sign-in refused: too many attempts (%s)", peer)
        return render(request, "signin.html", 429, email=email, next_url=next_url, error=TOO_MANY)
    user = await portal.db(users.authenticate, email, password)
    if user is None:
        return render(request, "signin.html", 400, email=email, next_url=next_url, error=BAD_SIGNIN)
    await portal.account_limiter.reset(account)
    await portal.ip_limiter.forgive(by_peer)
    start_session(request, user.id)
    return redirect(next_url)


async def signout(request: Request) -> Response:
    await checked_form(request)
    end_session(request)
    return redirect(HOME)


async def signout_everywhere(request: Request) -> Response:
    """End every session of this user, on every browser and device."""
    await checked_form(request)
    end_session(request, everywhere=True)
    return redirect(HOME)


def _callback_url(request: Request, provider: str) -> str:
    return public_link(request, f"{PREFIX}/oidc/{provider}/callback")


async def oidc_start(request: Request) -> Response:
    """Send the browser to the provider, remembering state, nonce, PKCE verifier, next_url."""
    client = portal_of(request).oidc.get(request.path_params["provider"])
    if client is None:
        raise HTTPException(404, "There is no such sign-in provider.")
    next_url = safe_next(request.query_params.get("next_url"))
    try:
        url, pending = await client.begin(_callback_url(request, client.provider.name), next_url)
    except OidcError as exc:
        return render(request, "auth_error.html", 502, message=str(exc))
    request.session["oidc"] = pending.to_session()
    return redirect(url)


async def oidc_callback(request: Request) -> Response:
    """Finish the provider's sign-in, then link or create the developer and sign them in."""
    name = request.path_params["provider"]
    client = portal_of(request).oidc.get(name)
    pending = Pending.from_session(request.session.pop("oidc", None))
    if client is None or pending is None or pending.provider != name:
        return render(
            request,
            "auth_error.html",
            400,
            message="This sign-in was not started here, or it was already used. Start again.",
        )
    try:
        identity = await client.finish(
            dict(request.query_params), pending, _callback_url(request, name)
        )
        user = await portal_of(request).act(request, identities.sign_in_external, identity)
    except (OidcError, UserError) as exc:
        logger.info("OpenID Connect sign-in with %s failed: %s", name, exc)
        return render(request, "auth_error.html", 400, message=str(exc))
    start_session(request, user.id)
    return redirect(safe_next(pending.next_url))
