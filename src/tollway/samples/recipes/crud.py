"""Create/read/update/delete helpers: a generic base and one subclass per model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import Base
from .models import Recipe, User
from .schemas import RecipeCreate, RecipeUpdate, UserCreate
from .security import Passwords

ModelT = TypeVar("ModelT", bound=Base)
CreateT = TypeVar("CreateT", bound=BaseModel)
UpdateT = TypeVar("UpdateT", bound=BaseModel)


class CRUDBase(Generic[ModelT, CreateT, UpdateT]):
    """Generic database operations for one model; subclasses only name the model and schemas."""

    def __init__(self, model: type[ModelT]) -> None:
        self.model = model

    def get(self, db: Session, id_: int) -> ModelT | None:
        """The row with primary key ``id_``, or None."""
        return db.get(self.model, id_)

    def get_multi(self, db: Session, *, skip: int = 0, limit: int = 100) -> Sequence[ModelT]:
        """Rows in primary key order, paged."""
        query = select(self.model).order_by(self.model.id).offset(skip).limit(limit)  # type: ignore[attr-defined]
        return db.scalars(query).all()

    def create(self, db: Session, obj_in: CreateT, **extra: Any) -> ModelT:
        """Insert a row from ``obj_in`` (JSON-compatible values) plus ``extra`` columns."""
        row = self.model(**obj_in.model_dump(mode="json"), **extra)
        db.add(row)
        db.commit()
        db.refresh(row)
        return row

    def update(self, db: Session, row: ModelT, obj_in: UpdateT) -> ModelT:
        """Apply the fields set in ``obj_in`` to ``row``."""
        for field, value in obj_in.model_dump(mode="json", exclude_unset=True).items():
            if value is not None:
                setattr(row, field, value)
        db.commit()
        db.refresh(row)
        return row

    def remove(self, db: Session, row: ModelT) -> None:
        """Delete ``row``."""
        db.delete(row)
        db.commit()


class CRUDUser(CRUDBase[User, UserCreate, BaseModel]):
    """Users: looked up by e-mail, created with a hashed password and never as superuser."""

    def get_by_email(self, db: Session, email: str) -> User | None:
        """The user with this e-mail, compared case-insensitively."""
        return db.scalar(select(User).where(func.lower(User.email) == email.lower()))

    def create_user(
        self, db: Session, obj_in: UserCreate, passwords: Passwords, *, is_superuser: bool = False
    ) -> User:
        """A new user; ``is_superuser`` comes from the seed's settings, never from input."""
        data = obj_in.model_dump(exclude={"password"})
        data["email"] = data["email"].lower()
        hashed = passwords.hash(obj_in.password)
        row = User(**data, hashed_password=hashed, is_superuser=is_superuser)
        db.add(row)
        db.commit()
        db.refresh(row)
        return row


class CRUDRecipe(CRUDBase[Recipe, RecipeCreate, RecipeUpdate]):
    """Recipes: searched by label and listed per submitter."""

    def search(self, db: Session, keyword: str | None, limit: int) -> Sequence[Recipe]:
        """Recipes whose label contains ``keyword`` (any case); all recipes when it is empty."""
        query = select(Recipe).order_by(Recipe.id).limit(limit)
        if keyword:
            # autoescape: a "%" or "_" in the keyword matches itself, not any character.
            query = query.where(Recipe.label.icontains(keyword, autoescape=True))
        return db.scalars(query).all()

    def by_submitter(self, db: Session, submitter_id: int) -> Sequence[Recipe]:
        """The recipes ``submitter_id`` submitted."""
        query = select(Recipe).where(Recipe.submitter_id == submitter_id).order_by(Recipe.id)
        return db.scalars(query).all()


user = CRUDUser(User)
recipe = CRUDRecipe(Recipe)
