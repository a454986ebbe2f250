"""FastAPI dependencies: settings, database session, HTTP client and the signed-in user.

Each reads what the app factory put on ``app.state``, so tests swap any of them with
``app.dependency_overrides`` (as the seed does for the database and the reddit client).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from . import crud
from .models import User
from .problems import Problem
from .security import Passwords, token_subject
from .settings import RecipesSettings

LOGIN_PATH = "/api/v1/auth/login"
# auto_error=False: a missing token is reported by get_current_user as a problem+json 401.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=LOGIN_PATH, auto_error=False)


def get_settings(request: Request) -> RecipesSettings:
    """The settings the app was built with."""
    settings: RecipesSettings = request.app.state.settings
    return settings


def get_secret(request: Request) -> str:
    """The key that signs access tokens."""
    secret: str = request.app.state.token_secret
    return secret


def get_passwords(request: Request) -> Passwords:
    """The app's password hasher."""
    passwords: Passwords = request.app.state.passwords
    return passwords


def get_db(request: Request) -> Iterator[Session]:
    """A database session for one request, closed afterwards."""
    with request.app.state.sessions() as session:
        yield session


def get_http_client(request: Request) -> httpx.AsyncClient:
    """The app's shared HTTP client (made and closed by the lifespan)."""
    client: httpx.AsyncClient = request.app.state.http_client
    return client


SettingsDep = Annotated[RecipesSettings, Depends(get_settings)]
SecretDep = Annotated[str, Depends(get_secret)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
SessionDep = Annotated[Session, Depends(get_db)]
HttpClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]
TokenDep = Annotated[str | None, Depends(oauth2_scheme)]


def get_current_user(db: SessionDep, secret: SecretDep, token: TokenDep) -> User:
    """The user named by a valid bearer token; 401 otherwise."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if not token:
        raise Problem(
            401, "not-authenticated", "sign in first: send Authorization: Bearer <token>", challenge
        )
    user_id = token_subject(token, secret)
    user = crud.user.get(db, user_id) if user_id is not None else None
    if user is None:
        raise Problem(
            401, "invalid-token", "the access token is invalid or expired; log in again", challenge
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
