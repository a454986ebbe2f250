"""set-header: set or remove request headers sent to the backend and response headers sent
to the client. Values may reference named values: ``x-functions-key: "{{function-app-key}}"``
injects a backend credential the client never sees.

Secret named values are only ever sent to backends: a response header referring to one is
refused when the config is loaded (and never resolved).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from tollway.policies.base import PolicyConfig, RequestContext
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register
from tollway.types import Headers

_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_REFERENCE = re.compile(r"\{\{\s*([a-z0-9][a-z0-9_-]*)\s*\}\}")
_PROTECTED = {b"host", b"content-length", b"transfer-encoding", b"connection"}


class SetHeaderConfig(PolicyConfig):
    request: dict[str, str] = Field(
        default_factory=dict, description="Headers set on the request to the backend."
    )
    request_remove: list[str] = Field(default_factory=list, description="Request headers dropped.")
    response: dict[str, str] = Field(
        default_factory=dict, description="Headers set on the response to the client."
    )
    response_remove: list[str] = Field(
        default_factory=list, description="Response headers dropped."
    )

    @field_validator("request", "response")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            _check_name(name)
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r}: values cannot contain line breaks")
        return value

    @field_validator("request_remove", "response_remove")
    @classmethod
    def _removals(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_name(name)
        return value


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid header name")
    if name.lower().encode() in _PROTECTED:
        raise ValueError(f"{name!r} is managed by the gateway and cannot be set")


def _resolve(text: str, context: BuildContext, *, allow_secrets: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in context.named_values:
            raise ValueError(f"{context.scope}: no named value {name!r}")
        if not allow_secrets and name in context.secret_names:
            raise ValueError(
                f"{context.scope}: secret named value {name!r} cannot go in a response header"
            )
        return context.named_values[name]

    return _REFERENCE.sub(replace, text)


def _encode(headers: dict[str, str], context: BuildContext, *, allow_secrets: bool) -> Headers:
    return [
        (name.lower().encode(), _resolve(value, context, allow_secrets=allow_secrets).encode())
        for name, value in headers.items()
    ]


class SetHeaderPolicy:
    kind = "set-header"
    phase = Phase.REQUEST_EDIT
    slot = "header_edits"
    merge = Merge.EVERY

    def __init__(self, config: SetHeaderConfig, context: BuildContext) -> None:
        self.request = _encode(config.request, context, allow_secrets=True)
        self.response = _encode(config.response, context, allow_secrets=False)
        self.request_drop = {n.lower().encode() for n in config.request_remove} | {
            n for n, _ in self.request
        }
        self.response_drop = {n.lower().encode() for n in config.response_remove} | {
            n for n, _ in self.response
        }

    def edit_request(self, headers: Headers, ctx: RequestContext) -> Headers:
        return [h for h in headers if h[0] not in self.request_drop] + self.request

    def edit_response(self, headers: Headers) -> Headers:
        return [h for h in headers if h[0] not in self.response_drop] + self.response


register("set-header", SetHeaderConfig, SetHeaderPolicy)
