"""The parts of uvicorn that Tollway's transport relies on, checked once at start-up.

``GuardedProtocol`` and ``GatewayProtocol`` subclass uvicorn's ``HttpToolsProtocol`` and use
members that are not uvicorn's public API, and ``FastExchange`` stands in for uvicorn's
``RequestResponseCycle``; ``GatewayWebSocketProtocol`` extends uvicorn's
``WebSocketsSansIOProtocol``. ``pyproject.toml`` bounds uvicorn to the range the socket tests run
against; this check catches an install outside it (issue 10, item 7):

- a hook only the fast transport uses is missing: fast routing is turned off, with one warning,
  and every request takes the ASGI transport, still through ``GuardedProtocol``, so the request
  limits, client timeouts and connection cap keep holding (the safe fallback);
- a hook ``GuardedProtocol`` or ``GatewayWebSocketProtocol`` uses is missing: the server refuses
  to start. Falling back to uvicorn's own protocols would drop those limits (and the WebSocket
  sessions' place under the connection cap) silently (docs/security.md), so it is not done.

The check looks for names; it cannot see a hook whose meaning changed under the same name, or a
new attribute uvicorn starts to read from its cycle. The version bound is the first line of
defence, the socket tests (both transports) the second.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from tollway.errors import UserError

logger = logging.getLogger("tollway.gateway")

# Members of a uvicorn HttpToolsProtocol (after __init__, connection_made and on_message_begin).
GUARDED_PROTOCOL_HOOKS = (
    # state GuardedProtocol reads or writes
    "app",
    "loop",
    "transport",
    "parser",
    "flow",
    "cycle",
    "pipeline",
    "server_state",
    "url",
    "headers",
    "expect_100_continue",
    "timeout_keep_alive",
    # methods it extends (super()) or calls
    "connection_made",
    "connection_lost",
    "handle_websocket_upgrade",
    "on_message_begin",
    "on_header",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
    "_unset_keepalive_if_required",
    "_should_upgrade",
    "_unsupported_upgrade_warning",
)
FAST_PROTOCOL_HOOKS = (
    "client",
    "scheme",
    "tasks",
    "on_body",
    "pause_writing",
    "resume_writing",
)
# Members of uvicorn's FlowControl (``protocol.flow``).
GUARDED_FLOW_HOOKS = ("read_paused", "pause_reading", "resume_reading")
FAST_FLOW_HOOKS = ("write_paused",)
# Members of uvicorn's ServerState (``protocol.server_state``).
GUARDED_SERVER_HOOKS = ("default_headers",)
# Attributes of uvicorn's RequestResponseCycle that its protocol reads from ``protocol.cycle``;
# a FastExchange provides them in its place.
FAST_CYCLE_HOOKS = ("response_complete", "keep_alive", "disconnected", "message_event")
GUARDED_CYCLE_HOOKS = ("response_started", "waiting_for_100_continue")
# Members of uvicorn's WebSocketsSansIOProtocol that GatewayWebSocketProtocol
# (``transport/websocket.py``) reads, writes or extends: the connection cap and the 1001 close.
WEBSOCKET_HOOKS = (
    "loop",
    "transport",
    "queue",
    "conn",
    "logger",
    "handshake_complete",
    "close_sent",
    "connection_made",
    "connection_lost",
    "shutdown",
    "stop_keepalive",
)


@dataclass(frozen=True)
class MissingHooks:
    """What the installed uvicorn lacks, by who needs it."""

    guarded: tuple[str, ...]  # GuardedProtocol, both transports: cannot serve safely
    fast: tuple[str, ...]  # the fast transport only: fall back to the ASGI transport


@functools.cache
def missing_hooks() -> MissingHooks:
    """Compare the installed uvicorn with the hooks above (once per process)."""
    names = _names()
    guarded = _missing(names, "protocol", GUARDED_PROTOCOL_HOOKS)
    guarded += _missing(names, "flow", GUARDED_FLOW_HOOKS)
    guarded += _missing(names, "server_state", GUARDED_SERVER_HOOKS)
    guarded += _missing(names, "cycle", GUARDED_CYCLE_HOOKS)
    guarded += _missing(names, "websocket", WEBSOCKET_HOOKS)
    fast = _missing(names, "protocol", FAST_PROTOCOL_HOOKS)
    fast += _missing(names, "flow", FAST_FLOW_HOOKS)
    fast += _missing(names, "cycle", FAST_CYCLE_HOOKS)
    return MissingHooks(guarded, fast)


def check_protocol_hooks(fast_path: bool) -> None:
    """At start-up: refuse to serve without the hooks the request limits need, and warn now
    (not at the first connection) when the fast transport will be off."""
    missing = missing_hooks().guarded
    if missing:
        raise UserError(
            f"the installed uvicorn {_version()} lacks {', '.join(missing)}, which Tollway's HTTP "
            "protocol needs for its request limits: install the uvicorn version pinned in "
            "requirements.lock (pyproject.toml gives the supported range)"
        )
    if fast_path:
        fast_transport_usable()


@functools.cache
def fast_transport_usable() -> bool:
    """Whether the fast transport can run on the installed uvicorn (one warning if not)."""
    missing = missing_hooks()
    if missing.guarded or missing.fast:
        logger.warning(
            "fast transport off: the installed uvicorn %s lacks %s; every request takes the "
            "ASGI transport (same limits, more CPU per request). Install the uvicorn version "
            "pinned in requirements.lock to turn it back on",
            _version(),
            ", ".join(missing.guarded + missing.fast),
        )
        return False
    return True


def _missing(
    names: dict[str, frozenset[str]], where: str, hooks: tuple[str, ...]
) -> tuple[str, ...]:
    found = names.get(where, frozenset())
    return tuple(f"{where}.{name}" for name in hooks if name not in found)


def _names() -> dict[str, frozenset[str]]:
    """The members of each uvicorn object the transport touches, built as uvicorn builds them."""
    names: dict[str, frozenset[str]] = {}
    loop = asyncio.new_event_loop()
    try:
        state = ServerState()
        # (looked up where HttpToolsProtocol.connection_made finds it)
        flow = httptools_impl.FlowControl(_NoTransport())  # type: ignore[attr-defined,arg-type]
        names["server_state"] = frozenset(dir(state))
        names["flow"] = frozenset(dir(flow))
        config = Config(app=_no_app, http="httptools", lifespan="off", log_config=None)
        protocol = httptools_impl.HttpToolsProtocol(config, state, {}, _loop=loop)
        protocol.flow = flow
        protocol.on_message_begin()  # (sets url and headers, as for every request)
        names["protocol"] = frozenset(dir(protocol))
        websocket = WebSocketsSansIOProtocol(config, state, {}, _loop=loop)
        names["websocket"] = frozenset(dir(websocket))
    except Exception as exc:  # a changed constructor: what it was to build counts as missing
        logger.debug("uvicorn hook check: %r", exc)
    finally:
        loop.close()
    # The cycle: the attributes its constructor assigns (its signature changes between releases).
    names["cycle"] = frozenset(httptools_impl.RequestResponseCycle.__init__.__code__.co_names)
    return names


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """The app of the sample protocol (never called)."""


class _NoTransport:
    """A transport for the sample flow control (never used)."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _version() -> str:
    import uvicorn

    return str(uvicorn.__version__)
