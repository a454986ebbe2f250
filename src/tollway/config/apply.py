"""``tollway apply``: make the database match a validated ``tollway.yaml``, in one transaction.

Entities named in the file are authoritative: their fields, and a product's list of APIs, are set
to what the file says. Entities missing from the file are left alone unless ``prune`` is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import delete, func, inspect, null, select
from sqlalchemy.orm import Session, sessionmaker

from tollway.config.loader import ConfigError
from tollway.config.model import ApiSpec, BackendSpec, ProductSpec, TollwayConfig
from tollway.crypto import SecretBox
from tollway.db.models import (
    GLOBAL_POLICIES,
    Api,
    Backend,
    Base,
    ChangeKind,
    GatewaySetting,
    NamedValue,
    Product,
    ProductApi,
    Subscription,
)
from tollway.db.session import transaction
from tollway.errors import UserError
from tollway.services.audit import SYSTEM, Actor, acting, record
from tollway.services.changes import record_change

MASKED = "<masked>"
"""Stands for a stored secret: exported instead of the secret, and on apply keeps it unchanged."""

Action = Literal["create", "update", "delete"]
_SIGNS: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}

# Spec fields map one-to-one onto columns (an API's ``backend`` is its backend's name).
BACKEND_FIELDS = tuple(BackendSpec.model_fields)
API_FIELDS = tuple(ApiSpec.model_fields)
PRODUCT_FIELDS = tuple(name for name in ProductSpec.model_fields if name != "apis")
_UNREADABLE = object()  # a stored secret that cannot be decrypted: always differs


@dataclass(frozen=True)
class Change:
    """One planned create, update or delete; renders as ``~ update backend names (url)``."""

    action: Action
    kind: str
    name: str
    fields: list[str] = field(default_factory=list)
    note: str = ""

    def __str__(self) -> str:
        line = f"{_SIGNS[self.action]} {self.action} {self.kind} {self.name}"
        if self.fields:
            line += f" ({', '.join(self.fields)})"
        return f"{line} ({self.note})" if self.note else line


@dataclass
class Plan:
    """What ``apply`` does (or did): a list of changes, in dependency order."""

    changes: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        """Human-readable lines; ``["no changes"]`` when there is nothing to do."""
        return [str(change) for change in self.changes] or ["no changes"]

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass
class _Current:
    """The config entities as stored, loaded once at the start of the transaction."""

    named_values: dict[str, NamedValue]
    backends: dict[str, Backend]
    apis: dict[str, Api]
    products: dict[str, Product]
    links: set[tuple[str, str]]
    global_policies: GatewaySetting | None
    subscriptions: dict[str, int]


def _load(session: Session) -> _Current:
    def by_name(model: Any) -> dict[str, Any]:
        return {row.name: row for row in session.scalars(select(model))}

    links = session.execute(
        select(Product.name, Api.name)
        .join(ProductApi, ProductApi.product_id == Product.id)
        .join(Api, Api.id == ProductApi.api_id)
    )
    counts = session.execute(
        select(Product.name, func.count(Subscription.id))
        .join(Subscription, Subscription.product_id == Product.id)
        .group_by(Product.name)
    )
    return _Current(
        named_values=by_name(NamedValue),
        backends=by_name(Backend),
        apis=by_name(Api),
        products=by_name(Product),
        links={(product, api) for product, api in links},
        global_policies=session.get(GatewaySetting, GLOBAL_POLICIES),
        subscriptions={product: count for product, count in counts},
    )


def _diff(wanted: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    return [key for key, value in wanted.items() if stored[key] != value]


def _stored(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in fields}


def _api_row(api: Api) -> dict[str, Any]:
    return {**_stored(api, API_FIELDS), "backend": api.backend.name}


_MODELS: dict[str, tuple[str, type[Base], tuple[str, ...]]] = {
    "backend": ("backends", Backend, BACKEND_FIELDS),
    "api": ("apis", Api, API_FIELDS),
    "product": ("products", Product, PRODUCT_FIELDS),
}


def _wanted(config: TollwayConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Desired column values per kind and name, normalised like the stored ones."""
    wanted: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, (section, _, fields) in _MODELS.items():
        specs: dict[str, BaseModel] = getattr(config, section)
        wanted[kind] = {
            name: spec.model_dump(mode="json", include=set(fields)) for name, spec in specs.items()
        }
    return wanted


