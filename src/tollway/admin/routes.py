"""The admin API's resources. Every change goes through the services layer (or the declarative
apply, for config entries), which writes the change log running gateways poll and the audit row,
in the same transaction as the change. Lists page with ``limit`` + ``cursor``.

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures, and the
config-entry routes are made in a loop with the spec class as a variable.)
"""

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.admin.app import PREFIX, Caller, context, reader, run, writer
from tollway.admin.errors import INVALID, Problem, documented
from tollway.config import edit
from tollway.config.apply import apply_in_session
from tollway.config.export import export_config, export_document
from tollway.config.loader import load_config
from tollway.config.model import (
    NAME_PATTERN,
    ApiSpec,
    BackendSpec,
    NamedValueSpec,
    Policies,
    ProductSpec,
)
from tollway.crypto import SecretBox
from tollway.db.models import (
    Product,
    Subscription,
    SubscriptionState,
    User,
    UserRole,
    UserState,
)
from tollway.errors import Conflict, UserError
from tollway.services import audit, subscriptions, usage, users

READ = Depends(reader)
WRITE = Depends(writer)
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many items.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page.")
]
IfMatch = Annotated[
    str | None,
    Header(description="The ETag you read: a stale one gets 412 instead of overwriting."),
]
EntryName = Annotated[str, Path(pattern=NAME_PATTERN)]
MAX_CONFIG_BYTES = 5 * 1024 * 1024

router = APIRouter(prefix=PREFIX, responses=documented(400, 401, 403, 422, 429))


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _encode(value: object) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Problem(
            INVALID, "cursor: not a cursor this API gave", errors=[{"field": "cursor"}]
        ) from None


def _int_cursor(cursor: str | None) -> int | None:
    value = _decode(cursor)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise Problem(INVALID, "cursor: not a cursor this API gave", errors=[{"field": "cursor"}])
    return int(value)


def _tagged(response: Response, etag: str) -> None:
    response.headers["etag"] = etag


# config entries: backends, named values, APIs, products ------------------------------------------
def _entry_routes(section: str, path: str, spec: type[BaseModel], title: str) -> None:
    new_spec = create_model(
        f"New{spec.__name__.removesuffix('Spec')}",
        __base__=spec,
        name=(Annotated[str, Field(pattern=NAME_PATTERN)], ...),
    )

    def box_of(request: Request) -> SecretBox:
        return context(request).secret_box

    def tagged_view(session: Session, name: str) -> tuple[dict[str, Any], str]:
        shown = edit.get_entry(session, section, name)
        version = edit.version_of(session, section, name)
        return {**shown, "version": version}, edit.tag(version)

    def listing(session: Session, after: str | None, limit: int, q: str | None) -> Page:
        entries = edit.stored_document(session)[section]
        names = sorted(n for n in entries if (after is None or n > after) and (not q or q in n))
        shown = [edit.view(section, n, entries[n]) for n in names[:limit]]
        more = len(names) > limit
        return Page(items=shown, next_cursor=_encode(names[limit - 1]) if more else None)

    @router.get(f"/{path}", response_model=Page, summary=f"List {title}", tags=[title])
    async def list_entries(
        request: Request,
        limit: Limit = 50,
        cursor: Cursor = None,
        q: Annotated[str | None, Query(max_length=100, description="Name contains.")] = None,
        who: Caller = READ,
    ) -> Page:
        return await run(request, who, listing, _decode(cursor), limit, q)

    @router.post(
        f"/{path}",
        status_code=201,
        summary=f"Create one of the {title}",
        tags=[title],
        responses=documented(409),
    )
    async def create_entry(
        request: Request, response: Response, body: new_spec, who: Caller = WRITE
    ) -> dict[str, Any]:
        fields = body.model_dump(mode="json", exclude={"name"})
        name = str(body.name)  # type: ignore[attr-defined]

        def work(session: Session) -> tuple[dict[str, Any], str]:
            edit.put_entry(session, box_of(request), section, name, fields, create=True)
            return tagged_view(session, name)

        shown, etag = await run(request, who, work)
        _tagged(response, etag)
        response.headers["location"] = f"{PREFIX}/{path}/{name}"
        return shown

    @router.get(
        f"/{path}/{{name}}",
        summary=f"Read one of the {title}",
        tags=[title],
        responses=documented(404),
    )
    async def get_entry(
        request: Request, response: Response, name: EntryName, who: Caller = READ
    ) -> dict[str, Any]:
        shown, etag = await run(request, who, tagged_view, name)
        _tagged(response, etag)
        return shown

    @router.put(
        f"/{path}/{{name}}",
        summary=f"Replace one of the {title}",
        tags=[title],
        responses=documented(404, 409, 412),
    )
    async def put_entry(
        request: Request,
        response: Response,
        name: EntryName,
        body: spec,  # type: ignore[valid-type]
        if_match: IfMatch = None,
        who: Caller = WRITE,
    ) -> dict[str, Any]:
        fields = body.model_dump(mode="json")  # type: ignore[attr-defined]

        def work(session: Session) -> tuple[dict[str, Any], str]:
            edit.put_entry(
                session, box_of(request), section, name, fields, create=False, if_match=if_match
            )
            return tagged_view(session, name)

        shown, etag = await run(request, who, work)
        _tagged(response, etag)
        return shown

    @router.delete(
        f"/{path}/{{name}}",
        status_code=204,
        summary=f"Delete one of the {title}",
        tags=[title],
        responses=documented(404, 409, 412),
    )
    async def delete_entry(
        request: Request, name: EntryName, if_match: IfMatch = None, who: Caller = WRITE
    ) -> Response:
        await run(
            request, who, edit.delete_entry, box_of(request), section, name, if_match=if_match
        )
        return Response(status_code=204)


