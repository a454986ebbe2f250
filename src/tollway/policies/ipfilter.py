"""ip-filter: allow and/or deny clients by address or CIDR range (IPv4 and IPv6).

The client address is the socket peer, or the one from ``X-Forwarded-For`` only when the peer
is in ``TOLLWAY_TRUSTED_PROXIES`` (so a spoofed header from anyone else changes nothing).
Produces: 403 ``/-/problems/ip-forbidden``. ``deny`` wins over ``allow``; with an ``allow``
list, everything not on it is denied.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, field_validator

from tollway.policies.base import PolicyConfig, Reject, RequestContext
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register
from tollway.problems import IP_FORBIDDEN

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpFilterConfig(PolicyConfig):
    allow: list[str] = Field(
        default_factory=list, description="Addresses/CIDRs allowed (empty: everyone)."
    )
    deny: list[str] = Field(default_factory=list, description="Addresses/CIDRs refused.")

    @field_validator("allow", "deny")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address or CIDR range (e.g. 10.0.0.0/8)"
                ) from None
        return values


class IpFilterPolicy:
    kind = "ip-filter"
    phase = Phase.ACCESS
    slot = "ip_filters"
    merge = Merge.EVERY

    def __init__(self, config: IpFilterConfig, context: BuildContext) -> None:
        self.allow = tuple(ipaddress.ip_network(v, strict=False) for v in config.allow)
        self.deny = tuple(ipaddress.ip_network(v, strict=False) for v in config.deny)

    def check_access(self, ctx: RequestContext) -> Reject | None:
        try:
            address: Any = ipaddress.ip_address(ctx.client_ip)
        except ValueError:
            return Reject(IP_FORBIDDEN)
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.deny):
            return Reject(IP_FORBIDDEN)
        if self.allow and not any(address in net for net in self.allow):
            return Reject(IP_FORBIDDEN)
        return None


register("ip-filter", IpFilterConfig, IpFilterPolicy)
