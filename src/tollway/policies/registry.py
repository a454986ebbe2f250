"""Where policy kinds register: their config model (for ``tollway.yaml``) and their class.

Lookups that need every built-in kind registered are in :mod:`tollway.policies.kinds`, which
imports them all; this module imports none, so a kind can import it without a cycle.
"""

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
