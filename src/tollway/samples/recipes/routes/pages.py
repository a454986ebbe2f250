"""The unversioned HTML home page listing recipes (Jinja2, autoescaped)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from .. import crud
from ..deps import SessionDep

# Jinja2Templates autoescapes .html templates: recipe labels are user input.
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request, db: SessionDep) -> HTMLResponse:
    """An HTML page listing the first 50 recipes."""
    recipes = crud.recipe.get_multi(db, limit=50)
    return templates.TemplateResponse(request, "index.html", {"recipes": recipes})
