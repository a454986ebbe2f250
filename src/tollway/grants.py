"""What an active subscription key grants: shared by the gateway's key index and the policies.

Kept outside ``gateway/`` so policies (which read a request's grant) need nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Grant:
    """What one active key allows: the APIs of its subscription's product."""

    subscription_id: int
    user_id: int
    product_id: int
    api_ids: frozenset[int]
