"""The recipes API's routers: versioned ``/api/v1`` endpoints and the unversioned HTML page."""

from __future__ import annotations

from fastapi import APIRouter

from . import auth, recipes

API_V1 = "/api/v1"

api_router = APIRouter(prefix=API_V1)
api_router.include_router(auth.router, prefix="/auth", tags=["auth"])
api_router.include_router(recipes.router, prefix="/recipes", tags=["recipes"])