def _check_lengths(wanted: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Strings longer than their database column, reported at their place in the file."""
    errors = []
    for kind, rows in wanted.items():
        section, model, _ = _MODELS[kind]
        columns = inspect(model).columns
        for name, values in rows.items():
            for key, value in values.items():
                length = getattr(columns[key].type, "length", None) if key in columns else None
                if isinstance(value, str) and length and len(value) > length:
                    errors.append(
                        f"{section}.{name}.{key}: at most {length} characters "
                        f"(this one has {len(value)})"
                    )
    return errors


def _check_paths(config: TollwayConfig, current: _Current, prune: bool) -> list[str]:
    """Paths taken by APIs that stay in the database although they are not in the file."""
    if prune:
        return []
    kept = {api.path: name for name, api in current.apis.items() if name not in config.apis}
    return [
        f"apis.{name}.path: {spec.path!r} is already used by api {kept[spec.path]!r}, which is "
        "not in this file (remove that api or apply with prune)"
        for name, spec in config.apis.items()
        if spec.path in kept
    ]


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _check_masked(config: TollwayConfig, current: _Current) -> list[str]:
    errors = []
    for name, spec in config.named_values.items():
        if spec.value != MASKED:
            continue
        stored = current.named_values.get(name)
        if not spec.secret:
            errors.append(
                f"named_values.{name}.value: {MASKED!r} only stands for a stored secret "
                f"(secret: true); set the real value (e.g. value: ${{{_env_name(name)}}})"
            )
        elif stored is None or not stored.secret:
            errors.append(
                f"named_values.{name}.value: {MASKED!r} keeps an existing secret, but no secret "
                f"named {name!r} exists yet; set the real value "
                f"(e.g. value: ${{{_env_name(name)}}})"
            )
    return errors


def _plain(row: NamedValue, box: SecretBox) -> object:
    if not row.secret:
        return row.value
    try:
        return box.decrypt(row.value)
    except UserError:
        return _UNREADABLE


def _named_value_changes(config: TollwayConfig, current: _Current, box: SecretBox) -> list[Change]:
    changes = []
    for name, spec in sorted(config.named_values.items()):
        row = current.named_values.get(name)
        if row is None:
            changes.append(Change("create", "named value", name))
            continue
        fields = ["secret"] if row.secret != spec.secret else []
        keep = spec.secret and spec.value == MASKED
        if not keep and _plain(row, box) != spec.value:
            fields.insert(0, "value")
        if fields:
            changes.append(Change("update", "named value", name, fields))
    return changes


def _entity_changes(
    kind: str, wanted: dict[str, dict[str, Any]], stored: dict[str, dict[str, Any]]
) -> list[Change]:
    changes = []
    for name, values in sorted(wanted.items()):
        if name not in stored:
            changes.append(Change("create", kind, name))
        elif fields := _diff(values, stored[name]):
            changes.append(Change("update", kind, name, fields))
    return changes


def _deletes(kind: str, stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[Change]:
    return [Change("delete", kind, name) for name in sorted(set(stored) - set(wanted))]


def _product_deletes(config: TollwayConfig, current: _Current) -> list[Change]:
    changes = []
    for change in _deletes("product", current.products, config.products):
        count = current.subscriptions.get(change.name, 0)
        note = f"and its {count} subscription{'s' if count != 1 else ''}" if count else ""
        changes.append(Change("delete", "product", change.name, note=note))
    return changes


def _link_changes(config: TollwayConfig, current: _Current) -> list[Change]:
    """Links of products in the file follow the file; other products' links are untouched."""
    wanted = {(product, api) for product, spec in config.products.items() for api in spec.apis}
    managed = {link for link in current.links if link[0] in config.products}
    return [
        Change("create", "product-api", f"{p}/{a}") for p, a in sorted(wanted - current.links)
    ] + [Change("delete", "product-api", f"{p}/{a}") for p, a in sorted(managed - wanted)]


def _global_changes(config: TollwayConfig, current: _Current, prune: bool) -> list[Change]:
    if "policies" not in config.model_fields_set and not prune:
        return []
    row = current.global_policies
    if row is None:
        return [Change("create", "global", "policies")] if config.policies else []
    return [Change("update", "global", "policies")] if row.value != config.policies else []


def _plan(
    session: Session, config: TollwayConfig, prune: bool, box: SecretBox
) -> tuple[Plan, _Current]:
    current = _load(session)
    wanted = _wanted(config)
    errors = _check_masked(config, current) + _check_paths(config, current, prune)
    errors += _check_lengths(wanted)
    if errors:
        raise ConfigError(errors)
    stored = {
        "backend": {n: _stored(r, BACKEND_FIELDS) for n, r in current.backends.items()},
        "api": {n: _api_row(r) for n, r in current.apis.items()},
        "product": {n: _stored(r, PRODUCT_FIELDS) for n, r in current.products.items()},
    }
    changes = _named_value_changes(config, current, box)
    for kind in ("backend", "api", "product"):
        changes += _entity_changes(kind, wanted[kind], stored[kind])
    changes += _link_changes(config, current) + _global_changes(config, current, prune)
    if prune:  # deletes last, dependents first
        changes += _product_deletes(config, current)
        changes += _deletes("api", current.apis, config.apis)
        changes += _deletes("backend", current.backends, config.backends)
        changes += _deletes("named value", current.named_values, config.named_values)
    return Plan(changes), current


def plan_apply(
    session: Session, config: TollwayConfig, *, prune: bool, secret_box: SecretBox
) -> Plan:
    """Compare ``config`` with the database and list what ``apply`` would change (writes nothing).

    Raises :class:`ConfigError` for problems only the database reveals (e.g. ``<masked>`` for a
    secret that does not exist yet, or a path still used by an API that is not in the file).
    """
    return _plan(session, config, prune, secret_box)[0]


def apply_config(
    sessions_factory: sessionmaker[Session],
    config: TollwayConfig,
    *,
    prune: bool = False,
    dry_run: bool = False,
    secret_box: SecretBox,
    actor: Actor = SYSTEM,
) -> Plan:
    """Make the database match ``config`` in one transaction (all or nothing); return the plan.

    With ``dry_run`` nothing is written. Applying the same config twice yields an empty plan.
    ``actor`` is who the audit log names (the CLI passes ``cli``).
    """
    with transaction(sessions_factory) as session:
        acting(session, actor)
        return apply_in_session(
            session, config, prune=prune, dry_run=dry_run, secret_box=secret_box
        )


def apply_in_session(
    session: Session,
    config: TollwayConfig,
    *,
    prune: bool = False,
    dry_run: bool = False,
    secret_box: SecretBox,
    audit: bool = True,
) -> Plan:
    """:func:`apply_config` in the caller's transaction (the admin API's, the console's).

    A change writes the change-log row running gateways poll and, unless ``audit`` is False
    (the caller records its own, more precise row), one audit row listing the plan.
    """
    _check_policies_build(session, config)
    plan, current = _plan(session, config, prune, secret_box)
    if dry_run or plan.empty:
        return plan
    _write(session, config, plan, current, secret_box)
    record_change(session, ChangeKind.config)
    if audit:
        record(session, "config", "", "apply", plan=plan.lines(), prune=prune)
    session.flush()
    return plan


def _check_policies_build(session: Session, config: TollwayConfig) -> None:
    """Build every policy once, so references the file alone cannot check (named values that
    do not exist, a secret in a response header) fail here rather than in the gateway."""
    from tollway.policies.chain import build_scope

    secrets = {nv.name: nv.secret for nv in session.scalars(select(NamedValue))}
    secrets.update({name: spec.secret for name, spec in config.named_values.items()})
    values = dict.fromkeys(secrets, "x")
    secret_names = frozenset(name for name, secret in secrets.items() if secret)
    scopes: list[tuple[str, list[dict[str, Any]]]] = [("policies", config.policies)]
    scopes += [(f"products.{n}.policies", p.policies) for n, p in config.products.items()]
    for name, api in config.apis.items():
        scopes.append((f"apis.{name}.policies", api.policies))
        for index, op in enumerate(api.operations):
            scopes.append((f"apis.{name}.operations[{index}].policies", op.policies))
    problems = []
    for place, entries in scopes:
        try:
            build_scope(entries, place, values, secret_names)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)


