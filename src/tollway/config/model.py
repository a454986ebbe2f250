"""The ``tollway.yaml`` model: backends, named values, APIs, products and their policies.

Every section is a mapping keyed by name, so an error can name its exact place
(``apis.names.backend``). Unknown fields are errors (``extra="forbid"``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tollway.policies.kinds import validate_policy

RESERVED_PREFIXES = ("/docs", "/portal", "/admin", "/-")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _check_policies(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [validate_policy(entry) for entry in value]


Policies = Annotated[
    list[dict[str, Any]],
    AfterValidator(_check_policies),
    Field(description="Policies applied at this scope, in order; see docs/policies.md."),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TargetSpec(Strict):
    """One instance of a pooled backend."""

    url: str = Field(description="Base URL (http/https) of this instance.")
    weight: int = Field(1, ge=1, le=1000, description="Share of the calls, relative to others.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _backend_url(value)


class HealthCheckSpec(Strict):
    """Active health checks: ``GET path`` on every target every ``interval`` seconds."""

    path: str = Field(pattern=r"^/", description="Path probed on each target (2xx/3xx = up).")
    interval: float = Field(5.0, gt=0, le=3600, description="Seconds between probes.")
    timeout: float = Field(2.0, gt=0, le=300, description="Seconds a probe may take.")
    healthy: int = Field(2, ge=1, le=100, description="Successes in a row to put a target back.")
    unhealthy: int = Field(
        3, ge=1, le=100, description="Failures in a row (probes or calls) to take a target out."
    )


class CircuitBreakerSpec(Strict):
    """Per target: ``failures`` failed calls within ``window`` seconds open the circuit."""

    failures: int = Field(5, ge=1, le=10000, description="Failed calls that open the circuit.")
    window: float = Field(10.0, gt=0, le=3600, description="Seconds over which they count.")
    open_for: float = Field(
        30.0, gt=0, le=3600, description="Seconds the circuit stays open before one trial call."
    )


class TlsSpec(Strict):
    """How the gateway checks (and identifies itself to) an https backend."""

    verify: bool = Field(True, description="Verify the backend's certificate (default: yes).")
    ca_file: str | None = Field(None, description="CA bundle (PEM) instead of the system store.")
    cert_file: str | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: str | None = Field(None, description="Its private key (PEM), if not in cert_file.")
    server_name: str | None = Field(
        None, description="Name sent in SNI and checked in the certificate (default: URL host)."
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsSpec:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("'key_file' needs 'cert_file' (the client certificate)")
        return self


def _backend_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("a backend URL cannot carry a query string or fragment")
    return value.rstrip("/")


class BackendSpec(Strict):
    """Where requests go: exactly one of ``url``, ``targets`` or ``app``."""

    description: str = ""
    url: str | None = Field(
        None, description="Base URL (http/https); its path is prepended to forwarded paths."
    )
    app: str | None = Field(
        None, description="In-process ASGI app as 'module:attribute', called without a socket."
    )
    connect_timeout: float = Field(5.0, gt=0, le=300, description="Seconds to connect.")
    read_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds to wait for data.")
    preserve_host: bool = Field(
        False, description="Send the client's Host header instead of the backend's."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers sent on every request to this backend; values may use {{named}}.",
    )

    targets: list[TargetSpec] = Field(
        default_factory=list,
        description="Several instances (instead of 'url'); they may differ in host and port only.",
    )
    balance: Literal["round-robin", "least-connections"] = Field(
        "round-robin", description="How a pool's target is chosen for each call."
    )
    health_check: HealthCheckSpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None
    retries: int = Field(
        0, ge=0, le=10, description="Other targets tried when connecting fails (nothing sent)."
    )
    tls: TlsSpec | None = None
    max_idle_seconds: float | None = Field(
        None, gt=0, le=86400, description="Close pooled connections idle longer than this."
    )
    max_requests: int | None = Field(
        None, ge=1, le=1_000_000, description="Close a pooled connection after this many calls."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _backend_url(value)

    @field_validator("app")
    @classmethod
    def _check_app(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[\w.]+:[\w.]+$", value):
            raise ValueError(f"{value!r} is not 'module:attribute' (e.g. 'myapi.main:app')")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> BackendSpec:
        given = [self.url is not None, self.app is not None, bool(self.targets)]
        if sum(given) != 1:
            raise ValueError("a backend needs exactly one of 'url', 'targets' or 'app'")
        paths = {urlsplit(target.url).path for target in self.targets}
        if len(paths) > 1:
            raise ValueError(
                "targets: every target needs the same path (they are instances of one service; "
                f"found {', '.join(sorted(repr(p) for p in paths))})"
            )
        sockets_only = (
            "health_check",
            "circuit_breaker",
            "tls",
            "retries",
            "max_idle_seconds",
            "max_requests",
        )
        if self.app is not None and any(getattr(self, name) for name in sockets_only):
            raise ValueError(
                "an in-process 'app' backend has no sockets: no health_check, circuit_breaker, "
                "tls, retries, max_idle_seconds or max_requests"
            )
        return self


class NamedValueSpec(Strict):
    """A named string; ``secret: true`` values are encrypted at rest and masked on export."""

    value: str
    secret: bool = False


def _parse_operation(value: Any) -> Any:
    if isinstance(value, str):
        method, _, path = value.strip().partition(" ")
        return {"method": method, "path": path.strip()}
    return value


class OperationSpec(Strict):
    """One method + path template (``GET /items/{id}``) of an API, with its own policies."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*"]
    path: str = Field(pattern=r"^/", description="Path template below the API prefix.")
    policies: Policies = Field(default_factory=list)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


