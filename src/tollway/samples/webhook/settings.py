"""Settings of the Docker Hub webhook sample, read from ``WEBHOOK_*`` variables and ``.env``."""

from __future__ import annotations

import json
from string import Formatter
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DOCKER_HUB_CALLBACK_HOST = "registry.hub.docker.com"
PLACEHOLDERS = frozenset({"repo_name", "namespace", "name", "tag"})

# Comma-separated in the environment (`WEBHOOK_TRUSTED_PUSHERS=account1,account2`) or a JSON list.
NameList = Annotated[list[str], NoDecode]


def split_list(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]``; JSON lists and real lists pass through to pydantic."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def check_action_template(argv: list[str]) -> list[str]:
    """Reject placeholders other than ``{repo_name}``, ``{namespace}``, ``{name}``, ``{tag}``.

    Attribute or index lookups (``{repo_name.__class__}``) and format specs are refused too, so
    rendering the template can only ever substitute a validated name.
    """
    for arg in argv:
        for _, field, spec, conversion in Formatter().parse(arg):
            if field is None:
                continue
            if field not in PLACEHOLDERS or spec or conversion:
                allowed = ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
                raise ValueError(f"action argument {arg!r}: only {allowed} may be used")
    return argv


class WebhookSettings(BaseSettings):
    """Configuration of the webhook receiver; the defaults accept nobody and run nothing."""

    model_config = SettingsConfigDict(env_prefix="WEBHOOK_", env_file=".env", extra="ignore")

    title: str = Field("Docker Hub webhook", description="Title of the OpenAPI document.")
    root_path: str = Field("", description="Path prefix when served behind a proxy.")
    docs_enabled: bool = Field(
        True, description="Serve /docs, /redoc and /openapi.json (switch off in production)."
    )
    trusted_pushers: NameList = Field(
        default_factory=list, description="Docker Hub accounts whose pushes are accepted."
    )
    callback_hosts: NameList = Field(
        default_factory=lambda: [DOCKER_HUB_CALLBACK_HOST],
        description="Hosts the confirmation may be posted to (the callback_url's host): "
        "'host' allows port 443 only, 'host:port' that port.",
    )
    callback_https_only: bool = Field(True, description="Refuse plain-http callback URLs.")
    callback_timeout: float = Field(10.0, gt=0, description="Seconds to wait for the callback.")
    target_url: str | None = Field(
        None, description="Optional target_url sent in the confirmation (e.g. a deploy log)."
    )
    action: list[str] = Field(
        default_factory=list,
        description='argv template, e.g. ["docker", "pull", "{repo_name}"]; empty runs nothing.',
    )
    action_timeout: float = Field(300.0, gt=0, description="Seconds before the action is killed.")
    max_deliveries: int = Field(100, ge=1, le=10_000, description="Deliveries kept in memory.")
    max_output_bytes: int = Field(
        4000, ge=0, description="Bytes of action output kept per delivery."
    )

    _split = field_validator("trusted_pushers", "callback_hosts", mode="before")(split_list)

    @field_validator("callback_hosts")
    @classmethod
    def _lower_hosts(cls, hosts: list[str]) -> list[str]:
        return [host.lower() for host in hosts]

    @field_validator("action")
    @classmethod
    def _check_action(cls, argv: list[str]) -> list[str]:
        return check_action_template(argv)
