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


class BackendSpec(Strict):
    """Where requests go: exactly one of ``url`` or ``app``."""

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

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError("a backend URL cannot carry a query string or fragment")
        return value.rstrip("/")

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
        if (self.url is None) == (self.app is None):
            raise ValueError("a backend needs exactly one of 'url' or 'app'")
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