def _names(plan: Plan, kind: str, *actions: Action) -> list[str]:
    return [c.name for c in plan.changes if c.kind == kind and c.action in actions]


def _upsert(session: Session, model: Any, rows: dict[str, Any], name: str, **values: Any) -> Any:
    row = rows.get(name)
    if row is None:
        row = rows[name] = model(name=name)
        session.add(row)
    for key, value in values.items():
        # SQL NULL explicitly: a plain None would let a column default (openapi) win on INSERT
        setattr(row, key, null() if value is None else value)
    return row


def _delete(session: Session, model: Any, rows: dict[str, Any], names: list[str]) -> None:
    ids = [rows.pop(name).id for name in names]
    if ids:  # the database cascades product links and a product's subscriptions
        session.execute(delete(model).where(model.id.in_(ids)))


def _link_ids(current: _Current, link: str) -> tuple[int, int]:
    product, api = link.split("/")
    return current.products[product].id, current.apis[api].id


def _write(
    session: Session, config: TollwayConfig, plan: Plan, current: _Current, box: SecretBox
) -> None:
    """Carry out ``plan`` in an order that respects foreign keys and unique paths."""
    wanted = _wanted(config)
    for link in _names(plan, "product-api", "delete"):
        product_id, api_id = _link_ids(current, link)
        session.execute(
            delete(ProductApi).where(
                ProductApi.product_id == product_id, ProductApi.api_id == api_id
            )
        )
    _delete(session, Product, current.products, _names(plan, "product", "delete"))
    _delete(session, Api, current.apis, _names(plan, "api", "delete"))
    _write_named_values(session, config, plan, current, box)
    for name in _names(plan, "backend", "create", "update"):
        _upsert(session, Backend, current.backends, name, **wanted["backend"][name])
    session.flush()
    _write_apis(session, wanted["api"], plan, current)
    _delete(session, Backend, current.backends, _names(plan, "backend", "delete"))
    _delete(session, NamedValue, current.named_values, _names(plan, "named value", "delete"))
    for name in _names(plan, "product", "create", "update"):
        _upsert(session, Product, current.products, name, **wanted["product"][name])
    session.flush()
    for link in _names(plan, "product-api", "create"):
        product_id, api_id = _link_ids(current, link)
        session.add(ProductApi(product_id=product_id, api_id=api_id))
    if _names(plan, "global", "create", "update"):
        if current.global_policies is None:
            current.global_policies = GatewaySetting(name=GLOBAL_POLICIES)
            session.add(current.global_policies)
        current.global_policies.value = list(config.policies)
    session.flush()


def _write_named_values(
    session: Session, config: TollwayConfig, plan: Plan, current: _Current, box: SecretBox
) -> None:
    for name in _names(plan, "named value", "create", "update"):
        spec = config.named_values[name]
        row = current.named_values.get(name)
        if spec.secret and spec.value == MASKED and row is not None:
            value = row.value  # keep the stored secret as it is
        else:
            value = box.encrypt(spec.value) if spec.secret else spec.value
        _upsert(session, NamedValue, current.named_values, name, value=value, secret=spec.secret)


def _write_apis(
    session: Session, wanted: dict[str, dict[str, Any]], plan: Plan, current: _Current
) -> None:
    updates = _names(plan, "api", "update")
    for name in updates:  # free changing paths first, so two APIs can swap paths
        api = current.apis[name]
        if api.path != wanted[name]["path"]:
            api.path = f"/-tollway-moving/{api.id}"
    session.flush()
    for name in [*updates, *_names(plan, "api", "create")]:
        values = {**wanted[name], "backend": current.backends[wanted[name]["backend"]]}
        _upsert(session, Api, current.apis, name, **values)
    session.flush()