Operation = Annotated[OperationSpec, BeforeValidator(_parse_operation)]


def _check_api_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must start with '/'")
    path = value.rstrip("/") or "/"
    if path == "/":
        raise ValueError("an API cannot take the whole site; give it a prefix such as '/names'")
    for segment in path.strip("/").split("/"):
        if not _PATH_SEGMENT.match(segment) or segment in (".", ".."):
            raise ValueError(f"path {value!r} has an invalid segment {segment!r}")
    for reserved in RESERVED_PREFIXES:
        if path == reserved or path.startswith(reserved + "/"):
            raise ValueError(
                f"path {path!r} collides with Tollway's own {reserved!r} prefix "
                f"(reserved: {', '.join(RESERVED_PREFIXES)})"
            )
    return path


class ApiSpec(Strict):
    """A path prefix on the gateway fronting one backend."""

    title: str = ""
    description: str = ""
    path: Annotated[str, AfterValidator(_check_api_path)]
    backend: str
    subscription_required: bool = True
    key_header: str = Field("X-API-Key", pattern=_HEADER_NAME.pattern)
    key_query: str = Field("subscription-key", min_length=1, max_length=100)
    openapi: str | None = Field(
        "/openapi.json", description="Path of the backend's OpenAPI document; null for none."
    )
    operations: list[Operation] = Field(
        default_factory=list,
        description="If given, only these operations are reachable (others get 404).",
    )
    policies: Policies = Field(default_factory=list)
    published: bool = True


class ProductSpec(Strict):
    """A bundle of APIs that developers subscribe to."""

    title: str = ""
    description: str = ""
    approval_required: bool = False
    published: bool = True
    apis: list[str] = Field(default_factory=list)
    policies: Policies = Field(default_factory=list)


class TollwayConfig(Strict):
    """The whole declarative state managed by ``tollway apply``."""

    backends: dict[Name, BackendSpec] = Field(default_factory=dict)
    named_values: dict[Name, NamedValueSpec] = Field(default_factory=dict)
    apis: dict[Name, ApiSpec] = Field(default_factory=dict)
    products: dict[Name, ProductSpec] = Field(default_factory=dict)
    policies: Policies = Field(default_factory=list)