_entry_routes("backends", "backends", BackendSpec, "backends")
_entry_routes("named_values", "named-values", NamedValueSpec, "named values")
_entry_routes("apis", "apis", ApiSpec, "apis")
_entry_routes("products", "products", ProductSpec, "products")


# policies at every scope ------------------------------------------------------------------------
class PolicyList(Strict):
    policies: Policies


async def _read_policies(
    request: Request, response: Response, who: Caller, scope: edit.Scope
) -> PolicyList:
    policies = await run(request, who, edit.get_policies, scope)
    _tagged(response, edit.tag(policies))
    return PolicyList(policies=policies)


async def _write_policies(
    request: Request,
    response: Response,
    who: Caller,
    scope: edit.Scope,
    body: PolicyList,
    if_match: str | None,
) -> PolicyList:
    box = context(request).secret_box
    stored = await run(
        request, who, edit.put_policies, box, scope, body.policies, if_match=if_match
    )
    _tagged(response, edit.tag(stored))
    return PolicyList(policies=stored)


OperationIndex = Annotated[int, Path(ge=0, le=10_000, description="Place in the operations.")]


@router.get(
    "/policies",
    summary="Read the global policies",
    response_model=PolicyList,
    tags=["policies"],
)
async def get_global_policies(
    request: Request, response: Response, who: Caller = READ
) -> PolicyList:
    return await _read_policies(request, response, who, ("global", "", None))


@router.put(
    "/policies",
    summary="Replace the global policies",
    responses=documented(412),
    response_model=PolicyList,
    tags=["policies"],
)
async def put_global_policies(
    request: Request,
    response: Response,
    body: PolicyList,
    if_match: IfMatch = None,
    who: Caller = WRITE,
) -> PolicyList:
    return await _write_policies(request, response, who, ("global", "", None), body, if_match)


