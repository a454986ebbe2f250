"""Checks on untrusted payload fields before they reach the callback or the deploy command.

Repository and tag names follow Docker's reference grammar (distribution/reference): lowercase
path components joined by ``/``, separators ``.``, ``_``, ``__`` or dashes between alphanumerics,
and tags of at most 128 word characters, dots and dashes not starting with either. Nothing that a
shell or ``docker`` could read as an option (``-``), a substitution (``$(``), a separator (``;``)
or a path escape can pass.
"""

from __future__ import annotations

import re

import httpx

from tollway.samples.webhook.models import Payload

PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_NAME = re.compile(rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*", re.ASCII)
COMPONENT = re.compile(PATH_COMPONENT, re.ASCII)
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
MAX_REPO_NAME = 255


class RejectedPayload(Exception):
    """The payload cannot be acted on; ``detail`` says which field and why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def check_names(payload: Payload) -> None:
    """Raise ``RejectedPayload`` unless repo name, namespace, name and tag are Docker names."""
    repo = payload.repository
    if len(repo.repo_name) > MAX_REPO_NAME or not REPO_NAME.fullmatch(repo.repo_name):
        raise RejectedPayload(
            "invalid-repository",
            f"repository.repo_name {repo.repo_name!r} is not a valid Docker repository name "
            "(lowercase letters, digits and . _ - separators, components joined by /)",
        )
    for field, value in (("namespace", repo.namespace), ("name", repo.name)):
        if not COMPONENT.fullmatch(value):
            raise RejectedPayload(
                "invalid-repository",
                f"repository.{field} {value!r} is not a valid Docker name component",
            )
    if repo.repo_name != f"{repo.namespace}/{repo.name}":
        raise RejectedPayload(
            "invalid-repository",
            "repository.repo_name must be repository.namespace + '/' + repository.name",
        )
    if not TAG.fullmatch(payload.push_data.tag):
        raise RejectedPayload(
            "invalid-repository",
            f"push_data.tag {payload.push_data.tag!r} is not a valid Docker tag "
            "(up to 128 letters, digits, _ . -, not starting with . or -)",
        )


def host_port(host: str, port: int) -> str:
    """How ``callback_hosts`` names one port of a host: ``host:port``, ``[v6addr]:port``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_callback_url(url: str, allowed_hosts: list[str], *, https_only: bool) -> httpx.URL:
    """The parsed callback URL; raises ``RejectedPayload`` unless its host and port are allowed.

    This keeps the endpoint from being used to make the server call arbitrary URLs (SSRF): a
    bare entry in ``allowed_hosts`` allows port 443 of that host only (so an allowed host's
    other services stay out of reach); ``host:port`` allows that one port.
    """
    try:
        parsed = httpx.URL(url)
        port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme, 0)
    except (httpx.InvalidURL, ValueError) as exc:
        raise RejectedPayload("callback-not-allowed", "callback_url is not a valid URL") from exc
    schemes = {"https"} if https_only else {"https", "http"}
    if parsed.scheme not in schemes:
        wanted = " or ".join(sorted(schemes))
        raise RejectedPayload("callback-not-allowed", f"callback_url must use {wanted}")
    host = parsed.host.lower()
    exact = host_port(host, port) in allowed_hosts
    if parsed.userinfo or not (exact or host in allowed_hosts):
        raise RejectedPayload(
            "callback-not-allowed",
            f"callback_url host {parsed.host!r} is not an allowed callback host",
        )
    if port != 443 and not exact:
        raise RejectedPayload(
            "callback-not-allowed",
            f"callback_url port {port} is not allowed: callbacks go to port 443 unless "
            "WEBHOOK_CALLBACK_HOSTS names host:port",
        )
    return parsed
