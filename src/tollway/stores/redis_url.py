"""The forms of ``TOLLWAY_REDIS_URL`` and what they mean, checked once at start-up.

- ``redis://[[user]:password@]host:port/db`` - one Redis server (``unix:///path.sock?db=0`` too);
- ``rediss://...`` - the same over TLS;
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db]`` - the master
  that Redis Sentinel names, found again after a fail-over (``rediss+sentinel://``: TLS to the
  sentinels and the servers);
- ``redis+cluster://[[user]:password@]host:port[,host:port...]`` - a Redis Cluster, any of its
  nodes to start from (``rediss+cluster://``: TLS).

TLS options go in the query string: ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` (paths),
``ssl_cert_reqs`` (``required``, the default, ``optional`` or ``none``), ``ssl_check_hostname``
(``true``/``false``). Sentinels that want a password of their own take ``sentinel_username`` /
``sentinel_password``. Anything else is refused here, by name, rather than when Redis is first
called: a typo must not show up as a failing rate limit at the first request.

Error messages never repeat the URL (it may hold a password).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from redis.connection import URL_QUERY_ARGUMENT_PARSERS

from tollway.errors import UserError

SSL_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
CERT_REQS = ("required", "optional", "none")
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
OPTIONS = (*SSL_FILES, "ssl_cert_reqs", "ssl_check_hostname", "sentinel_username",
           "sentinel_password")  # fmt: skip
MODES = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
FORMS = (
    "redis://host:6379/0, rediss://host:6380/0?ssl_ca_certs=/path/ca.pem, "
    "redis+sentinel://host:26379,host:26380/master-name/0 or redis+cluster://host:7000,host:7001"
)


class BadRedisURL(UserError, ValueError):
    """TOLLWAY_REDIS_URL cannot be used; the message says what to fix (the CLI prints it)."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is and how to talk to it (what redis-py's clients take as keywords)."""

    mode: str  # "single", "sentinel" or "cluster"
    tls: bool
    nodes: list[tuple[str, int]]  # sentinels or cluster nodes (empty for "single")
    service: str = ""  # the sentinel master name
    db: int = 0
    auth: dict[str, str] = field(default_factory=dict)  # username/password for the servers
    sentinel_auth: dict[str, str] = field(default_factory=dict)
    ssl: dict[str, Any] = field(default_factory=dict)  # ssl=True and the ssl_* options


def parse(url: str) -> RedisTarget:
    """The target ``url`` names, or :class:`BadRedisURL` saying what to fix (without the URL
    itself)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in MODES:
        shown = scheme if sep else "(no scheme)"
        raise BadRedisURL(f"unsupported Redis URL scheme {shown!r}: use memory:// or {FORMS}")
    mode, tls = MODES[scheme.lower()]
    rest, _, query = rest.partition("?")
    options = _options(query, tls, mode)
    if mode == "single":
        return RedisTarget(mode, tls, [], ssl=options["ssl"])
    location, _, path = rest.partition("/")
    credentials, at, hosts = location.rpartition("@")
    auth: dict[str, str] = {}
    if at:
        username, colon, password = credentials.partition(":")
        if not colon:  # (user@host means a password alone, like redis-py's redis://:pw@host)
            username, password = "", username
        if username:
            auth["username"] = unquote(username)
        if password:
            auth["password"] = unquote(password)
    nodes = [_node(item, scheme) for item in hosts.split(",")]
    parts = [unquote(p) for p in path.split("/") if p]
    service, db = "", 0
    if mode == "sentinel":
        if not parts or len(parts) > 2:
            raise BadRedisURL(
                f"{scheme}:// needs the master name after the hosts: "
                f"{scheme}://host:26379[,host:26379]/master-name[/db]"
            )
        service = parts[0]
        db = _db(parts[1] if len(parts) == 2 else "0", scheme)
    elif parts and (len(parts) > 1 or _db(parts[0], scheme) != 0):
        raise BadRedisURL(f"{scheme}:// has database 0 only (Redis Cluster has no other)")
    return RedisTarget(
        mode,
        tls,
        nodes,
        service,
        db,
        auth,
        sentinel_auth=options["sentinel"],
        ssl=options["ssl"],
    )


def _node(item: str, scheme: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if item.startswith("["):  # [::1]:26379
        host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRedisURL(f"{scheme}:// lists hosts as host:port[,host:port...], not {item!r}")
    return host, int(port)


def _db(text: str, scheme: str) -> int:
    if not text.isdigit():
        raise BadRedisURL(f"{scheme}:// database must be a number, not {text!r}")
    return int(text)


def _options(query: str, tls: bool, mode: str) -> dict[str, dict[str, Any]]:
    ssl: dict[str, Any] = {"ssl": True} if tls else {}
    sentinel: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in OPTIONS:
            if mode == "single" and name in URL_QUERY_ARGUMENT_PARSERS:
                continue  # redis-py's own options (db=, socket_timeout=...) stay its business
            raise BadRedisURL(f"unknown Redis URL option {name!r}: use {', '.join(OPTIONS)}")
        if name.startswith("sentinel_"):
            if mode != "sentinel":
                raise BadRedisURL(f"{name} applies to redis+sentinel:// URLs only")
            sentinel[name.removeprefix("sentinel_")] = value
            continue
        if not tls:
            raise BadRedisURL(f"{name} needs TLS: use rediss:// (or rediss+sentinel://, ...)")
        if name in SSL_FILES:
            if not os.path.isfile(value):
                raise BadRedisURL(f"Redis URL option {name}: no such file {value!r}")
            ssl[name] = value
        elif name == "ssl_cert_reqs":
            if value not in CERT_REQS:  # (as redis-py reads it: lower case)
                raise BadRedisURL(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
            ssl[name] = value
        else:
            if value.lower() not in BOOLEANS:
                raise BadRedisURL(f"{name} must be true or false")
            ssl[name] = BOOLEANS[value.lower()]
    if "ssl_keyfile" in ssl and "ssl_certfile" not in ssl:
        raise BadRedisURL("ssl_keyfile needs ssl_certfile (the client certificate)")
    return {"ssl": ssl, "sentinel": sentinel}