def _scoped_policy_routes(section: Literal["apis", "products"], path: str) -> None:
    @router.get(
        f"/{path}/{{name}}/policies",
        summary=f"Read a {ENTITY_TITLE[section]}'s policies",
        responses=documented(404),
        response_model=PolicyList,
        tags=["policies"],
    )
    async def get_policies(
        request: Request, response: Response, name: EntryName, who: Caller = READ
    ) -> PolicyList:
        return await _read_policies(request, response, who, (section, name, None))

    @router.put(
        f"/{path}/{{name}}/policies",
        summary=f"Replace a {ENTITY_TITLE[section]}'s policies",
        responses=documented(404, 412),
        response_model=PolicyList,
        tags=["policies"],
    )
    async def put_policies(
        request: Request,
        response: Response,
        name: EntryName,
        body: PolicyList,
        if_match: IfMatch = None,
        who: Caller = WRITE,
    ) -> PolicyList:
        scope: edit.Scope = (section, name, None)
        return await _write_policies(request, response, who, scope, body, if_match)


ENTITY_TITLE = {"apis": "API", "products": "product"}
_scoped_policy_routes("apis", "apis")
_scoped_policy_routes("products", "products")


@router.get(
    "/apis/{name}/operations/{index}/policies",
    summary="Read an operation's policies (index: its place in the API's operations)",
    responses=documented(404),
    response_model=PolicyList,
    tags=["policies"],
)
async def get_operation_policies(
    request: Request, response: Response, name: EntryName, index: OperationIndex, who: Caller = READ
) -> PolicyList:
    return await _read_policies(request, response, who, ("apis", name, index))


@router.put(
    "/apis/{name}/operations/{index}/policies",
    summary="Replace an operation's policies",
    responses=documented(404, 412),
    response_model=PolicyList,
    tags=["policies"],
)
async def put_operation_policies(
    request: Request,
    response: Response,
    name: EntryName,
    index: OperationIndex,
    body: PolicyList,
    if_match: IfMatch = None,
    who: Caller = WRITE,
) -> PolicyList:
    scope: edit.Scope = ("apis", name, index)
    return await _write_policies(request, response, who, scope, body, if_match)


# users ------------------------------------------------------------------------------------------
def _user_view(user: User) -> dict[str, Any]:
    return {"id": user.id, **users.user_view(user), "version": user.version}


class NewUser(Strict):
    email: str = Field(max_length=320)
    name: str = Field("", max_length=200)
    role: Literal["developer", "admin"] = "developer"


class UserChange(Strict):
    name: str | None = Field(None, max_length=200)
    role: Literal["developer", "admin"] | None = None
    state: Literal["active", "blocked"] | None = None


@router.get("/users", response_model=Page, tags=["users"])
async def list_users(
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    role: Literal["developer", "admin"] | None = None,
    state: Literal["active", "blocked"] | None = None,
    email: Annotated[str | None, Query(max_length=320, description="E-mail contains.")] = None,
    who: Caller = READ,
) -> Page:
    after = _int_cursor(cursor) or 0

    def work(session: Session) -> Page:
        query = select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
        if role:
            query = query.where(User.role == role)
        if state:
            query = query.where(User.state == state)
        if email:
            query = query.where(User.email.contains(email, autoescape=True))
        rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            items=[_user_view(u) for u in rows],
            next_cursor=_encode(rows[-1].id) if more else None,
        )

    return await run(request, who, work)


@router.post("/users", status_code=201, tags=["users"], responses=documented(409))
async def create_user(
    request: Request, response: Response, body: NewUser, who: Caller = WRITE
) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        if users.find_user(session, body.email) is not None:
            raise Conflict(f"a user with e-mail {body.email!r} already exists")
        user = users.create_user(session, body.email, name=body.name, role=UserRole(body.role))
        return _user_view(user)

    shown = await run(request, who, work)
    _tagged(response, edit.tag(shown["version"]))
    response.headers["location"] = f"{PREFIX}/users/{shown['id']}"
    return shown


UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/users/{user_id}", tags=["users"], responses=documented(404))
async def get_user(
    request: Request, response: Response, user_id: UserId, who: Caller = READ
) -> dict[str, Any]:
    shown = await run(request, who, lambda s: _user_view(users.get_user_by_id(s, user_id)))
    _tagged(response, edit.tag(shown["version"]))
    return shown


