"""The developer portal at ``/portal``: catalogue, sign-up/sign-in, keys, usage, admin pages."""

from __future__ import annotations

from tollway.portal.app import create_portal

__all__ = ["create_portal"]
