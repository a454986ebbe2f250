"""Who may use the admin API: every route without a token, with a revoked, an expired and a
read-only token, with a developer's portal session, and with a read-write token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Admin

ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/apis", None),
    ("GET", "/apis/names", None),
    ("POST", "/apis", {"name": "fresh", "path": "/fresh", "backend": "names"}),
    ("PUT", "/apis/hidden", {"path": "/hidden", "backend": "echo", "published": False}),
    ("DELETE", "/apis/other", None),
    ("GET", "/backends", None),
    ("POST", "/backends", {"name": "more", "url": "http://127.0.0.1:9"}),
    ("GET", "/named-values", None),
    ("POST", "/named-values", {"name": "token", "value": "s3cr3t-value", "secret": True}),
    ("GET", "/products", None),
    ("PUT", "/products/gold", {"apis": ["echo"], "approval_required": True}),
    ("GET", "/policies", None),
    ("PUT", "/policies", {"policies": []}),
    ("GET", "/apis/names/policies", None),
    ("PUT", "/products/starter/policies", {"policies": []}),
    ("GET", "/users", None),
    ("POST", "/users", {"email": "new@example.com"}),
    ("GET", "/users/1", None),
    ("PATCH", "/users/1", {"name": "Dev"}),
    ("GET", "/subscriptions", None),
    ("POST", "/subscriptions", {"user": "dev@example.com", "product": "starter"}),
    ("POST", "/subscriptions/1/suspend", None),
    ("POST", "/subscriptions/1/keys/primary/regenerate", None),
    ("GET", "/usage", None),
    ("GET", "/audit", None),
    ("GET", "/config", None),
    ("PUT", "/config?dry_run=true", {"backends": {}}),
]


def call(admin: Admin, who: str, method: str, path: str, body: Any) -> int:
    if who == "none":
        client = admin.client()
    elif who == "developer-session":
        client = admin.client(Cookie=f"tollway_portal={admin.developer_cookie}")
    else:
        client = admin.client(getattr(admin, who))
    with client:
        return client.request(method, path, json=body).status_code


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # (no SQL of its own)
def test_without_a_live_token_no_route_answers_and_read_only_only_reads(admin: Admin) -> None:
    before = admin.last_audit_id()
    for who in ("none", "revoked", "expired", "developer-session"):
        statuses = {f"{m} {p}": call(admin, who, m, p, b) for m, p, b in ROUTES}
        assert statuses == {route: 401 for route in statuses}, who
    for method, path, body in ROUTES:
        status = call(admin, "read", method, path, body)
        assert status == (200 if method == "GET" else 403), (method, path, status)
    assert admin.last_audit_id() == before  # nothing changed


def test_a_read_write_token_reaches_every_route(admin: Admin) -> None:
    statuses = {f"{m} {p}": call(admin, "write", m, p, b) for m, p, b in ROUTES}
    expected = {route: 200 for route in statuses}
    expected.update(
        {
            "POST /apis": 201,
            "POST /backends": 201,
            "POST /named-values": 201,
            "POST /users": 201,
            "POST /subscriptions": 201,
            "DELETE /apis/other": 409,  # product other-only lists it
        }
    )
    assert statuses == expected


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_openapi_document_is_public_and_lists_every_resource(admin: Admin) -> None:
    with admin.client() as client:
        document = client.get("/openapi.json").json()
    paths = set(document["paths"])
    for resource in ("apis", "backends", "products", "named-values", "users", "subscriptions"):
        assert f"/admin/api/v1/{resource}" in paths
    for path in ("policies", "usage", "audit", "config"):
        assert f"/admin/api/v1/{path}" in paths
    assert "/admin/api/v1/subscriptions/{subscription_id}/keys/{slot}/regenerate" in paths
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    catalogue = httpx.get(f"{admin.base}/docs/")
    assert 'href="/docs/-/admin"' in catalogue.text
    swagger = httpx.get(f"{admin.base}/docs/-/admin")
    assert 'data-openapi-url="/admin/api/v1/openapi.json"' in swagger.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("admin_env", [{"TOLLWAY_PORTAL_SIGNIN_ATTEMPTS_PER_IP": "3"}])
def test_wrong_tokens_are_limited_per_client_address(admin: Admin) -> None:
    wrong = "twa_" + "x" * 46
    with admin.client(wrong) as client:
        assert [client.get("/apis").status_code for _ in range(3)] == [401, 401, 401]
        refused = client.get("/apis")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) > 0
    with admin.client(admin.write) as client:  # even the right token waits now
        assert client.get("/apis").status_code == 429
