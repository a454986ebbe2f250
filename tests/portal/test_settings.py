"""Provider presets and settings from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollway.portal.claims import discovery_issuer_fits, expected_issuer
from tollway.portal.settings import OidcProvider, PortalSettings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_providers_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TOLLWAY_PORTAL_OIDC_PROVIDERS",
        '[{"name": "microsoft", "kind": "entra", "tenant": "contoso.onmicrosoft.com",'
        ' "client_id": "app-id", "client_secret": "s3cret"},'
        ' {"name": "corp", "issuer": "https://sso.example.com/", "client_id": "c"}]',
    )
    entra, corp = PortalSettings().oidc_providers
    assert entra.issuer_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
    assert entra.label == "Microsoft"
    assert "s3cret" not in repr(entra)
    assert corp.issuer_url == "https://sso.example.com" and corp.label == "corp"


def test_entra_common_accepts_the_users_tenant_as_issuer() -> None:
    provider = OidcProvider(name="microsoft", kind="entra", client_id="app-id")
    assert provider.issuer_url == "https://login.microsoftonline.com/common/v2.0"
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert discovery_issuer_fits(provider, template)
    issuer = expected_issuer(provider, template, {"tid": TENANT})
    assert issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "corp", "client_id": "c"}, "needs an issuer URL"),
        ({"name": "Bad Name", "kind": "entra", "client_id": "c"}, "name"),
        ({"name": "corp", "kind": "entra", "client_id": "c", "colour": "red"}, "colour"),
        ({"name": "ms", "kind": "entra", "client_id": "c", "trust_email": True}, "allowed_tenants"),
        ({"name": "ms", "kind": "entra", "client_id": "c", "allowed_tenants": ["x"]}, "tenant id"),
        (
            {
                "name": "ms",
                "kind": "entra",
                "tenant": TENANT,
                "client_id": "c",
                "allowed_tenants": [TENANT],
            },
            "a single tenant",
        ),
        (
            {
                "name": "c",
                "issuer": "https://sso.example.com",
                "client_id": "c",
                "allowed_tenants": [TENANT],
            },
            "for kind entra",
        ),
    ],
)
def test_bad_provider_settings_say_what_to_fix(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OidcProvider.model_validate(fields)
