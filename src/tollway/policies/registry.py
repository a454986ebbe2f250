"""Where policy kinds register their config models, so ``tollway.yaml`` can validate them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

POLICY_MODELS: dict[str, type[BaseModel]] = {}


def register(kind: str, model: type[BaseModel]) -> None:
    POLICY_MODELS[kind] = model


def validate_policy(entry: dict[str, Any]) -> dict[str, Any]:
    """Check one policy entry (``{"type": ..., **options}``) and return it normalised."""
    kind = entry.get("type")
    if not isinstance(kind, str):
        raise ValueError("each policy needs a 'type'")
    model = POLICY_MODELS.get(kind)
    if model is None:
        known = ", ".join(sorted(POLICY_MODELS)) or "none are installed yet"
        raise ValueError(f"unknown policy type {kind!r} (known types: {known})")
    options = {k: v for k, v in entry.items() if k != "type"}
    return {"type": kind, **model.model_validate(options).model_dump(mode="json")}
