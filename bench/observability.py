"""What observability adds to one API call, measured on the calls themselves (issue 12).

    .venv/bin/python bench/observability.py

Times, per call and without sockets (so the figure is not lost in wrk's noise):

- **metrics**: ``Observer.call`` as ``Gateway.record_exchange`` runs it for a forwarded call with
  the access log and spans off (one requests counter, two histograms, two byte counters, through
  the API's cached children), in one process and in multiprocess mode (``--workers N``);
- **ids**: a call's ``CallTrace`` (request id and trace context, made by ``prepare_request``) and
  the ``traceparent`` header value;
- **json log** and **span**: ``Observer.call`` with ``TOLLWAY_ACCESS_LOG=json`` (logger
  disabled: formatting only) and with a span queued (export off).

Each figure is the best of 7 runs of 100,000 calls, in CPU time of the process. Prints the load
average first: figures from a busy machine are upper bounds.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
import timeit

N = 100_000
REPEAT = 7


def per_call(statement: object) -> float:
    """Best µs per call of ``statement`` (a callable)."""
    # CPU time of this process, not wall time: on a shared machine, time spent descheduled is
    # not the call's cost.
    runs = timeit.repeat(statement, number=N, repeat=REPEAT, timer=time.process_time)  # type: ignore[call-overload]
    return min(runs) / N * 1e6


def measure() -> dict[str, float]:
    from tollway.gateway.calltrace import CallTrace
    from tollway.gateway.recording.observe import Observer
    from tollway.gateway.snapshot.state import Route
    from tollway.gateway.upstream.backends import HttpBackend
    from tollway.gateway.upstream.pool import PoolSettings
    from tollway.grants import Grant
    from tollway.policies.base import RequestContext
    from tollway.settings import Settings

    backend = HttpBackend(
        "bench",
        PoolSettings(targets=(("http://127.0.0.1:9/", 1),)),
        connect_timeout=1,
        read_timeout=1,
        preserve_host=False,
        headers=[],
    )
    route = Route(
        api_id=1,
        name="names",
        title="Names",
        description="",
        prefix="/names",
        prefix_bytes=b"/names",
        backend=backend,
        subscription_required=True,
        key_header=b"x-api-key",
        key_header_name="X-API-Key",
        key_query=b"subscription-key",
        operations=None,
        openapi=None,
        published=True,
        products=frozenset({1}),
        product_names={1: "starter"},
    )
    grant = Grant(subscription_id=3, user_id=1, product_id=1)
    trace = CallTrace(b"/generate")
    trace.begin(None, None)
    trace.ctx = RequestContext("GET", b"/generate", [], "127.0.0.1", 1, 0.0, grant)
    trace.upstream_s = 0.0004
    figures = {}
    plain = Observer(Settings())  # type: ignore[call-arg]
    figures["metrics"] = per_call(
        lambda: plain.call(route, 3, 200, 0, 1234, 0.9, "GET", "127.0.0.1", trace)
    )

    def new_trace() -> bytes:
        fresh = CallTrace(b"/generate")
        fresh.begin(None, None)
        return fresh.traceparent()

    figures["ids"] = per_call(new_trace)
    logging.getLogger("tollway.access").disabled = True
    as_json = Observer(Settings(access_log="json"))  # type: ignore[call-arg]
    figures["metrics + json log"] = per_call(
        lambda: as_json.call(route, 3, 200, 0, 1234, 0.9, "GET", "127.0.0.1", trace)
    )
    traced = Observer(Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:9"))  # type: ignore[call-arg]
    assert traced.spans is not None
    queue = traced.spans.queue  # (the thread is not started: spans only queue up)
    figures["metrics + span queued"] = per_call(
        lambda: traced.call(route, 3, 200, 0, 1234, 0.9, "GET", "127.0.0.1", trace)
    )
    queue.clear()
    return figures


def main() -> None:
    if "--child" in sys.argv:
        for name, value in measure().items():
            print(f"{name}\t{value:.2f}")
        return
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = {}
    for mode in ("one process", "multiprocess (--workers N)"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory() as directory:
            if mode.startswith("multi"):
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        results[mode] = dict(line.split("\t") for line in out.splitlines())
    names = list(next(iter(results.values())))
    print(f"{'µs per call':28}" + "".join(f"{mode:>30}" for mode in results))
    for name in names:
        print(f"{name:28}" + "".join(f"{results[mode][name]:>30}" for mode in results))


if __name__ == "__main__":
    main()
