"""``tollway export``: write the stored configuration back out as a ``tollway.yaml``.

Applying the exported file to the same database yields ``no changes``. Secret named values are
written as ``<masked>`` (which ``apply`` reads as "keep the stored secret"), never in clear.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.config.apply import (
    API_FIELDS,
    BACKEND_FIELDS,
    MASKED,
    PRODUCT_FIELDS,
)
from tollway.config.loader import ConfigError, validation_messages
from tollway.config.model import TollwayConfig
from tollway.db.models import (
    GLOBAL_POLICIES,
    Api,
    Backend,
    GatewaySetting,
    NamedValue,
    Product,
    ProductApi,
)

__all__ = ["MASKED", "dump_yaml", "export_config", "export_document"]

_MASKED_NOTE = (
    f"# Secret named values are shown as {MASKED}: applying this file keeps their stored values.\n"
)


def _fields(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


def _product_apis(session: Session) -> dict[int, list[str]]:
    links: dict[int, list[str]] = {}
    rows = session.execute(
        select(ProductApi.product_id, Api.name)
        .join(Api, Api.id == ProductApi.api_id)
        .order_by(Api.name)
    )
    for product_id, api_name in rows:
        links.setdefault(product_id, []).append(api_name)
    return links


def _stored_data(session: Session) -> dict[str, Any]:
    def ordered(model: Any) -> list[Any]:
        return list(session.scalars(select(model).order_by(model.name)))

    links = _product_apis(session)
    data: dict[str, Any] = {
        "backends": {b.name: _fields(b, BACKEND_FIELDS) for b in ordered(Backend)},
        "named_values": {
            n.name: {"value": MASKED if n.secret else n.value, "secret": n.secret}
            for n in ordered(NamedValue)
        },
        "apis": {
            a.name: {**_fields(a, API_FIELDS), "backend": a.backend.name} for a in ordered(Api)
        },
        "products": {
            p.name: {**_fields(p, PRODUCT_FIELDS), "apis": links.get(p.id, [])}
            for p in ordered(Product)
        },
    }
    setting = session.get(GatewaySetting, GLOBAL_POLICIES)
    if setting is not None and setting.value:
        data["policies"] = setting.value
    return data


def export_config(session: Session) -> TollwayConfig:
    """The stored backends, named values, APIs, products and global policies as a config.

    Secret named values carry :data:`MASKED` instead of their value.
    """
    try:
        return TollwayConfig.model_validate(_stored_data(session))
    except ValidationError as exc:  # e.g. a policy type whose plugin is no longer installed
        messages = validation_messages(exc)
        raise ConfigError(["the stored configuration cannot be exported", *messages]) from None


def _compact_operations(api: dict[str, Any]) -> None:
    """Write operations without policies in the short ``"GET /items/{id}"`` form."""
    operations = api.get("operations")
    if operations:
        api["operations"] = [
            f"{op['method']} {op['path']}" if set(op) == {"method", "path"} else op
            for op in operations
        ]


def _escape(value: Any) -> Any:
    """Double ``${`` in strings so loading the file does not interpolate stored text."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {key: _escape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape(item) for item in value]
    return value


def _document(config: TollwayConfig) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for section in ("backends", "named_values", "apis", "products"):
        entries = getattr(config, section)
        if entries:
            document[section] = {
                name: entries[name].model_dump(mode="json", exclude_defaults=True)
                for name in sorted(entries)
            }
    for api in document.get("apis", {}).values():
        _compact_operations(api)
    if config.policies:
        document["policies"] = config.policies
    return document


def export_document(config: TollwayConfig) -> dict[str, Any]:
    """What ``tollway export`` writes, as data (the admin API's ``GET /config`` in JSON)."""
    document: dict[str, Any] = _escape(_document(config))
    return document


def dump_yaml(config: TollwayConfig) -> str:
    """``config`` as YAML: sections and fields in model order, names sorted, defaults omitted."""
    document = export_document(config)
    if not document:
        return "{}\n"
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    masked = any(spec.secret for spec in config.named_values.values())
    return (_MASKED_NOTE if masked else "") + text
