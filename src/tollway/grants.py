"""What an active subscription key grants: shared by the gateway's key index and the policies.

Kept outside ``gateway/`` so policies (which read a request's grant) need nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Grant:
    """Who an active key belongs to. Which APIs it opens is its product's, read from the
    current config at request time (``Route.products``), so config changes need no key reload."""

    subscription_id: int
    user_id: int
    product_id: int
