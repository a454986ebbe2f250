"""Recipes: read, search, submit, change and delete your own, and ideas from elsewhere."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from .. import crud
from ..deps import CurrentUser, HttpClientDep, SessionDep, SettingsDep
from ..ideas import fetch_ideas
from ..models import Recipe, User
from ..problems import Problem, problem_responses
from ..schemas import IdeasPublic, RecipeCreate, RecipePublic, RecipeSearchResults, RecipeUpdate

router = APIRouter()

RecipeId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The recipe's id.")]
OWNED = problem_responses(400, 401, 403, 404, 422)


def _found(recipe: Recipe | None, recipe_id: int) -> Recipe:
    if recipe is None:
        raise Problem(404, "recipe-not-found", f"no recipe with id {recipe_id}")
    return recipe


def _owned(recipe: Recipe | None, recipe_id: int, user: User) -> Recipe:
    found = _found(recipe, recipe_id)
    if found.submitter_id != user.id:
        raise Problem(403, "not-your-recipe", f"recipe {recipe_id} was submitted by someone else")
    return found


@router.get("/search/", response_model=RecipeSearchResults, responses=problem_responses(422))
def search_recipes(
    db: SessionDep,
    keyword: Annotated[
        str | None, Query(max_length=100, description="Part of the label; empty: all.")
    ] = None,
    max_results: Annotated[int, Query(ge=1, le=100)] = 10,
) -> RecipeSearchResults:
    """Recipes whose label contains ``keyword`` (any case); without a keyword, all of them."""
    found = crud.recipe.search(db, keyword, max_results)
    return RecipeSearchResults(results=[RecipePublic.model_validate(r) for r in found])


@router.get("/my-recipes/", response_model=RecipeSearchResults, responses=problem_responses(401))
def my_recipes(db: SessionDep, current_user: CurrentUser) -> RecipeSearchResults:
    """The recipes the signed-in user submitted."""
    found = crud.recipe.by_submitter(db, current_user.id)
    return RecipeSearchResults(results=[RecipePublic.model_validate(r) for r in found])


@router.get("/ideas/", response_model=IdeasPublic, responses=problem_responses(401, 502, 504))
async def recipe_ideas(
    current_user: CurrentUser, client: HttpClientDep, settings: SettingsDep
) -> IdeasPublic:
    """Top posts from the configured ideas sources (``RECIPES_IDEAS_SOURCES``), fetched at once."""
    return await fetch_ideas(client, settings.ideas_sources, settings.ideas_timeout)


@router.get("/{recipe_id}", response_model=RecipePublic, responses=problem_responses(404, 422))
def read_recipe(recipe_id: RecipeId, db: SessionDep) -> Recipe:
    """One recipe by id."""
    return _found(crud.recipe.get(db, recipe_id), recipe_id)


@router.post(
    "/", status_code=201, response_model=RecipePublic, responses=problem_responses(400, 401, 422)
)
def create_recipe(recipe_in: RecipeCreate, db: SessionDep, current_user: CurrentUser) -> Recipe:
    """Submit a recipe; the submitter is the signed-in user."""
    return crud.recipe.create(db, recipe_in, submitter_id=current_user.id)


@router.put("/{recipe_id}", response_model=RecipePublic, responses=OWNED)
def update_recipe(
    recipe_id: RecipeId, recipe_in: RecipeUpdate, db: SessionDep, current_user: CurrentUser
) -> Recipe:
    """Change one of your own recipes (404 when missing, 403 when someone else's)."""
    recipe = _owned(crud.recipe.get(db, recipe_id), recipe_id, current_user)
    return crud.recipe.update(db, recipe, recipe_in)


@router.delete("/{recipe_id}", status_code=204, response_class=Response, responses=OWNED)
def delete_recipe(recipe_id: RecipeId, db: SessionDep, current_user: CurrentUser) -> None:
    """Delete one of your own recipes (404 when missing, 403 when someone else's)."""
    recipe = _owned(crud.recipe.get(db, recipe_id), recipe_id, current_user)
    crud.recipe.remove(db, recipe)
