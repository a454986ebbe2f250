"""SQLAlchemy models: users and the recipes they submit."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base


class User(Base):
    """A person who can sign in and submit recipes."""

    __tablename__ = "recipe_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str | None] = mapped_column(String(256))
    surname: Mapped[str | None] = mapped_column(String(256))
    # Unique in the database, not only checked by the signup route (the seed's race).
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    hashed_password: Mapped[str] = mapped_column(String(256))

    recipes: Mapped[list[Recipe]] = relationship(
        back_populates="submitter", cascade="all, delete-orphan"
    )


class Recipe(Base):
    """A recipe: a label and a link to where it is published."""

    __tablename__ = "recipes"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(256), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    source: Mapped[str] = mapped_column(String(256))
    submitter_id: Mapped[int] = mapped_column(ForeignKey("recipe_users.id", ondelete="CASCADE"))

    submitter: Mapped[User] = relationship(back_populates="recipes")
