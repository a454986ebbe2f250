"""Change one backend, named value, API, product or policy list: the declarative apply, one entry
at a time (the admin API and the console).

Each edit takes the stored configuration as a whole document, changes one entry, and applies the
result with the same validation and the same writer as ``tollway apply`` (``prune``: the
document is the whole state), in the caller's transaction. So an entry edited here obeys every
rule a file obeys, and running gateways pick it up through the change log like any apply.
One audit row records the entry before and after (secret named values masked).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tollway.config.apply import MASKED, Plan, apply_in_session
from tollway.config.export import export_config
from tollway.config.loader import validate_config
from tollway.crypto import SecretBox
from tollway.db.models import (
    GLOBAL_POLICIES,
    Api,
    Backend,
    GatewaySetting,
    NamedValue,
    Product,
    Subscription,
    utcnow,
)
from tollway.errors import Conflict, NotFound
from tollway.services.audit import record

Section = Literal["backends", "named_values", "apis", "products"]
ENTITY: dict[str, str] = {
    "backends": "backend",
    "named_values": "named-value",
    "apis": "api",
    "products": "product",
}
MODELS: dict[str, Any] = {
    "backends": Backend,
    "named_values": NamedValue,
    "apis": Api,
    "products": Product,
}


class PreconditionFailed(Conflict):
    """The entry changed since the client read it (its ETag no longer matches)."""


def stored_document(session: Session) -> dict[str, Any]:
    """The stored configuration as a plain document (secret named values ``<masked>``)."""
    return export_config(session).model_dump(mode="json")


def view(section: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An entry as the admin API shows it: its name and fields; secrets never in clear."""
    shown = {"name": name, **spec}
    if section == "named_values" and spec.get("secret"):
        shown["value"] = MASKED
    return shown


def version_of(session: Session, section: str, name: str) -> int | None:
    model = MODELS[section]
    version = session.scalar(select(model.version).where(model.name == name))
    return int(version) if version is not None else None


def tag(value: object) -> str:
    """A strong ETag: an entry's version number, or a digest of a document."""
    if isinstance(value, int):
        return f'"v{value}"'
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def check_match(if_match: str | None, current: str | None) -> None:
    """412 unless ``If-Match`` (when sent) names the current ETag."""
    if if_match is None:
        return
    wanted = {part.strip().removeprefix("W/") for part in if_match.split(",")}
    if "*" in wanted and current is not None:
        return
    if current is None or current not in wanted:
        raise PreconditionFailed(
            "the resource changed since you read it (If-Match does not match its ETag): "
            "read it again, then retry your change"
        )


def _pinned(session: Session, section: str, name: str, if_match: str | None) -> Any:
    """The entry's row, checked against ``If-Match``; the caller holds it for the whole edit.

    Held, the row keeps the version seen here in the session (rows nobody references may be
    dropped and re-read later, newer): the apply's ``UPDATE ... WHERE version = <this one>``
    then fails (412) if another transaction changed the entry since, even between this check
    and the write.
    """
    model = MODELS[section]
    row = session.scalar(select(model).where(model.name == name))
    check_match(if_match, tag(row.version) if row is not None else None)
    return row


def get_entry(session: Session, section: str, name: str) -> dict[str, Any]:
    document = stored_document(session)
    if name not in document[section]:
        raise NotFound(f"no {ENTITY[section]} named {name!r}")
    return view(section, name, document[section][name])


def _apply(session: Session, document: dict[str, Any], box: SecretBox) -> Plan:
    config = validate_config(document)
    return apply_in_session(session, config, prune=True, secret_box=box, audit=False)


def _check_path_free(document: dict[str, Any], name: str, spec: dict[str, Any]) -> None:
    path = str(spec.get("path", "")).rstrip("/")
    for other, api in document["apis"].items():
        if other != name and str(api.get("path", "")).rstrip("/") == path:
            raise Conflict(f"path {path!r} is already used by api {other!r}")


