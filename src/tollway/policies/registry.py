"""Where policy kinds register: their config model (for ``tollway.yaml``) and their class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

POLICY_MODELS: dict[str, type[BaseModel]] = {}
POLICY_BUILDERS: dict[str, Callable[[Any, BuildContext], Any]] = {}


@dataclass(frozen=True)
class BuildContext:
    """What a policy may use when it is built (once per config snapshot)."""

    uid: str  # stable across processes: names its counters and cache entries
    scope: str  # "global", "product:<name>", "api:<name>", "operation:<api> <METHOD> <path>"
    named_values: dict[str, str]
    secret_names: frozenset[str] = frozenset()


def register(
    kind: str, model: type[BaseModel], builder: Callable[[Any, BuildContext], Any]
) -> None:
    POLICY_MODELS[kind] = model
    POLICY_BUILDERS[kind] = builder


def validate_policy(entry: dict[str, Any]) -> dict[str, Any]:
    """Check one policy entry (``{"type": ..., **options}``) and return it normalised."""
    _load_all()
    kind = entry.get("type")
    if not isinstance(kind, str):
        raise ValueError("each policy needs a 'type'")
    model = POLICY_MODELS.get(kind)
    if model is None:
        known = ", ".join(sorted(POLICY_MODELS)) or "none are installed yet"
        raise ValueError(f"unknown policy type {kind!r} (known types: {known})")
    options = {k: v for k, v in entry.items() if k != "type"}
    parsed = model.model_validate(options)  # ValidationError: the loader names each option
    return {"type": kind, **parsed.model_dump(mode="json", exclude_unset=True)}


def build_policy(entry: dict[str, Any], context: BuildContext) -> Any:
    """The policy object for a stored (already validated) entry."""
    _load_all()
    kind = entry["type"]
    options = {k: v for k, v in entry.items() if k != "type"}
    return POLICY_BUILDERS[kind](POLICY_MODELS[kind].model_validate(options), context)


def _load_all() -> None:
    import tollway.policies.all  # noqa: F401  (registers every built-in policy)