@router.patch("/users/{user_id}", tags=["users"], responses=documented(404, 409, 412))
async def change_user(
    request: Request,
    response: Response,
    user_id: UserId,
    body: UserChange,
    if_match: IfMatch = None,
    who: Caller = WRITE,
) -> dict[str, Any]:
    def work(session: Session) -> dict[str, Any]:
        user = users.get_user_by_id(session, user_id)
        edit.check_match(if_match, edit.tag(user.version))
        role = UserRole(body.role) if body.role else None
        users.update_user(session, user, name=body.name, role=role)
        if body.state:
            users.set_user_state(session, user, UserState(body.state))
        session.flush()
        return _user_view(user)

    shown = await run(request, who, work)
    _tagged(response, edit.tag(shown["version"]))
    return shown


# subscriptions and keys -------------------------------------------------------------------------
def _subscription_view(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "user": sub.user.email,
        "product": sub.product.name,
        "name": sub.name,
        "state": str(sub.state),
        "primary_prefix": sub.primary_prefix,
        "secondary_prefix": sub.secondary_prefix,
        "created_at": sub.created_at.isoformat() + "Z",
        "version": sub.version,
    }


class NewSubscription(Strict):
    user: str = Field(max_length=320, description="E-mail of the subscribing user.")
    product: str = Field(max_length=100, description="Product name.")
    name: str = Field("", max_length=200)
    state: Literal["active", "submitted"] = Field(
        "active", description="'submitted' waits for approval."
    )


StateName = Literal["submitted", "active", "suspended", "cancelled", "rejected"]


@router.get("/subscriptions", response_model=Page, tags=["subscriptions"])
async def list_subscriptions(
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    user: Annotated[str | None, Query(max_length=320, description="User's e-mail.")] = None,
    product: Annotated[str | None, Query(max_length=100, description="Product name.")] = None,
    state: StateName | None = None,
    who: Caller = READ,
) -> Page:
    after = _int_cursor(cursor) or 0

    def work(session: Session) -> Page:
        user_id = product_id = None
        if user is not None:
            found = session.scalar(select(User.id).where(User.email == user))
            user_id = found if found is not None else -1
        if product is not None:
            found = session.scalar(select(Product.id).where(Product.name == product))
            product_id = found if found is not None else -1
        rows = subscriptions.list_subscriptions(
            session,
            SubscriptionState(state) if state else None,
            user_id=user_id,
            product_id=product_id,
            after_id=after,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            items=[_subscription_view(s) for s in rows],
            next_cursor=_encode(rows[-1].id) if more else None,
        )

    return await run(request, who, work)


@router.post("/subscriptions", status_code=201, tags=["subscriptions"], responses=documented(404))
async def create_subscription(
    request: Request, response: Response, body: NewSubscription, who: Caller = WRITE
) -> dict[str, Any]:
    """Subscribe a user to a product. The two keys are in this answer only: store them now."""

    def work(session: Session) -> dict[str, Any]:
        owner = users.get_user(session, body.user)
        product = subscriptions.get_product(session, body.product)
        issued = subscriptions.create_subscription(
            session, owner, product, name=body.name, state=SubscriptionState(body.state)
        )
        return {
            **_subscription_view(issued.subscription),
            "primary_key": issued.primary,
            "secondary_key": issued.secondary,
        }

    shown = await run(request, who, work)
    _tagged(response, edit.tag(shown["version"]))
    response.headers["location"] = f"{PREFIX}/subscriptions/{shown['id']}"
    response.headers["cache-control"] = "no-store"
    return shown


SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/subscriptions/{subscription_id}", tags=["subscriptions"], responses=documented(404))
async def get_subscription(
    request: Request, response: Response, subscription_id: SubscriptionId, who: Caller = READ
) -> dict[str, Any]:
    shown = await run(
        request,
        who,
        lambda s: _subscription_view(subscriptions.get_subscription(s, subscription_id)),
    )
    _tagged(response, edit.tag(shown["version"]))
    return shown


