"""Clocks that tests control, for code that takes an injectable clock."""

from __future__ import annotations


class Ticking:
    """A clock that moves on by ``step`` seconds each time it is read (0.25 is exact in binary)."""

    def __init__(self, step: float = 0.25) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now
