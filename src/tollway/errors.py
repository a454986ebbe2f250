"""Errors that carry a message meant for the person at the keyboard."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad input, missing thing); the CLI prints it as one line."""


class NotFound(UserError):
    """A named thing (user, subscription, API...) does not exist."""


class Conflict(UserError):
    """The change clashes with the current state (a name or path taken, a thing still in use,
    a state that does not allow it)."""
