"""Settings for the recipes sample, read from ``RECIPES_*`` environment variables or ``.env``."""

from __future__ import annotations

from typing import Annotated

from pydantic import EmailStr, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The seed's three subreddits, as reddit's public JSON listing of the day's top posts.
DEFAULT_IDEAS_SOURCES = [
    f"https://www.reddit.com/r/{name}/top.json?sort=top&t=day&limit=5"
    for name in ("recipes", "easyrecipes", "TopSecretRecipes")
]


class RecipesSettings(BaseSettings):
    """Everything the recipes API reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="RECIPES_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        "sqlite:///./recipes-demo.db",
        description="SQLAlchemy URL of the recipes database (SQLite file or PostgreSQL).",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Signs access tokens. Unset: a random key per process (tokens end on restart).",
    )
    access_token_expire_minutes: int = Field(60, gt=0, description="Lifetime of access tokens.")
    password_memory_kib: int = Field(
        65536, ge=64, description="Argon2 memory cost per password hash, in KiB."
    )
    password_time_cost: int = Field(3, ge=1, description="Argon2 passes per password hash.")
    first_superuser: EmailStr = Field(
        "admin@recipeapi.com", description="E-mail of the superuser the seed creates."
    )
    first_superuser_password: SecretStr | None = Field(
        None,
        min_length=8,
        description="Password of the seeded superuser. Unset: a random one nobody knows.",
    )
    ideas_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_IDEAS_SOURCES),
        description="URLs (comma-separated in the environment) returning reddit-like JSON.",
    )
    ideas_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for all ideas sources together."
    )
    migrate_on_startup: bool = Field(True, description="Run the Alembic migrations on start.")
    seed_on_startup: bool = Field(True, description="Create the superuser and sample recipes.")

    @field_validator("ideas_sources", mode="before")
    @classmethod
    def _split_sources(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
