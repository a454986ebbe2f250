"""Sign up, log in and /me: tokens, duplicate e-mails and the superuser-escalation fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from tollway.samples.recipes.security import create_access_token

from .conftest import login, signup

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


async def test_signup_login_and_me(client: httpx.AsyncClient) -> None:
    created = await signup(client, "ada@example.com", first_name="Ada", surname="Lovelace")
    assert created["email"] == "ada@example.com"
    assert created["is_superuser"] is False
    assert "password" not in created and "hashed_password" not in created

    response = await client.post(
        "/api/v1/auth/login", data={"username": "ada@example.com", "password": "password-123"}
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"
    token = response.json()["access_token"]

    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json() == created


async def test_signup_cannot_make_the_caller_superuser(client: httpx.AsyncClient) -> None:
    body = {"email": "mallory@example.com", "password": "password-123", "is_superuser": True}
    response = await client.post("/api/v1/auth/signup", json=body)
    assert response.status_code == 422
    assert "is_superuser" in response.json()["detail"]
    # Nor does the account exist in some half-created state.
    failed = await client.post(
        "/api/v1/auth/login", data={"username": "mallory@example.com", "password": "password-123"}
    )
    assert failed.status_code == 401


@pytest.mark.parametrize("second", ["dup@example.com", "DUP@example.com"])
async def test_duplicate_email_is_a_409_problem(client: httpx.AsyncClient, second: str) -> None:
    await signup(client, "dup@example.com")
    response = await client.post(
        "/api/v1/auth/signup", json={"email": second, "password": "other-pass-1"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/-/problems/email-taken"
    # The first account still logs in with its own password.
    assert await login(client, "dup@example.com")


@pytest.mark.parametrize(
    ("username", "password"),
    [("ada@example.com", "wrong-password"), ("nobody@example.com", "password-123")],
)
async def test_bad_credentials_are_a_401_without_saying_which(
    client: httpx.AsyncClient, username: str, password: str
) -> None:
    await signup(client, "ada@example.com")
    response = await client.post(
        "/api/v1/auth/login", data={"username": username, "password": password}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "incorrect e-mail or password"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_me_without_or_with_a_bad_token_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/auth/me")).status_code == 401
    garbage = await client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-jwt"})
    assert garbage.status_code == 401
    assert garbage.headers["content-type"] == PROBLEM


async def test_expired_and_foreign_tokens_are_rejected(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await signup(client, "ada@example.com")
    secret = app.state.token_secret
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    expired = create_access_token(user["id"], secret, timedelta(minutes=60), now=long_ago)
    forged = create_access_token(user["id"], "some-other-secret-key-0123456789", timedelta(hours=1))
    valid = create_access_token(user["id"], secret, timedelta(minutes=60))
    for token, status in [(expired, 401), (forged, 401), (valid, 200)]:
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "password-123"}, "email"),
        ({"email": "short@example.com", "password": "short"}, "password"),
        ({"password": "password-123"}, "email"),
    ],
)
async def test_bad_signup_names_the_field(
    client: httpx.AsyncClient, body: dict, field: str
) -> None:
    response = await client.post("/api/v1/auth/signup", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert f"body.{field}" in response.json()["detail"]
