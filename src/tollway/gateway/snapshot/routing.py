"""Path normalisation and the immutable prefix route table.

Paths are normalised *before* matching, so what the gateway matches is exactly what it forwards:
``//`` collapses, ``.`` and ``..`` segments (also percent-encoded, ``%2e%2e``) are resolved, and
encoded slashes/backslashes/NULs (``%2f``, ``%5c``, ``%00``) are refused, because backends decode
them differently and they are the classic way to make a proxy and a backend disagree about which
resource is meant (e.g. CVE-2021-41773-style traversal). ``..`` above the root is refused too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

RouteT = TypeVar("RouteT")

_FORBIDDEN = (b"%2f", b"%5c", b"%00", b"\\", b"\x00")
_DOT_SEGMENTS = {b".": 1, b"%2e": 1, b"..": 2, b".%2e": 2, b"%2e.": 2, b"%2e%2e": 2}


def normalise_path(raw: bytes) -> bytes | None:
    """Return the normalised raw (still percent-encoded) path, or None if it must be refused."""
    if not raw.startswith(b"/"):
        return None
    if b"%" not in raw and b"/." not in raw and b"//" not in raw and b"\\" not in raw:
        return raw  # the common case: nothing to normalise
    lowered = raw.lower()
    if any(bad in lowered for bad in _FORBIDDEN):
        return None
    stack: list[bytes] = []
    segments = raw.split(b"/")
    for segment in segments:
        dots = _DOT_SEGMENTS.get(segment.lower()) if len(segment) <= 6 else None
        if not segment or dots == 1:
            continue
        if dots == 2:
            if not stack:
                return None
            stack.pop()
        else:
            stack.append(segment)
    trailing = raw.endswith(b"/") or segments[-1].lower() in _DOT_SEGMENTS
    if not stack:
        return b"/"
    return b"/" + b"/".join(stack) + (b"/" if trailing else b"")


@dataclass(frozen=True, slots=True)
class Operation:
    """One allowed method + path template of an API (``GET /items/{id}``)."""

    method: str
    template: str
    pattern: re.Pattern[bytes] | None
    policies: tuple[Any, ...] = ()

    def matches(self, method: str, path: bytes) -> bool:
        head_of_get = self.method == "GET" and method == "HEAD"
        if self.method not in ("*", method) and not head_of_get:
            return False
        if self.pattern is None:
            return path == self.template.encode()
        return self.pattern.fullmatch(path) is not None


def compile_operation(method: str, template: str, policies: tuple[Any, ...] = ()) -> Operation:
    """Compile ``/items/{id}`` to a matcher of one path segment per ``{name}``."""
    if "{" not in template:
        return Operation(method, template, None, policies)
    parts = re.split(r"(\{[^}/]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p)
    return Operation(method, template, re.compile(regex.encode()), policies)


@dataclass(frozen=True, slots=True)
class OperationTable:
    """The allow-list of an API; exact paths are a dict hit, templates a short scan."""

    exact: dict[tuple[str, bytes], Operation]
    templated: tuple[Operation, ...]

    @classmethod
    def build(cls, operations: Iterable[Operation]) -> OperationTable:
        exact: dict[tuple[str, bytes], Operation] = {}
        templated: list[Operation] = []
        for op in operations:
            if op.pattern is None and op.method != "*":
                exact[(op.method, op.template.encode())] = op
                if op.method == "GET":
                    exact.setdefault(("HEAD", op.template.encode()), op)
            else:
                templated.append(op)
        return cls(exact, tuple(templated))

    def find(self, method: str, path: bytes) -> Operation | None:
        op = self.exact.get((method, path))
        if op is not None:
            return op
        for candidate in self.templated:
            if candidate.matches(method, path):
                return candidate
        return None


@dataclass(slots=True)
class RouteTable(Generic[RouteT]):
    """Longest-prefix match over whole path segments, in at most ``max_depth`` dict lookups."""

    routes: dict[bytes, RouteT] = field(default_factory=dict)
    max_depth: int = 0

    def add(self, prefix: str, route: RouteT) -> None:
        key = prefix.rstrip("/").encode()
        self.routes[key] = route
        self.max_depth = max(self.max_depth, key.count(b"/"))

    def match(self, path: bytes) -> tuple[RouteT, bytes] | None:
        """Return the route and the rest of the path (``/`` at least) for a normalised path."""
        cuts: list[int] = []
        position = 0
        for _ in range(self.max_depth):
            position = path.find(b"/", position + 1)
            if position == -1:
                cuts.append(len(path))
                break
            cuts.append(position)
        for cut in reversed(cuts):
            route = self.routes.get(path[:cut])
            if route is not None:
                return route, path[cut:] or b"/"
        return None
