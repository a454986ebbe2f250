"""What an active subscription key grants: shared by the gateway's key index and the policies.

Kept outside ``gateway/`` so policies (which read a request's grant) need nothing from it.
"""

from __future__ import annotations

from typing import NamedTuple


class Grant(NamedTuple):
    """Who an active key belongs to. Which APIs it opens is its product's, read from the
    current config at request time (``Route.products``), so config changes need no key reload.

    A named tuple: the key index makes one per lookup from three packed ids, and a tuple is
    the cheapest immutable record to make."""

    subscription_id: int
    user_id: int
    product_id: int
