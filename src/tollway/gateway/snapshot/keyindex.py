"""In-memory index of active subscription keys: SHA-256 digest -> what the key grants.

Lookups are one dict hit; updates are copy-on-write so a request never sees a half-applied change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tollway.grants import Grant


@dataclass(frozen=True, slots=True)
class IndexedSubscription:
    """A subscription as the index needs it; ``active`` covers its user's state too."""

    subscription_id: int
    user_id: int
    product_id: int
    active: bool
    digests: tuple[bytes, ...]


class KeyIndex:
    """Digest -> :class:`Grant` for every key of every active subscription of an active user."""

    __slots__ = ("_by_digest", "_digests_of")

    def __init__(
        self,
        by_digest: dict[bytes, Grant] | None = None,
        digests_of: dict[int, tuple[bytes, ...]] | None = None,
    ) -> None:
        self._by_digest = by_digest or {}
        self._digests_of = digests_of or {}

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, digest: bytes) -> Grant | None:
        return self._by_digest.get(digest)

    @classmethod
    def build(
        cls,
        subscriptions: Iterable[IndexedSubscription],
        product_apis: Mapping[int, frozenset[int]],
    ) -> KeyIndex:
        index = cls()
        index._apply(subscriptions, product_apis)
        return index

    def updated(
        self,
        subscriptions: Iterable[IndexedSubscription],
        product_apis: Mapping[int, frozenset[int]],
    ) -> KeyIndex:
        """A new index with these subscriptions replaced (or removed when inactive)."""
        index = KeyIndex(dict(self._by_digest), dict(self._digests_of))
        index._apply(subscriptions, product_apis)
        return index

    def _apply(
        self,
        subscriptions: Iterable[IndexedSubscription],
        product_apis: Mapping[int, frozenset[int]],
    ) -> None:
        for sub in subscriptions:
            for digest in self._digests_of.pop(sub.subscription_id, ()):
                self._by_digest.pop(digest, None)
            if not sub.active:
                continue
            grant = Grant(
                sub.subscription_id,
                sub.user_id,
                sub.product_id,
                product_apis.get(sub.product_id, frozenset()),
            )
            for digest in sub.digests:
                self._by_digest[digest] = grant
            self._digests_of[sub.subscription_id] = sub.digests
