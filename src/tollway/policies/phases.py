"""The order in which policies act on a request, declared once (Kong's plugin priorities are
the model), and how several policies of one kind from different scopes combine.

Every policy class names its ``phase``, the ``slot`` of the compiled chain it fills and how it
``merge``\\ s with others of its kind; ``tollway.policies.chain.compile_chain`` builds each
route's chain from these declarations alone, and the gateway runs the phases in this order on
both transports:

=============  ====================  =======================================================
phase          policy kinds          what happens
=============  ====================  =======================================================
PREFLIGHT      cors                  an ``OPTIONS`` preflight is answered (204), no key needed
ACCESS         ip-filter             403 for addresses outside the filter (API scope before
                                     the key is checked, product scope after)
(key)          -                     401/403: the subscription key and product access
AUTHENTICATE   validate-jwt          401 for a missing or invalid token; claims to headers
BODY           request-size-limit    413 for a declared length over the limit (and as a
                                     chunked body crosses it)
LIMITS         rate-limit, quota     one store round trip for all of them; 429/403 and
                                     RateLimit headers
CACHE          cache                 a hit is answered by the gateway; a miss is stored
REQUEST_EDIT   set-header            request headers for the backend (response edits after)
FORWARD        timeout               the wait for the backend's response head
SESSION        websocket             limits of an upgraded WebSocket session (idle, size,
                                     lifetime, message rate): close codes, not answers
=============  ====================  =======================================================

After the response: set-header's response edits, CORS and RateLimit headers, the cache store,
then recording (usage, byte quotas, access log).
"""

from __future__ import annotations

from enum import Enum, IntEnum


class Phase(IntEnum):
    """When a policy acts; lower runs first."""

    PREFLIGHT = 10
    ACCESS = 20
    AUTHENTICATE = 30
    BODY = 40
    LIMITS = 50
    CACHE = 60
    REQUEST_EDIT = 70
    FORWARD = 80
    SESSION = 90


class Merge(Enum):
    """How policies of one kind from several scopes (global -> product -> API -> operation)
    combine into one chain slot."""

    EVERY = "every"  # all of them apply, general scopes first
    MOST_SPECIFIC = "most-specific"  # the most specific scope's policy wins
    SMALLEST = "smallest"  # the smallest ``value`` wins (limits that only tighten)
