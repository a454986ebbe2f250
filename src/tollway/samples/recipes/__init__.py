"""The recipes sample API (seed 004, "FastAPI in production"), with the seed's bugs fixed.

Run it alone with ``uvicorn tollway.samples.recipes:app`` (settings from ``RECIPES_*`` variables
or ``.env``), or put it behind the gateway as the in-process backend
``tollway.samples.recipes:app``. ``python -m tollway.samples.recipes migrate|seed`` prepares a
database without serving.
"""

from __future__ import annotations

from .app import create_app
from .settings import RecipesSettings

__all__ = ["RecipesSettings", "app", "create_app"]

# Built from the environment; nothing connects until the lifespan starts.
app = create_app(RecipesSettings())
