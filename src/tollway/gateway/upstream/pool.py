"""A backend's targets: which one takes a call, retries on connect failure, active health checks.

``url:`` alone is a pool of one target. Each call asks the pool for a connection
(:meth:`Pool.take_idle`, else :meth:`Pool.connect`), which picks among the targets in rotation by
``balance``: smooth weighted round-robin (nginx's), or least connections in flight relative to
the weight. A target whose connect fails is reported (passive health) and, with ``retries``, the
call goes to another target: nothing was sent yet, so this is safe for every method. When every
target is out of rotation the pool raises :class:`NoTargetAvailable` at once (the gateway answers
503 with ``Retry-After``). TLS settings apply to every target of the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tollway.gateway.upstream.client import (
    Exchange,
    NoTargetAvailable,
    Origin,
    UpstreamConnection,
    UpstreamError,
)
from tollway.gateway.upstream.health import CLOSED, BreakerSettings, HealthSettings, TargetState
from tollway.policies.base import Reject
from tollway.problems import BACKEND_UNAVAILABLE

logger = logging.getLogger("tollway.gateway")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """A backend's targets and how calls reach them (the ``backends`` config, parsed)."""

    targets: tuple[tuple[str, int], ...]  # (url, weight)
    balance: str = "round-robin"
    health: HealthSettings | None = None
    breaker: BreakerSettings | None = None
    retries: int = 0
    tls: TlsSettings | None = None
    max_idle_seconds: float | None = None
    max_requests: int | None = None


