"""Request ids and W3C trace context (gateway/calltrace.py), the JSON access log's output and the
workers' metrics directory: the rules, one by one (the behaviour over sockets is in
tests/policies/test_observability.py and tests/deploy/test_metrics_workers.py)."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from tollway import problems
from tollway.gateway.calltrace import CallTrace, parse_traceparent, sane_request_id
from tollway.gateway.recording import accesslog
from tollway.gateway.recording.metrics import MULTIPROC_ENV
from tollway.gateway.transport.http_refusals import Refusal
from tollway.server import shared_metrics_dir
from tollway.settings import Settings

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (VALID, (b"4bf92f3577b34da6a3ce929d0e0e4736", b"00f067aa0ba902b7", b"01")),
        (b" " + VALID + b" ", (b"4bf92f3577b34da6a3ce929d0e0e4736", b"00f067aa0ba902b7", b"01")),
        # a later version may carry more fields: its first four are read
        (b"cc" + VALID[2:] + b"-what-comes-next", (VALID[3:35], VALID[36:52], b"01")),
        (VALID + b"-extra", None),  # version 00 has exactly four fields
        (b"ff" + VALID[2:], None),  # version ff is invalid
        (VALID.upper(), None),  # lower-case hex only
        (b"00-" + b"0" * 32 + VALID[35:], None),  # all-zero trace id
        (VALID[:36] + b"0" * 16 + VALID[52:], None),  # all-zero parent id
        (VALID[:-1], None),
        (VALID.replace(b"-", b"_"), None),
        (b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", None),
        (b"", None),
    ],
)
def test_traceparent_parsing(value: bytes, parsed: tuple[bytes, bytes, bytes] | None) -> None:
    assert parse_traceparent(value) == parsed


@pytest.mark.parametrize(
    ("value", "sane"),
    [
        (b"abc-123", True),
        (b"0af7651916cd43dd8448eb211c80319c", True),
        (b"req:42/a+b=c@host_x.y", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"", False),
        (b"two words", False),
        (b"line\nbreak", False),
        (b'quote"d', False),
        (b"caf\xc3\xa9", False),
    ],
)
def test_request_ids_kept_only_when_sane(value: bytes, sane: bool) -> None:
    assert sane_request_id(value) is sane
    trace = CallTrace()
    trace.begin(value, None)
    assert (trace.request_id == value) is sane
    assert sane_request_id(trace.request_id)


def test_a_trace_is_continued_or_started() -> None:
    continued = CallTrace()
    continued.begin(None, VALID)
    assert continued.trace_id == VALID[3:35] and continued.parent_id == VALID[36:52]
    assert parse_traceparent(continued.traceparent()) == (
        continued.trace_id,
        continued.span_id,
        b"01",
    )
    assert continued.span_id != continued.parent_id
    assert continued.request_id != continued.trace_id  # (a trace spans many requests)
    started = CallTrace()
    started.begin(None, b"00-nonsense")
    assert started.parent_id is None and started.flags == b"01"
    assert started.request_id == started.trace_id  # one random draw for both
    unsampled = CallTrace()
    unsampled.begin(None, VALID[:-2] + b"00")
    assert unsampled.traceparent().endswith(b"-00")  # the client's decision is kept
    again = CallTrace()
    again.begin(None, None)
    assert again.trace_id != started.trace_id


def test_ensure_reads_the_client_headers_once() -> None:
    trace = CallTrace()
    assert trace.ensure([(b"x-request-id", b"from-client"), (b"traceparent", VALID)]) == (
        b"from-client"
    )
    assert trace.trace_id == VALID[3:35]
    assert trace.ensure([(b"x-request-id", b"other")]) == b"from-client"


def test_protocol_refusals_carry_a_request_id_of_their_own() -> None:
    head = Refusal(problems.BAD_PATH, "bad").response([]).split(b"\r\n\r\n")[0]
    (line,) = [line for line in head.split(b"\r\n") if line.startswith(b"x-request-id: ")]
    assert sane_request_id(line.removeprefix(b"x-request-id: "))


def test_access_log_setting_takes_true_false_and_json() -> None:
    assert Settings(access_log="JSON").access_log == "json"  # type: ignore[call-arg,arg-type]
    assert Settings(access_log="true").access_log is True  # type: ignore[call-arg,arg-type]
    with pytest.raises(ValidationError):
        Settings(access_log="yaml")  # type: ignore[call-arg,arg-type]
    with pytest.raises(ValidationError, match="otel-collector:4318"):
        Settings(otel_exporter_otlp_endpoint="otel-collector:4318")  # type: ignore[call-arg]


def test_json_lines_go_alone_to_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    logger = logging.getLogger("tollway.access")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    try:
        accesslog.json_lines_to_stdout()
        accesslog.json_lines_to_stdout()  # (once per process, however often it is asked)
        accesslog.api_call_json({"status": 200, "path": "/names"})
    finally:
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"status": 200, "path": "/names"}
    ]


def test_workers_get_a_fresh_metrics_directory_removed_at_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # (TMPDIR is read again)
    with shared_metrics_dir():
        directory = Path(os.environ[MULTIPROC_ENV])
        assert directory.parent == tmp_path and list(directory.iterdir()) == []
    assert MULTIPROC_ENV not in os.environ and not directory.exists()
    own = tmp_path / "operator"
    own.mkdir()
    monkeypatch.setenv(MULTIPROC_ENV, str(own))
    with shared_metrics_dir():
        assert os.environ[MULTIPROC_ENV] == str(own)
    assert own.exists()  # the operator's directory is left alone
