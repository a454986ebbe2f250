"""Which reverse proxies to believe, and what they say about the client.

Shared by the gateway (``gateway.upstream.forwarding``) and the portal, so both resolve the client's
address and scheme the same way: ``X-Forwarded-For`` and ``X-Forwarded-Proto`` count only when
the connection comes from a configured trusted proxy (``TOLLWAY_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import ipaddress


class ProxyTrust:
    """Which peers may tell us the client's address; answers are cached per address."""

    def __init__(self, networks: list[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        known = self._cache.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
                known = any(ip in network for network in self.networks)
            except ValueError:
                known = False
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[address] = known
        return known

    def client_address(self, peer: str, forwarded_for: bytes | None) -> str:
        """The rightmost address in X-Forwarded-For that is not a trusted proxy."""
        if forwarded_for is None or not self.trusts(peer):
            return peer
        for hop in reversed(forwarded_for.decode("latin-1").split(",")):
            hop = hop.strip()
            if not hop:
                continue
            if not self.trusts(hop):
                return hop
        return peer

    def scheme(self, peer: str, scheme: str, forwarded_proto: bytes | None) -> str:
        """The scheme the client used: a trusted proxy's ``X-Forwarded-Proto``, else ours."""
        if forwarded_proto is None or not self.trusts(peer):
            return scheme
        # A proxy chain may append: the first value is what the client itself used.
        told = forwarded_proto.decode("latin-1").split(",")[0].strip().lower()
        return told if told in ("http", "https") else scheme
