"""What a verified ID token says about the person: who they are and whether the e-mail counts.

Generic providers: ``email_verified`` decides; ``trust_email`` fills in only when the token is
silent (an explicit ``false`` wins). Microsoft Entra ID sends no ``email_verified`` and lets each
tenant's administrators set any address, so for Entra the address counts as verified only with
Microsoft's verified-domain signal (``xms_edov``) or when it comes from a tenant the operator
trusts (the single configured tenant, or one of ``allowed_tenants``); users are identified by
issuer + ``oid`` (the "nOAuth" takeover, issue 16).
"""

from __future__ import annotations

from typing import Any

from tollway.portal.settings import TENANT_ID, OidcProvider
from tollway.services.identities import ExternalIdentity

TENANT_PLACEHOLDER = "{tenantid}"


class ClaimsError(Exception):
    """The token is genuine but does not fit this provider's rules; the message is safe."""


def is_true(value: object) -> bool:
    """A boolean claim: ``true``, or the strings ``"true"``/``"1"`` some providers send."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return isinstance(value, int) and value == 1


def discovery_issuer_fits(provider: OidcProvider, issuer: str) -> bool:
    """Whether the discovery document's ``issuer`` is the one this provider is configured for."""
    if provider.kind == "generic":
        return issuer.rstrip("/") == provider.issuer_url
    prefix, suffix = f"{provider.authority}/", "/v2.0"
    if not (issuer.startswith(prefix) and issuer.endswith(suffix)):
        return False
    tenant = issuer[len(prefix) : -len(suffix)]
    if TENANT_ID.match(provider.tenant.lower()):
        return tenant == provider.tenant.lower()
    if provider.multi_tenant and tenant == TENANT_PLACEHOLDER:
        return True
    return bool(TENANT_ID.match(tenant))  # a domain name resolves to its tenant's id


def expected_issuer(provider: OidcProvider, issuer: str, claims: dict[str, Any]) -> str:
    """The ``iss`` this token must carry; Entra's shared endpoints name the user's tenant.

    On ``common``/``organizations`` the discovery issuer holds ``{tenantid}``: the token's
    ``tid`` fills it in (so ``iss`` and ``tid`` must agree) and must be an allowed tenant.
    """
    if provider.kind != "entra" or TENANT_PLACEHOLDER not in issuer:
        return issuer
    tenant = claims.get("tid")
    if not isinstance(tenant, str) or not TENANT_ID.match(tenant):
        raise ClaimsError("The ID token does not name a valid Microsoft tenant (tid).")
    if provider.allowed_tenants and tenant not in provider.allowed_tenants:
        raise ClaimsError(
            f"Your organisation's Microsoft tenant may not sign in to this portal. Ask the "
            f"portal's administrator to allow tenant {tenant}."
        )
    return issuer.replace(TENANT_PLACEHOLDER, tenant)


def identity_of(provider: OidcProvider, claims: dict[str, Any]) -> ExternalIdentity:
    """The person behind a verified token, keyed by issuer + subject."""
    email = claims.get("email")
    return ExternalIdentity(
        provider=provider.name,
        issuer=str(claims["iss"]),
        subject=_subject(provider, claims),
        legacy_subject=str(claims["sub"]),
        email=email if isinstance(email, str) and email else None,
        email_verified=_email_verified(provider, claims),
        name=str(claims.get("name") or "")[:200],
        link_existing=provider.link_existing_accounts,
    )


def _subject(provider: OidcProvider, claims: dict[str, Any]) -> str:
    # Entra's "oid" is the user's id in their tenant, the same for every application; "sub"
    # differs per application. Microsoft documents tid + oid as the key for a user.
    oid = claims.get("oid")
    if provider.kind == "entra" and isinstance(oid, str) and oid:
        return oid
    return str(claims["sub"])


def _email_verified(provider: OidcProvider, claims: dict[str, Any]) -> bool:
    if provider.kind == "entra":
        if is_true(claims.get("xms_edov")):
            return True
        return not provider.multi_tenant or claims.get("tid") in provider.allowed_tenants
    said = claims.get("email_verified")
    if said is not None:
        return is_true(said)
    return provider.trust_email
