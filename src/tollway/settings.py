"""Process settings, read from ``TOLLWAY_*`` environment variables (and an optional .env file)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///tollway.db"


class Settings(BaseSettings):
    """Everything one Tollway process needs to know about its surroundings.

    The declarative API configuration (backends, APIs, products) lives in the database and is
    managed with ``tollway apply``; these settings are about the process itself.
    """

    model_config = SettingsConfigDict(
        env_prefix="TOLLWAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the store: sqlite:///path.db or postgresql+psycopg://...",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key that encrypts secret named values at rest and signs portal sessions.",
    )
    redis_url: str = Field(
        "memory://",
        description="Where counters and the cache live: memory:// (one process), redis://, "
        "rediss:// (TLS), redis+sentinel:// or redis+cluster:// (docs/configuration.md).",
    )
    limits_fail_closed: bool = Field(
        False,
        description="When Redis is unreachable, refuse limited calls with 503 instead of "
        "letting them through (the default, fail-open, logs and counts the outage).",
    )
    allow_memory_with_workers: bool = Field(
        False, description="Let --workers N run on memory:// counters (limits per process)."
    )
    cache_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Size bound of the in-memory response cache."
    )
    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the gateway listens on.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses/CIDRs of reverse proxies whose X-Forwarded-For/-Proto is believed.",
    )
    public_url: str | None = Field(
        None,
        description="The base URL people reach Tollway at, e.g. https://api.example.com: links in "
        "e-mails are built from it (never from a request's Host), and the portal answers only "
        "to its host. Required when the portal e-mails links.",
    )
    refresh_interval: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between checks for changed keys/config made by other processes.",
    )
    usage_flush_interval: float = Field(
        2.0, gt=0, description="Seconds between batched writes of usage counts to the store."
    )
    usage_buffer_limit: int = Field(
        100_000, gt=0, description="Most usage rows held in memory while the store is down."
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=0,
        description="Largest request body the gateway forwards to any API unless a "
        "request-size-limit policy says otherwise (413 beyond it, from Content-Length before "
        "anything is forwarded, or as soon as a chunked body crosses it).",
    )
    access_log: bool | Literal["json"] = Field(
        False,
        description="One line per request on every path, logger tollway.access, never a query "
        "string or secret (costs CPU): true for text lines, json for one JSON object per line "
        "on standard output (docs/observability.md).",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector base URL (e.g. http://otel-collector:4318): one span per "
        "API call is exported to <url>/v1/traces, batched, off the request path.",
    )
    otel_service_name: str = Field("tollway", description="service.name of the exported spans.")
    fast_path: bool = Field(
        True,
        description="Proxy API calls to HTTP backends with the callback fast path "
        "(false: every request goes through uvicorn's ASGI path; same behaviour, more CPU).",
    )

    max_request_line_bytes: int = Field(
        8 * 1024,
        ge=256,
        description="Longest request line (method, target, version) accepted; longer: 414.",
    )
    max_header_line_bytes: int = Field(
        8 * 1024, ge=256, description="Longest single header line accepted; longer: 431."
    )
    max_request_head_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="Largest request head (request line and all headers) accepted; larger: 431.",
    )
    max_header_count: int = Field(
        100, ge=1, description="Most header lines in one request; more: 431."
    )
    request_head_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds a client has to send a complete request head once it has started "
        "one or opened the connection; then 408 (or a silent close if it sent nothing).",
    )
    request_body_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a request body may stall between two reads before 408 and close.",
    )
    keep_alive_timeout: float = Field(
        5.0, gt=0, description="Seconds an idle keep-alive connection is kept open."
    )
    max_connections: int = Field(
        0,
        ge=0,
        description="Most open client connections per process (0: derived from the open-file "
        "limit); beyond it the oldest connection still waiting for a request head is closed, "
        "or the new one gets 503.",
    )

    @field_validator("access_log", mode="before")
    @classmethod
    def _access_log_mode(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "json":
            return "json"
        return value

    @field_validator("otel_exporter_otlp_endpoint")
    @classmethod
    def _check_otlp_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. http://otel-collector:4318)")
        return value.strip()

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL such as https://api.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{value!r}: give only scheme, host, port and an optional path")
        return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"

    def sqlite_path(self) -> Path | None:
        """The database file when the store is SQLite on disk, else None."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix) :])
        return None