TARGETS = {
    "approve": SubscriptionState.active,
    "reject": SubscriptionState.rejected,
    "suspend": SubscriptionState.suspended,
    "activate": SubscriptionState.active,
    "cancel": SubscriptionState.cancelled,
}


@router.post(
    "/subscriptions/{subscription_id}/{action}",
    tags=["subscriptions"],
    responses=documented(404, 409, 412),
)
async def change_subscription(
    request: Request,
    response: Response,
    subscription_id: SubscriptionId,
    action: Literal["approve", "reject", "suspend", "activate", "cancel"],
    if_match: IfMatch = None,
    who: Caller = WRITE,
) -> dict[str, Any]:
    """Move a subscription through APIM's states: approve or reject a submitted one, suspend an
    active one, activate a suspended one, cancel any live one."""

    def work(session: Session) -> dict[str, Any]:
        sub = subscriptions.get_subscription(session, subscription_id)
        edit.check_match(if_match, edit.tag(sub.version))
        if action in ("approve", "reject") and sub.state != SubscriptionState.submitted:
            raise Conflict(f"subscription {sub.id} is {sub.state}, not waiting for approval")
        subscriptions.set_subscription_state(session, sub, TARGETS[action])
        session.flush()
        return _subscription_view(sub)

    shown = await run(request, who, work)
    _tagged(response, edit.tag(shown["version"]))
    return shown


@router.post(
    "/subscriptions/{subscription_id}/keys/{slot}/regenerate",
    tags=["keys"],
    responses=documented(404, 412),
)
async def regenerate_key(
    request: Request,
    response: Response,
    subscription_id: SubscriptionId,
    slot: Literal["primary", "secondary"],
    if_match: IfMatch = None,
    who: Caller = WRITE,
) -> dict[str, Any]:
    """Replace one key; the other keeps working. The new key is in this answer only."""

    def work(session: Session) -> dict[str, Any]:
        sub = subscriptions.get_subscription(session, subscription_id)
        edit.check_match(if_match, edit.tag(sub.version))
        key = subscriptions.regenerate_key(session, sub, slot)
        session.flush()
        return {"subscription": _subscription_view(sub), "slot": slot, "key": key}

    shown = await run(request, who, work)
    response.headers["cache-control"] = "no-store"
    return shown


# usage and audit --------------------------------------------------------------------------------
def _moment(text: str | None, now: datetime, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        return audit.parse_since(text, now)
    except UserError as exc:
        raise Problem(INVALID, f"{field}: {exc}", errors=[{"field": field}]) from None


Moment = Annotated[
    str | None,
    Query(max_length=40, description="ISO 8601 date/time (UTC), or an age: 30m, 12h, 7d."),
]


def _stats(stats: usage.Stats) -> dict[str, Any]:
    return {
        "calls": stats.calls,
        "by_status": {f"{c}xx": stats.of_class(c) for c in usage.STATUS_CLASSES},
        "error_rate": stats.error_rate,
        "mean_ms": stats.mean_ms,
        "p50_ms": stats.p50,
        "p95_ms": stats.p95,
        "p99_ms": stats.p99,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
    }


@router.get("/usage", tags=["usage"], responses=documented(404))
async def get_usage(
    request: Request,
    subscription: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    api: Annotated[str | None, Query(max_length=100, description="API name.")] = None,
    product: Annotated[str | None, Query(max_length=100, description="Product name.")] = None,
    period: Literal["1h", "24h", "7d", "30d"] = "24h",
    who: Caller = READ,
) -> dict[str, Any]:
    """Calls, errors and latency per step of ``period`` (1h per minute, 24h per hour, 7d per
    6 hours, 30d per day; UTC), for a subscription, an API and/or a product (the portal's
    analytics, as data)."""
    now = context(request).now()

    def work(session: Session) -> dict[str, Any]:
        if subscription is not None:
            subscriptions.get_subscription(session, subscription)
        api_id = usage.api_named(session, api).id if api is not None else None
        product_id = usage.product_named(session, product).id if product is not None else None
        scope = usage.Scope(subscription_id=subscription, api_id=api_id, product_id=product_id)
        chosen = usage.period_named(period)
        report = usage.usage_report(session, scope, chosen, now, breakdowns=())
        return {
            "period": chosen.name,
            "step": chosen.step_name,
            "total": _stats(report.total),
            "buckets": [
                {"start": start.isoformat() + "Z", **_stats(stats)}
                for start, stats in zip(report.starts, report.timeline, strict=True)
            ],
        }

    return await run(request, who, work)


@router.get("/audit", response_model=Page, tags=["audit"])
async def get_audit(
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    entity: Annotated[str | None, Query(max_length=40)] = None,
    actor: Annotated[
        str | None, Query(max_length=400, description="cli, token:NAME or user:EMAIL.")
    ] = None,
    since: Moment = None,
    until: Moment = None,
    who: Caller = READ,
) -> Page:
    """Every change, newest first: when, who, from where, what, and the fields before/after."""
    now = context(request).now()
    start, end = _moment(since, now, "since"), _moment(until, now, "until")
    before_id = _int_cursor(cursor)

    def work(session: Session) -> Page:
        rows = audit.audit_entries(
            session,
            entity=entity,
            actor=actor,
            since=start,
            until=end,
            before_id=before_id,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "id": r.id,
                "at": r.at.isoformat() + "Z",
                "actor": r.actor,
                "address": r.address,
                "entity": r.entity,
                "entity_id": r.entity_id,
                "action": r.action,
                "changes": r.changes,
            }
            for r in rows
        ]
        return Page(items=items, next_cursor=_encode(rows[-1].id) if more else None)

    return await run(request, who, work)


