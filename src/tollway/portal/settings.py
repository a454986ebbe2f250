"""Portal settings, read from ``TOLLWAY_PORTAL_*`` environment variables.

OpenID Connect providers come from ``TOLLWAY_PORTAL_OIDC_PROVIDERS``, a JSON list, e.g.::

    [{"name": "microsoft", "kind": "entra", "tenant": "common",
      "client_id": "...", "client_secret": "..."},
     {"name": "corp", "kind": "generic", "title": "Corp SSO",
      "issuer": "https://sso.example.com", "client_id": "...", "client_secret": "..."}]
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENTRA_AUTHORITY = "https://login.microsoftonline.com/{tenant}/v2.0"


class OidcProvider(BaseModel):
    """One OpenID Connect provider the portal offers as "Sign in with ..."."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="Used in URLs.")
    kind: Literal["entra", "generic"] = Field(
        "generic", description="entra: Microsoft Entra ID preset; generic: issuer + discovery."
    )
    title: str = Field("", description="Button label; defaults to Microsoft or the name.")
    issuer: str = Field("", description="Issuer URL (generic); discovery is read from it.")
    tenant: str = Field("common", description="Entra tenant id, or common/organizations.")
    client_id: str = Field(min_length=1, description="Client (application) id.")
    client_secret: SecretStr = Field(SecretStr(""), description="Client secret.")
    scopes: str = Field("openid email profile", description="Scopes requested.")
    trust_email: bool = Field(
        False,
        description="Treat the e-mail claim as verified even without email_verified=true "
        "(only for providers that vouch for every address they issue).",
    )

    @model_validator(mode="after")
    def _issuer_known(self) -> OidcProvider:
        if self.kind == "generic" and not self.issuer.startswith(("https://", "http://")):
            raise ValueError(f"provider {self.name!r}: a generic provider needs an issuer URL")
        return self

    @property
    def issuer_url(self) -> str:
        if self.kind == "entra":
            return ENTRA_AUTHORITY.format(tenant=self.tenant)
        return self.issuer.rstrip("/")

    @property
    def label(self) -> str:
        return self.title or ("Microsoft" if self.kind == "entra" else self.name)


class PortalSettings(BaseSettings):
    """How the portal behaves; the session signing key is ``TOLLWAY_SECRET_KEY``."""

    model_config = SettingsConfigDict(env_prefix="TOLLWAY_PORTAL_", extra="ignore")

    oidc_providers: list[OidcProvider] = Field(
        default_factory=list, description="OpenID Connect providers (JSON list)."
    )
    session_max_age: int = Field(
        8 * 3600, gt=0, description="Seconds a sign-in lasts at most, however active (absolute)."
    )
    session_idle_timeout: int = Field(
        3600, gt=0, description="Seconds without a page view after which a sign-in ends."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the portal answers to besides TOLLWAY_PUBLIC_URL's (comma-"
        "separated); without a public URL, loopback names (localhost, 127.0.0.1, ::1) are allowed.",
    )
    signin_attempts_per_account: int = Field(
        5, gt=0, description="Failed sign-ins allowed per e-mail address per window."
    )
    signin_attempts_per_ip: int = Field(
        20, gt=0, description="Failed sign-ins allowed per client address per window."
    )
    signin_window: float = Field(900.0, gt=0, description="Seconds the attempt limit covers.")
    signups_per_ip: int = Field(
        10,
        gt=0,
        description="Sign-ups and reset requests per client address per hour (each costs an "
        "argon2 hash or an e-mail).",
    )
    id_token_leeway: int = Field(60, ge=0, description="Clock skew allowed on ID tokens (s).")
    verification_hook: str | None = Field(
        None,
        pattern=r"^https?://",
        description="URL that receives {email, verify_url} as JSON after each sign-up.",
    )
    verification_required: bool = Field(
        False, description="Only developers with a verified e-mail address may subscribe."
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().lower() for item in value.split(",") if item.strip()]
        return value
