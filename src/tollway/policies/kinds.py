"""Every built-in policy kind (each registers itself), and the lookups that need them all."""

from __future__ import annotations

from typing import Any

from tollway.policies import (
    cache,
    cors,
    ipfilter,
    jwt,
    quota,
    ratelimit,
    setheader,
    sizelimit,
    timeout,
    websocket,
)
from tollway.policies.registry import POLICY_BUILDERS, POLICY_MODELS, BuildContext

BUILT_IN = (cache, cors, ipfilter, jwt, quota, ratelimit, setheader, sizelimit, timeout, websocket)


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
    parsed = model.model_validate(options)  # ValidationError: the loader names each option
    return {"type": kind, **parsed.model_dump(mode="json", exclude_unset=True)}


def build_policy(entry: dict[str, Any], context: BuildContext) -> Any:
    """The policy object for a stored (already validated) entry."""
    kind = entry["type"]
    options = {k: v for k, v in entry.items() if k != "type"}
    return POLICY_BUILDERS[kind](POLICY_MODELS[kind].model_validate(options), context)