# the declarative whole --------------------------------------------------------------------------
def _document(session: Session) -> dict[str, Any]:
    return export_document(export_config(session))


@router.get(
    "/config",
    tags=["config"],
    responses={200: {"content": {"application/yaml": {"schema": {"type": "string"}}}}},
)
async def get_config(request: Request, who: Caller = READ) -> Response:
    """The configuration ``tollway export`` writes: JSON, or YAML when you accept
    application/yaml. Secret named values are ``<masked>``."""
    document = await run(request, who, _document)
    etag = edit.tag(document)
    if "yaml" in request.headers.get("accept", ""):
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
        return Response(text, media_type="application/yaml", headers={"etag": etag})
    body = json.dumps(document, indent=2)
    return Response(body, media_type="application/json", headers={"etag": etag})


class ApplyResult(BaseModel):
    dry_run: bool
    changed: bool
    plan: list[str]


@router.put(
    "/config",
    response_model=ApplyResult,
    tags=["config"],
    responses=documented(400, 412),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def put_config(
    request: Request,
    response: Response,
    dry_run: bool = False,
    prune: bool = False,
    if_match: IfMatch = None,
    who: Caller = WRITE,
) -> ApplyResult:
    """``tollway apply`` over HTTP: all or nothing; ``dry_run`` returns the plan only, ``prune``
    deletes what the document does not name. ``${VAR}`` references are not read from the
    server's environment: send the values themselves."""
    raw = await request.body()
    if len(raw) > MAX_CONFIG_BYTES:
        raise Problem(INVALID, f"the document is over {MAX_CONFIG_BYTES} bytes")
    if not raw.strip():
        raise Problem(INVALID, "send the configuration document (JSON or YAML) in the body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(INVALID, "the body is not UTF-8 text") from None
    config = load_config(text, source="body", env={})
    box = context(request).secret_box

    def work(session: Session) -> tuple[list[str], bool, str]:
        edit.check_match(if_match, edit.tag(_document(session)))
        plan = apply_in_session(session, config, prune=prune, dry_run=dry_run, secret_box=box)
        return plan.lines(), not plan.empty, edit.tag(_document(session))

    lines, changed, etag = await run(request, who, work)
    _tagged(response, etag)
    return ApplyResult(dry_run=dry_run, changed=changed and not dry_run, plan=lines)
