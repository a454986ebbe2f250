"""Sign up, log in (OAuth2 password form) and ``/me``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.exc import IntegrityError

from .. import crud
from ..deps import CurrentUser, PasswordsDep, SecretDep, SessionDep, SettingsDep
from ..models import User
from ..problems import Problem, problem_responses
from ..schemas import Token, UserCreate, UserPublic
from ..security import create_access_token

router = APIRouter()


def _email_taken(email: str) -> Problem:
    return Problem(409, "email-taken", f"a user with e-mail {email} already exists")


@router.post(
    "/signup",
    status_code=201,
    response_model=UserPublic,
    responses=problem_responses(400, 409, 422),
)
def signup(user_in: UserCreate, db: SessionDep, passwords: PasswordsDep) -> User:
    """Create a user. Never a superuser: superusers come only from the seed settings."""
    if crud.user.get_by_email(db, user_in.email) is not None:
        raise _email_taken(user_in.email)
    try:
        return crud.user.create_user(db, user_in, passwords)
    except IntegrityError:
        # Two signups raced past the check above; the unique index decided.
        db.rollback()
        raise _email_taken(user_in.email) from None


@router.post("/login", response_model=Token, responses=problem_responses(400, 401, 422))
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: SessionDep,
    secret: SecretDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
) -> Token:
    """Exchange e-mail (``username``) and password for a bearer token."""
    user = crud.user.get_by_email(db, form.username)
    if not passwords.verify(form.password, user.hashed_password if user else None) or user is None:
        raise Problem(
            401, "bad-credentials", "incorrect e-mail or password", {"WWW-Authenticate": "Bearer"}
        )
    expires = timedelta(minutes=settings.access_token_expire_minutes)
    return Token(access_token=create_access_token(user.id, secret, expires), token_type="bearer")  # noqa: S106


@router.get("/me", response_model=UserPublic, responses=problem_responses(401))
def read_me(current_user: CurrentUser) -> User:
    """The signed-in user."""
    return current_user