def put_entry(
    session: Session,
    box: SecretBox,
    section: str,
    name: str,
    spec: dict[str, Any],
    *,
    create: bool,
    if_match: str | None = None,
) -> dict[str, Any]:
    """Create (``create``) or replace the entry ``name`` of ``section``; the new view."""
    held = _pinned(session, section, name, if_match)
    document = stored_document(session)
    entries = document[section]
    before = entries.get(name)
    if create and before is not None:
        raise Conflict(f"a {ENTITY[section]} named {name!r} already exists")
    if not create and before is None:
        raise NotFound(f"no {ENTITY[section]} named {name!r}")
    if section == "apis":
        _check_path_free(document, name, spec)
    entries[name] = spec
    version = held.version if held is not None else None
    _apply(session, document, box)
    after = stored_document(session)[section][name]
    if held is not None and after != before and held.version == version:
        # a change outside the row itself (a product's API list): a new version all the same,
        # written with the same version check as any update
        held.updated_at = utcnow()
        session.flush()
    record(
        session,
        ENTITY[section],
        name,
        "create" if create else "update",
        view(section, name, before) if before is not None else None,
        view(section, name, after),
    )
    del held
    return view(section, name, after)


def _users_of(document: dict[str, Any], section: str, name: str) -> list[str]:
    if section == "backends":
        return [f"api {a!r}" for a, spec in document["apis"].items() if spec["backend"] == name]
    if section == "apis":
        return [
            f"product {p!r}" for p, spec in document["products"].items() if name in spec["apis"]
        ]
    if section == "named_values":
        ref = "{{" + name + "}}"
        return [
            f"backend {b!r}"
            for b, spec in document["backends"].items()
            if any(ref in value.replace(" ", "") for value in spec["headers"].values())
        ]
    return []


def delete_entry(
    session: Session, box: SecretBox, section: str, name: str, *, if_match: str | None = None
) -> None:
    """Delete the entry ``name``; 409 while something still uses it."""
    held = _pinned(session, section, name, if_match)
    document = stored_document(session)
    before = document[section].get(name)
    if before is None or held is None:
        raise NotFound(f"no {ENTITY[section]} named {name!r}")
    model = MODELS[section]
    claimed = session.execute(  # the row, as read: nobody changed it since (else 412)
        update(model)
        .where(model.id == held.id, model.version == held.version)
        .values(version=held.version + 1)
        .execution_options(synchronize_session=False)
    )
    if not getattr(claimed, "rowcount", 0):
        raise PreconditionFailed(f"{ENTITY[section]} {name!r} changed while you deleted it")
    users = _users_of(document, section, name)
    if users:
        raise Conflict(f"{ENTITY[section]} {name!r} is used by {', '.join(users)}")
    if section == "products":
        count = session.scalar(
            select(func.count(Subscription.id))
            .join(Product, Product.id == Subscription.product_id)
            .where(Product.name == name)
        )
        if count:
            raise Conflict(
                f"product {name!r} has {count} subscription(s): cancel or move them first"
            )
    del document[section][name]
    _apply(session, document, box)
    record(session, ENTITY[section], name, "delete", view(section, name, before), None)


Scope = tuple[str, str, int | None]
"""A policy scope: ("global", "", None), ("products", name, None), ("apis", name, None) or
("apis", name, operation index)."""


def _policies_at(document: dict[str, Any], scope: Scope) -> list[Any]:
    section, name, index = scope
    if section == "global":
        return list(document.get("policies", []))
    entry = document[section].get(name)
    if entry is None:
        raise NotFound(f"no {ENTITY[section]} named {name!r}")
    if index is None:
        return list(entry["policies"])
    operations = entry["operations"]
    if not 0 <= index < len(operations):
        raise NotFound(f"api {name!r} has no operation {index} (it has {len(operations)})")
    return list(operations[index]["policies"])


def get_policies(session: Session, scope: Scope) -> list[Any]:
    return _policies_at(stored_document(session), scope)


def put_policies(
    session: Session,
    box: SecretBox,
    scope: Scope,
    policies: list[Any],
    *,
    if_match: str | None = None,
) -> list[Any]:
    """Replace the policy list at ``scope``; the stored list."""
    section, name, index = scope
    if section == "global":  # (held like an entry's row; None until the first global policy)
        held = session.get(GatewaySetting, GLOBAL_POLICIES)
    else:
        held = _pinned(session, section, name, None)
    document = stored_document(session)
    before = _policies_at(document, scope)
    check_match(if_match, tag(before))
    if section == "global":
        document["policies"] = policies
    elif index is None:
        document[section][name]["policies"] = policies
    else:
        document[section][name]["operations"][index]["policies"] = policies
    _apply(session, document, box)
    after = _policies_at(stored_document(session), scope)
    where = "global" if section == "global" else f"{ENTITY[section]}:{name}"
    where += "" if index is None else f":operation[{index}]"
    record(session, "policies", where, "update", {"policies": before}, {"policies": after})
    del held
    return after
