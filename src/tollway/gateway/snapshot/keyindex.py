"""In-memory index of active subscription keys: SHA-256 digest -> who the key belongs to.

Built for millions of keys (issue 17; docs/performance.md "A million keys"):

- **Compact.** Each key is one dict entry from its 32-byte digest to one int that packs the
  subscription, product and user ids (the two keys of a subscription share that int). No object
  per subscription, nothing the garbage collector has to scan (bytes and ints are not tracked).
- **Sharded.** 256 dicts chosen by the digest's first byte: each stays small, so growing one
  never holds the interpreter for long while a loader thread builds an index next to the
  event loop (resizing one 2M-entry dict takes ~100 ms in a single step).
- **Updated in place**, by one writer at a time (the loader, serialised by the gateway's
  refresh lock): a change costs O(its keys), never a copy. Readers on the event loop stay
  consistent because every entry is one immutable int set or removed in one dict operation.
- **Config-free.** The index holds product ids, not API ids: which APIs a product opens is
  read from the current routes at request time, so a config change leaves the index alone.

To remove a subscription's old keys the writer keeps, per subscription id, references to its
digests (the same bytes objects the dicts hold) in two lists indexed by subscription id: 16
bytes per id up to the highest active one, ids being a dense autoincrement sequence (10 million
subscriptions ever created cost 160 MB here, however few are active).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tollway.grants import Grant

_BITS = 48
_MASK = (1 << _BITS) - 1
_SHARDS = 256


@dataclass(frozen=True, slots=True)
class IndexedSubscription:
    """A subscription as the index needs it; ``active`` covers its user's state too."""

    subscription_id: int
    user_id: int
    product_id: int
    active: bool
    digests: tuple[bytes, ...]


_new_grant = tuple.__new__  # (Grant's own constructor costs a Python call more)


class KeyIndex:
    """Digest -> :class:`Grant` for every key of every active subscription of an active user."""

    __slots__ = ("_primary", "_secondary", "_shards")

    def __init__(self, highest_id: int = 0) -> None:
        self._shards: list[dict[bytes, int]] = [{} for _ in range(_SHARDS)]
        self._primary: list[bytes | None] = [None] * (highest_id + 1)  # (writer side only)
        self._secondary: list[bytes | None] = [None] * (highest_id + 1)

    def __len__(self) -> int:
        """How many keys the index holds."""
        return sum(len(shard) for shard in self._shards)

    def lookup(self, digest: bytes) -> Grant | None:
        """The grant of a key's digest: one dict hit, then a tuple made from the packed ids
        (~0.1 µs more than handing out a stored object; a cache of made grants cost more than
        it saved when keys are many and calls spread over them)."""
        packed = self._shards[digest[0]].get(digest)
        if packed is None:
            return None
        return _new_grant(Grant, (packed & _MASK, packed >> (2 * _BITS), (packed >> _BITS) & _MASK))

    def product_of(self, subscription_id: int) -> int | None:
        """The product of an indexed subscription (None when it has no keys here)."""
        digest = self._digest_of(self._primary, subscription_id)
        if digest is None:
            return None
        packed = self._shards[digest[0]].get(digest)
        return None if packed is None else (packed >> _BITS) & _MASK

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> int:
        """Add active subscriptions as rows of (subscription id, user id, product id, primary
        digest, secondary digest), the digests in hex as stored: the bulk path of a full load.
        Returns how many. (``_put`` inlined: this loop runs once per subscription.)"""
        shards, primary, secondary = self._shards, self._primary, self._secondary
        fromhex = bytes.fromhex
        added = 0
        for sid, uid, pid, first_hex, second_hex in rows:
            if sid >= len(primary):
                self._grow(sid)
            if (sid | uid | pid) >> _BITS:  # (negative or too large for their field)
                raise ValueError(f"ids out of range for the key index: subscription {sid}")
            packed = sid | pid << _BITS | uid << (2 * _BITS)
            first, second = fromhex(first_hex), fromhex(second_hex)
            shards[first[0]][first] = packed
            shards[second[0]][second] = packed
            primary[sid], secondary[sid] = first, second
            added += 1
        return added

    def _put(self, sid: int, uid: int, pid: int, first: bytes, second: bytes) -> None:
        if sid >= len(self._primary):
            self._grow(sid)
        if (sid | uid | pid) >> _BITS:
            raise ValueError(f"ids out of range for the key index: subscription {sid}")
        packed = sid | pid << _BITS | uid << (2 * _BITS)
        self._shards[first[0]][first] = packed
        self._shards[second[0]][second] = packed
        self._primary[sid], self._secondary[sid] = first, second

    def apply(self, subscriptions: Iterable[IndexedSubscription]) -> int:
        """Replace these subscriptions' keys in place (remove them when inactive). Returns how
        many subscriptions were touched. New entries go in before old ones leave, so a key that
        stays (the secondary, when the primary is regenerated) never misses a lookup."""
        touched = 0
        for sub in subscriptions:
            touched += 1
            sid = sub.subscription_id
            old = (self._digest_of(self._primary, sid), self._digest_of(self._secondary, sid))
            new: tuple[bytes, ...] = ()
            if sub.active and sub.digests:
                new = (sub.digests[0], sub.digests[-1])
                self._put(sid, sub.user_id, sub.product_id, new[0], new[1])
            elif old != (None, None):
                self._primary[sid] = self._secondary[sid] = None
            for digest in old:
                if digest is not None and digest not in new:
                    self._shards[digest[0]].pop(digest, None)
        return touched

    def drop_products(self, product_ids: frozenset[int]) -> int:
        """Remove every key of these (deleted) products' subscriptions; a scan, for the rare
        config change that deletes a product. Returns how many subscriptions went."""
        dropped = 0
        for sid in range(len(self._primary)):
            if self._primary[sid] is not None and self.product_of(sid) in product_ids:
                self._remove(sid)
                dropped += 1
        return dropped

    def dispose(self) -> None:
        """Free the index in small steps (call in a worker thread once nothing reads it):
        dropping it in one go would free millions of objects while holding the interpreter."""
        for shard in self._shards:
            shard.clear()
        for column in (self._primary, self._secondary):
            while column:
                del column[-65536:]

    def _remove(self, subscription_id: int) -> None:
        for column in (self._primary, self._secondary):
            digest = column[subscription_id]
            if digest is not None:
                self._shards[digest[0]].pop(digest, None)
                column[subscription_id] = None

    @staticmethod
    def _digest_of(column: list[bytes | None], subscription_id: int) -> bytes | None:
        return column[subscription_id] if 0 <= subscription_id < len(column) else None

    def _grow(self, subscription_id: int) -> None:
        more = max(subscription_id + 1 - len(self._primary), len(self._primary) // 4, 1024)
        self._primary.extend([None] * more)
        self._secondary.extend([None] * more)
