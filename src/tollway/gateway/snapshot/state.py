"""Compile config rows into what requests use: an immutable route table with live backends.

Built once per config change (never per request). Backends are reused across rebuilds when their
definition is unchanged, so keep-alive pools survive unrelated config changes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from tollway.crypto import SecretBox
from tollway.db.models import Api, Backend
from tollway.gateway.snapshot.keyindex import KeyIndex
from tollway.gateway.snapshot.load import ConfigData
from tollway.gateway.snapshot.routing import OperationTable, RouteTable, compile_operation
from tollway.gateway.upstream.backends import AppBackend, BackendTarget, HttpBackend
from tollway.gateway.upstream.health import BreakerSettings, HealthSettings
from tollway.gateway.upstream.pool import PoolSettings, TlsSettings
from tollway.policies.chain import EMPTY_POLICIES, PolicySet, build_scope
from tollway.types import Headers

logger = logging.getLogger("tollway.gateway")

_REFERENCE = re.compile(r"\{\{\s*([a-z0-9][a-z0-9_-]*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One API as the hot path sees it."""

    api_id: int
    name: str
    title: str
    description: str
    prefix: str
    prefix_bytes: bytes
    backend: BackendTarget
    subscription_required: bool
    key_header: bytes  # lower-cased, for matching
    key_header_name: str  # as configured, for docs
    key_query: bytes
    operations: OperationTable | None
    openapi: str | None
    published: bool
    products: frozenset[int]  # the products that open this API: a key's product must be one
    product_names: dict[int, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class GatewayState:
    routes: RouteTable[Route]
    keys: KeyIndex
    backends: dict[tuple[Any, ...], BackendTarget] = field(default_factory=dict)
    policies: PolicySet = EMPTY_POLICIES

    def apis(self) -> list[Route]:
        return sorted(self.routes.routes.values(), key=lambda route: route.prefix)


EMPTY_STATE = GatewayState(RouteTable(), KeyIndex())


def resolve_named_values(text: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}`` with the named value (already decrypted)."""
    return _REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _pool_settings(backend: Backend) -> PoolSettings | None:
    """The row's targets (``url`` alone is one) and how calls reach them; None for an app."""
    if backend.app:
        return None
    targets = tuple((t["url"], int(t.get("weight", 1))) for t in backend.targets or ())
    return PoolSettings(
        targets=targets or ((backend.url or "", 1),),
        balance=backend.balance or "round-robin",
        health=HealthSettings(**backend.health_check) if backend.health_check else None,
        breaker=BreakerSettings(**backend.circuit_breaker) if backend.circuit_breaker else None,
        retries=backend.retries or 0,
        tls=TlsSettings(**backend.tls) if backend.tls else None,
        max_idle_seconds=backend.max_idle_seconds,
        max_requests=backend.max_requests,
    )


def _backend_key(backend: Backend, headers: Headers) -> tuple[Any, ...]:
    return (
        backend.name,
        backend.app,
        _pool_settings(backend),
        backend.connect_timeout,
        backend.read_timeout,
        backend.preserve_host,
        tuple(headers),
    )


def _make_backend(backend: Backend, headers: Headers) -> BackendTarget:
    settings = _pool_settings(backend)
    if settings is None:
        assert backend.app is not None
        return AppBackend.from_reference(
            backend.app, read_timeout=backend.read_timeout, headers=headers
        )
    return HttpBackend(
        backend.name,
        settings,
        connect_timeout=backend.connect_timeout,
        read_timeout=backend.read_timeout,
        preserve_host=backend.preserve_host,
        headers=headers,
    )


def compile_state(
    config: ConfigData,
    keys: KeyIndex,
    secret_box: SecretBox,
    previous: GatewayState | None = None,
) -> GatewayState:
    """Build the route table; reuse unchanged backends from ``previous``."""
    values = {name: secret_box.decrypt(stored) for name, (stored, _) in config.named_values.items()}
    old = previous.backends if previous else {}
    backends: dict[tuple[Any, ...], BackendTarget] = {}
    by_id: dict[int, BackendTarget] = {}
    for backend in config.backends.values():
        headers = [
            (name.lower().encode(), resolve_named_values(value, values).encode())
            for name, value in sorted(backend.headers.items())
        ]
        key = _backend_key(backend, headers)
        target = old.get(key) or backends.get(key) or _make_backend(backend, headers)
        backends[key] = target
        by_id[backend.id] = target
    policies = _build_policies(config, values)
    routes: RouteTable[Route] = RouteTable()
    for api in config.apis:
        routes.add(api.path, _route(api, by_id[api.backend_id], config))
    return GatewayState(routes, keys, backends, policies)


def _build_policies(config: ConfigData, values: dict[str, str]) -> PolicySet:
    secrets = frozenset(name for name, (_, secret) in config.named_values.items() if secret)

    def build(entries: list[Any], scope: str) -> list[Any]:
        return build_scope(entries, scope, values, secrets)

    operations = {}
    for api in config.apis:
        for op in api.operations or ():
            if op.get("policies"):
                key = (str(op["method"]), str(op["path"]))
                scope = f"operation:{api.name} {key[0]} {key[1]}"
                operations[(api.id, key)] = build(op["policies"], scope)
    return PolicySet(
        global_=build(config.global_policies, "global"),
        products={
            pid: build(entries, f"product:{name}")
            for pid, (name, entries) in config.product_policies.items()
            if entries
        },
        apis={api.id: build(api.policies or [], f"api:{api.name}") for api in config.apis},
        operations=operations,
    )


def _route(api: Api, backend: BackendTarget, config: ConfigData) -> Route:
    operations = None
    if api.operations:
        operations = OperationTable.build(
            compile_operation(op["method"], op["path"], tuple(op.get("policies", ())))
            for op in api.operations
        )
    return Route(
        api_id=api.id,
        name=api.name,
        title=api.title or api.name,
        description=api.description,
        prefix=api.path,
        prefix_bytes=api.path.encode(),
        backend=backend,
        subscription_required=api.subscription_required,
        key_header=api.key_header.lower().encode(),
        key_header_name=api.key_header,
        key_query=api.key_query.encode(),
        operations=operations,
        openapi=api.openapi,
        published=api.published,
        products=config.products_of_api.get(api.id, frozenset()),
        product_names={
            pid: config.product_policies[pid][0]
            for pid in config.products_of_api.get(api.id, ())
            if pid in config.product_policies
        },
    )


def retired_backends(old: GatewayState, new: GatewayState) -> list[BackendTarget]:
    """Backends of ``old`` that ``new`` no longer uses (to be shut down)."""
    kept = {id(target) for target in new.backends.values()}
    return [target for target in old.backends.values() if id(target) not in kept]
