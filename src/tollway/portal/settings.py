"""Portal settings, read from ``TOLLWAY_PORTAL_*`` environment variables.

OpenID Connect providers come from ``TOLLWAY_PORTAL_OIDC_PROVIDERS``, a JSON list, e.g.::

    [{"name": "microsoft", "kind": "entra", "tenant": "<your tenant id>",
      "client_id": "...", "client_secret": "..."},
     {"name": "corp", "kind": "generic", "title": "Corp SSO",
      "issuer": "https://sso.example.com", "client_id": "...", "client_secret": "..."}]
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENTRA_HOST = "https://login.microsoftonline.com"
ENTRA_MULTI_TENANT = frozenset({"common", "organizations", "consumers"})
TENANT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class OidcProvider(BaseModel):
    """One OpenID Connect provider the portal offers as "Sign in with ..."."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="Used in URLs.")
    kind: Literal["entra", "generic"] = Field(
        "generic", description="entra: Microsoft Entra ID preset; generic: issuer + discovery."
    )
    title: str = Field("", description="Button label; defaults to Microsoft or the name.")
    issuer: str = Field("", description="Issuer URL (generic); discovery is read from it.")
    tenant: str = Field(
        "common",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,99}$",
        description="Entra: your tenant id or domain (single tenant), or common/organizations "
        "(multi-tenant; see allowed_tenants).",
    )
    allowed_tenants: list[str] = Field(
        default_factory=list,
        description="Entra multi-tenant: the tenant ids whose users may sign in; their e-mail "
        "addresses count as verified (you trust those tenants' domains). Empty: any tenant, "
        "e-mail verified only when the token carries xms_edov.",
    )
    authority: str = Field(
        ENTRA_HOST,
        pattern=r"^https?://[^/]+$",
        description="Entra: the Microsoft sign-in host (change only for a national cloud).",
    )
    client_id: str = Field(min_length=1, description="Client (application) id.")
    client_secret: SecretStr = Field(SecretStr(""), description="Client secret.")
    scopes: str = Field("openid email profile", description="Scopes requested.")
    trust_email: bool = Field(
        False,
        description="Generic: treat the e-mail claim as verified when the token does not say "
        "(only for providers that vouch for every address they issue); an explicit "
        "email_verified=false still wins.",
    )
    link_existing_accounts: bool = Field(
        False,
        description="Let a first sign-in take over the existing account with the same verified "
        "e-mail address (that account's own address must be verified; never an admin).",
    )
    timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds a discovery, token or key call may take in all."
    )

    @field_validator("allowed_tenants")
    @classmethod
    def _tenant_ids(cls, tenants: list[str]) -> list[str]:
        tenants = [tenant.strip().lower() for tenant in tenants]
        for tenant in tenants:
            if not TENANT_ID.match(tenant):
                raise ValueError(f"{tenant!r} is not a tenant id (a GUID)")
        return tenants

    @model_validator(mode="after")
    def _consistent(self) -> OidcProvider:
        if self.kind == "generic":
            if not self.issuer.startswith(("https://", "http://")):
                raise ValueError(f"provider {self.name!r}: a generic provider needs an issuer URL")
            if self.allowed_tenants:
                raise ValueError(f"provider {self.name!r}: allowed_tenants is for kind entra")
            return self
        if self.trust_email:
            raise ValueError(
                f"provider {self.name!r}: trust_email would let any Microsoft tenant assert any "
                "address; list the tenants you trust in allowed_tenants, or add the xms_edov "
                "optional claim to the app registration"
            )
        if self.allowed_tenants and not self.multi_tenant:
            raise ValueError(
                f"provider {self.name!r}: allowed_tenants is for tenant common or organizations; "
                "a single tenant already admits only its own users"
            )
        return self

    @property
    def multi_tenant(self) -> bool:
        """Entra's shared endpoints, whose users come from any tenant."""
        return self.kind == "entra" and self.tenant.lower() in ENTRA_MULTI_TENANT

    @property
    def issuer_url(self) -> str:
        if self.kind == "entra":
            return f"{self.authority}/{self.tenant}/v2.0"
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
