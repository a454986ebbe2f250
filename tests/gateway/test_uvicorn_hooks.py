"""uvicorn coupling (issue 10, item 7): the transport checks uvicorn's hooks at start-up.

A uvicorn release that renames a member only the fast transport uses must not break requests:
the fast transport turns itself off with one warning and every request takes the ASGI
transport. A release without what the request limits need stops ``tollway serve`` with a
clear message instead of serving without them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.flow_control import FlowControl

from tollway.errors import UserError
from tollway.gateway.exchange.gateway import Gateway
from tollway.gateway.transport import uvicorn_hooks
from tollway.samples.echo import app as echo_app
from tollway.server import serve
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..servers import free_port, serve_gateway, serve_in_thread
from .conftest import SECRET, apply
from .test_sockets import socket_config


class RenamedFlowControl(FlowControl):
    """uvicorn's flow control with ``write_paused`` renamed, as a release might rename it."""

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.writing_paused = vars(self).pop("write_paused")

    def pause_writing(self) -> None:
        if not self.writing_paused:
            self.writing_paused = True
            self._is_writable_event.clear()

    def resume_writing(self) -> None:
        if self.writing_paused:
            self.writing_paused = False
            self._is_writable_event.set()


class UpdatedUvicornFlowControl(RenamedFlowControl):
    """The renamed flow control, with uvicorn's own reads of the old name still answered (as
    uvicorn's code would be updated with the rename); the member itself is gone."""

    def __getattr__(self, name: str) -> Any:
        if name == "write_paused":
            return self.writing_paused
        raise AttributeError(name)


@pytest.fixture
def fresh_check() -> Iterator[None]:
    """Run the once-per-process check again (and leave it fresh for the next test)."""
    uvicorn_hooks.missing_hooks.cache_clear()
    uvicorn_hooks.fast_transport_usable.cache_clear()
    yield
    uvicorn_hooks.missing_hooks.cache_clear()
    uvicorn_hooks.fast_transport_usable.cache_clear()


@pytest.fixture
def gateway(sqlite_engine: Engine, sqlite_url: str) -> Iterator[Gateway]:
    with serve_in_thread(echo_app) as upstream:
        apply(sqlite_engine, socket_config(upstream))
        settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
        yield create_gateway(settings, engine=sqlite_engine)


def test_a_renamed_member_only_the_fast_path_reads_is_found(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httptools_impl, "FlowControl", RenamedFlowControl)
    missing = uvicorn_hooks.missing_hooks()
    assert missing.fast == ("flow.write_paused",)
    assert missing.guarded == ()


def test_the_installed_uvicorn_has_every_hook(fresh_check: None) -> None:
    assert uvicorn_hooks.missing_hooks() == uvicorn_hooks.MissingHooks((), ())


# Fast transport only: the ASGI transport uses none of the hooks being taken away here.
def test_uvicorn_without_a_fast_path_hook_serves_on_the_asgi_transport_with_one_warning(
    gateway: Gateway,
    fresh_check: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(httptools_impl, "FlowControl", UpdatedUvicornFlowControl)
    caplog.set_level(logging.WARNING, logger="tollway.gateway")
    with serve_gateway(gateway, "fast") as base:
        for _ in range(3):  # a new connection each time
            ok = httpx.get(f"{base}/open/hello", headers={"Connection": "close"}, timeout=10)
            assert ok.status_code == 200
        slow = httpx.get(f"{base}/open/slow?seconds=3", timeout=10)
        assert slow.status_code == 504
        assert slow.json()["type"] == "/-/problems/backend-timeout"
    warnings = [r.getMessage() for r in caplog.records if "fast transport off" in r.getMessage()]
    assert len(warnings) == 1
    assert "flow.write_paused" in warnings[0]
    assert "ASGI transport" in warnings[0]


def test_uvicorn_without_a_hook_the_request_limits_need_stops_tollway_serve(
    sqlite_url: str, fresh_check: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(httptools_impl.HttpToolsProtocol, "_should_upgrade")
    settings = Settings(database_url=sqlite_url, secret_key=SECRET, port=free_port())  # type: ignore[arg-type]
    with pytest.raises(UserError) as refused:
        serve(settings)
    assert "protocol._should_upgrade" in str(refused.value)
    assert "requirements.lock" in str(refused.value)