def backend_unavailable(error: NoTargetAvailable) -> Reject:
    """The 503 a client gets when every target is out of rotation (both transports)."""
    retry_after = (b"retry-after", str(error.retry_after).encode())
    return Reject(BACKEND_UNAVAILABLE, headers=[retry_after])


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """The client TLS context for a backend (raises OSError/ssl.SSLError on unusable files)."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class Pool:
    """The targets of one backend and the choice among them."""

    def __init__(
        self,
        name: str,
        settings: PoolSettings,
        *,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.name = name
        self.settings = settings
        tls = settings.tls
        watched = settings.health is not None or settings.breaker is not None
        self.targets = [
            Origin(
                url,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                ssl_context=ssl_context,
                server_name=tls.server_name if tls else None,
                max_idle_seconds=settings.max_idle_seconds,
                max_requests=settings.max_requests,
                weight=weight,
                state=TargetState(
                    f"backend {name}, target {_address(url)}", settings.health, settings.breaker
                )
                if watched
                else None,
            )
            for url, weight in settings.targets
        ]
        self.primary = self.targets[0]
        # One target that is never out of rotation: no choice to make (the common case).
        self.single = self.primary if len(self.targets) == 1 and not watched else None
        self.least_connections = settings.balance == "least-connections"
        self.retries = settings.retries
        self._checker: asyncio.Task[None] | None = None

    # choosing a target ------------------------------------------------------------------------
    def _choose(self, candidates: list[Origin]) -> Origin | None:
        """The candidate the next call goes to (the choice is made by :meth:`_advance`)."""
        best: Origin | None = None
        best_key: tuple[float, int] = (0.0, 0)
        for target in candidates:
            load = target.active / target.weight if self.least_connections else 0.0
            key = (load, -(target.current + target.weight))
            if best is None or key < best_key:
                best, best_key = target, key
        return best

    @staticmethod
    def _advance(candidates: list[Origin], chosen: Origin) -> None:
        """Smooth weighted round-robin: every candidate gains its weight, the chosen one pays
        the total, so over a run each gets its share, interleaved."""
        total = 0
        for target in candidates:
            target.current += target.weight
            total += target.weight
        chosen.current -= total

    def pick(self, tried: Iterable[Origin] = ()) -> Origin:
        """The target for a call (a half-open circuit's one trial call included)."""
        skip = set(map(id, tried))
        candidates = [
            target
            for target in self.targets
            if id(target) not in skip and (target.state is None or target.state.available())
        ]
        chosen = self._choose(candidates)
        if chosen is None:
            raise NoTargetAvailable(
                f"backend {self.name!r}: every target is out of rotation", self.retry_after()
            )
        self._advance(candidates, chosen)
        if chosen.state is not None:
            chosen.state.take_trial()
        return chosen

    def retry_after(self) -> int:
        return min(
            (target.state.retry_after() for target in self.targets if target.state is not None),
            default=1,
        )

    def take_idle(self) -> UpstreamConnection | None:
        """An idle connection of the target the next call goes to, if it has one.

        The choice is only made (round-robin advanced) when a connection is returned; otherwise
        :meth:`connect` makes it, so every call counts once for the weights.
        """
        single = self.single
        if single is not None:
            return single.take_idle()
        candidates = [
            target
            for target in self.targets
            if target.state is None or (target.state.up and target.state.circuit == CLOSED)
        ]
        target = self._choose(candidates)
        if target is None or not target._idle:
            return None
        connection = target.take_idle()
        if connection is not None:
            self._advance(candidates, target)
        return connection

    async def connect(self) -> UpstreamConnection:
        """A new connection to a chosen target; on a connect failure, up to ``retries`` others."""
        single = self.single
        if single is not None:
            return await single.connect()
        tried: list[Origin] = []
        error: UpstreamError | None = None
        for _ in range(self.retries + 1):
            try:
                target = self.pick(tried)
            except NoTargetAvailable:
                if error is not None:
                    raise error from None
                raise
            try:
                return await target.connect()
            except UpstreamError as exc:
                if error is None and self.retries:
                    where = _address(target.url)
                    logger.warning("backend %s: %s (%s); trying another", self.name, exc, where)
                error = exc
                tried.append(target)
        assert error is not None
        raise error

    def release(self, connection: UpstreamConnection) -> None:
        owner = connection.owner
        assert owner is not None
        owner.release(connection)

    # active health checks -------------------------------------------------------------------
    def start(self, headers: bytes = b"") -> None:
        """Start the active health checks; probes carry ``headers`` (the backend's own lines)."""
        if self.settings.health is not None and self._checker is None:
            self._checker = asyncio.create_task(self._check_forever(self.settings.health, headers))

    async def stop(self) -> None:
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
        for target in self.targets:
            target.close()

    async def _check_forever(self, health: HealthSettings, headers: bytes) -> None:
        while True:
            probes = (self._probe(target, health, headers) for target in self.targets)
            await asyncio.gather(*probes)
            await asyncio.sleep(health.interval)

    async def _probe(self, target: Origin, health: HealthSettings, headers: bytes) -> None:
        state = target.state
        assert state is not None
        ok = False
        connection: UpstreamConnection | None = None
        try:
            async with asyncio.timeout(health.timeout):
                connection = await target.open(report=False)
                exchange = Exchange(target, connection, head_only=False)
                exchange.write(
                    b"GET %b%b HTTP/1.1\r\nhost: %b\r\nuser-agent: tollway-health-check\r\n"
                    b"%bconnection: close\r\n\r\n"
                    % (target.base_path, health.path.encode(), target.host_header, headers)
                )
                status, _ = await exchange.response_head()
                ok = 200 <= status < 400
        except (UpstreamError, TimeoutError):
            ok = False
        finally:
            if connection is not None:
                connection.close()
        state.probe(ok)

    def describe(self) -> list[dict[str, object]]:
        """Each target's state, for ``/-/ready``: numbered in config order (from 1), without
        its address (the page is public; the log names addresses)."""
        return [
            {
                "target": number,
                "weight": target.weight,
                **(target.state.describe() if target.state is not None else {}),
            }
            for number, target in enumerate(self.targets, 1)
        ]


def _address(url: str) -> str:
    """A target URL for the log: scheme, host and port (never user:password@)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
