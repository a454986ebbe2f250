"""Seed data: the superuser from the settings and the seed's three recipes. Idempotent."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import crud
from .models import Recipe, User
from .schemas import RecipeCreate, UserCreate
from .security import Passwords
from .settings import RecipesSettings

RECIPES = (
    RecipeCreate(
        label="Chicken Vesuvio",
        source="Serious Eats",
        url="http://www.seriouseats.com/recipes/2011/12/chicken-vesuvio-recipe.html",
    ),
    RecipeCreate(
        label="Chicken Paprikash",
        source="No Recipes",
        url="http://norecipes.com/recipe/chicken-paprikash/",
    ),
    RecipeCreate(
        label="Cauliflower and Tofu Curry Recipe",
        source="Serious Eats",
        url="http://www.seriouseats.com/recipes/2011/02/cauliflower-and-tofu-curry-recipe.html",
    ),
)


@dataclass(frozen=True)
class SeedResult:
    """What a seed run added (zeros when everything was already there)."""

    superuser_created: bool
    recipes_created: int


def seed(
    sessions: sessionmaker[Session], settings: RecipesSettings, passwords: Passwords | None = None
) -> SeedResult:
    """Create the superuser and the sample recipes unless they exist; safe to run again."""
    if passwords is None:
        passwords = Passwords(settings.password_memory_kib, settings.password_time_cost)
    with sessions() as db:
        superuser, created = _ensure_superuser(db, settings, passwords)
        added = 0
        for recipe_in in RECIPES:
            url = str(recipe_in.url)
            if db.scalar(select(Recipe.id).where(Recipe.url == url)) is None:
                crud.recipe.create(db, recipe_in, submitter_id=superuser.id)
                added += 1
        return SeedResult(superuser_created=created, recipes_created=added)


def _ensure_superuser(
    db: Session, settings: RecipesSettings, passwords: Passwords
) -> tuple[User, bool]:
    existing = crud.user.get_by_email(db, settings.first_superuser)
    if existing is not None:
        return existing, False
    password = settings.first_superuser_password
    # Without a configured password nobody can sign in as the superuser, which is the safe default.
    secret = password.get_secret_value() if password else secrets.token_urlsafe(32)
    user_in = UserCreate(first_name="Admin", email=settings.first_superuser, password=secret)
    return crud.user.create_user(db, user_in, passwords, is_superuser=True), True
