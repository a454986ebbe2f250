"""Pydantic schemas: what the API accepts and returns, separate from the database models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl

# Request bodies reject unknown fields, so a signup cannot smuggle in ``is_superuser``.
STRICT_INPUT = ConfigDict(extra="forbid")


class UserCreate(BaseModel):
    """Signup form. There is deliberately no ``is_superuser`` field: the seed let callers set it."""

    model_config = STRICT_INPUT

    first_name: str | None = Field(None, max_length=256, examples=["Ada"])
    surname: str | None = Field(None, max_length=256, examples=["Lovelace"])
    email: EmailStr = Field(max_length=320, examples=["ada@example.com"])
    password: str = Field(min_length=8, max_length=256, description="At least 8 characters.")


class UserPublic(BaseModel):
    """A user as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    first_name: str | None
    surname: str | None
    email: str
    is_superuser: bool


class Token(BaseModel):
    """An OAuth2 bearer access token."""

    access_token: str
    token_type: str = Field("bearer", examples=["bearer"])


class RecipeCreate(BaseModel):
    """A new recipe; the submitter is whoever is signed in."""

    model_config = STRICT_INPUT

    label: str = Field(min_length=1, max_length=256, examples=["Chicken Vesuvio"])
    source: str = Field(min_length=1, max_length=256, examples=["Serious Eats"])
    url: HttpUrl = Field(max_length=2000, examples=["https://example.com/chicken-vesuvio"])


class RecipeUpdate(BaseModel):
    """Changes to a recipe; fields left out stay as they are."""

    model_config = STRICT_INPUT

    label: str | None = Field(None, min_length=1, max_length=256)
    source: str | None = Field(None, min_length=1, max_length=256)
    url: HttpUrl | None = Field(None, max_length=2000)


class RecipePublic(BaseModel):
    """A recipe as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    label: str
    source: str
    url: str
    submitter_id: int


class RecipeSearchResults(BaseModel):
    """Recipes matching a search."""

    results: list[RecipePublic]


class IdeaPublic(BaseModel):
    """One top post from an ideas source."""

    title: str
    score: int
    url: str


class IdeaSourcePublic(BaseModel):
    """The top posts of one ideas source."""

    source: str = Field(description="The URL the ideas came from.")
    ideas: list[IdeaPublic]


class IdeasPublic(BaseModel):
    """Recipe ideas from every configured source, in configuration order."""

    sources: list[IdeaSourcePublic]


class ProblemOut(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(description="Stable URI identifying the problem.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
