"""Scale bench (issue 17): a gateway over N subscriptions, on SQLite and PostgreSQL.

For each store and each size it writes N subscriptions (two keys each) straight into Tollway's
schema (``bench/population.py``), starts ``tollway serve`` (one worker, memory stores, no access
log) in front of the bench upstream, keeps one client calling it with random keys of the
population (about 200 calls a second, one at a time: light load), and reports:

- **loop pause**: the longest an event loop in the bench's own process waits while a full load
  runs in a worker thread next to it, as in the gateway (a direct measure of item 3); three
  loads, the worst and the least of their longest pauses (on a busy machine the least is
  the code's, the worst mostly the neighbours');
- **start**: seconds from starting ``tollway serve`` until ``/-/ready`` answers 200, and the
  gateway's own "loaded N keys in X s";
- **RSS** of the gateway's process tree once ready, its peak and its value at the end;
- **CPU per request** in a quiet window (the client alone), from /proc;
- **config change** (``tollway apply`` adding an API to the population's product): seconds from
  the command's return until existing keys reach the new API, and the slowest call meanwhile;
- **key change** (``tollway subscription suspend``): seconds until the key is refused, slowest
  call;
- **full reload** (more changes at once than the gateway applies one by one: every key is read
  again while serving): seconds until the log says so, slowest call.

```sh
.venv/bin/python bench/scale.py                                  # 100,000 subscriptions
.venv/bin/python bench/scale.py --subscriptions 10,1000000 --stores sqlite
```

PostgreSQL: ``--postgres-url`` (default ``$TOLLWAY_TEST_POSTGRES_URL``); the bench works in a
fresh schema of that database and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import run as common  # bench/run.py: process handling shared with the throughput bench
from population import Population, populate
from sqlalchemy import Engine, insert, text

from tollway.crypto import SecretBox
from tollway.db.migrate import upgrade
from tollway.db.models import ChangeKind, ChangeLog
from tollway.db.session import make_engine, session_factory
from tollway.gateway.snapshot.refresh import MAX_INCREMENTAL, StateLoader

CONFIG = """\
backends:
  upstream: {{url: "http://127.0.0.1:{upstream_port}"}}
apis:
  scale: {{path: /scale, backend: upstream}}
{extra}products:
  scale: {{apis: [{apis}]}}
"""
EXTRA_API = "  extra: {path: /extra, backend: upstream}\n"
LOADED = re.compile(r"loaded (\d+) keys in ([0-9.]+) s")
CALL_INTERVAL = 0.005
EFFECT_TIMEOUT = 120.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", default="100000", help="comma-separated sizes")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TOLLWAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--upstream-port", type=int, default=18091)
    parser.add_argument("--tollway-port", type=int, default=18092)
    parser.add_argument("--quiet-seconds", type=float, default=3.0)
    parser.add_argument("--keep-tmp", action="store_true", help="keep logs and databases")
    args = parser.parse_args(argv)
    args.subscriptions = [int(size.replace("_", "")) for size in args.subscriptions.split(",")]
    args.stores = [name for name in args.stores.split(",") if name]
    if set(args.stores) - {"sqlite", "postgres"}:
        parser.error("--stores: sqlite, postgres")
    return args


# --- the client and the RSS sampler ------------------------------------------------------------


@dataclass
class Call:
    at: float  # monotonic start
    seconds: float
    status: int  # 0: no answer


@dataclass(eq=False)
class Caller(threading.Thread):
    """Calls ``path`` with random keys of the population, one call at a time."""

    port: int
    population: Population
    avoid: int  # keys below this number are the bench's to change
    calls: list[Call] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stopping.is_set():
            key = self.population.key(random.randrange(self.avoid, self.population.count))
            started = time.monotonic()
            status = 0
            try:
                conn.request("GET", "/scale/x", headers={"X-API-Key": key})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.calls.append(Call(started, time.monotonic() - started, status))
            time.sleep(CALL_INTERVAL)
        conn.close()

    def during(self, start: float, end: float) -> list[Call]:
        return [call for call in list(self.calls) if start <= call.at <= end]


def rss_mib(pid: int) -> float:
    total = 0
    for member in common.process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@dataclass(eq=False)
class RssSampler(threading.Thread):
    pid: int
    peak: float = 0.0
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            self.peak = max(self.peak, rss_mib(self.pid))


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Result:
    store: str
    subscriptions: int
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def database(store: str, args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{workdir}/scale.db"
        return
    schema = f"scale_{uuid.uuid4().hex[:10]}"
    admin = make_engine(args.postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in args.postgres_url else "?"
    try:
        yield f"{args.postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def tollway(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "tollway"), *args]


def command(argv: list[str], env: dict[str, str], workdir: Path) -> str:
    return common.run_tollway_command(argv, env, workdir)


def status_of(port: int, path: str, key: str) -> int:
    try:
        return common.http_get(port, path, {"X-API-Key": key})[0]
    except OSError:
        return 0


def wait_for(port: int, path: str, key: str, wanted: int, server: common.Server) -> float:
    """Poll until ``path`` answers ``wanted``; the monotonic time it did."""
    deadline = time.monotonic() + EFFECT_TIMEOUT
    while time.monotonic() < deadline:
        if status_of(port, path, key) == wanted:
            return time.monotonic()
        if server.proc.poll() is not None:
            raise common.BenchError(f"tollway exited:\n{common.log_tail(server)}")
        time.sleep(0.02)
    raise common.BenchError(f"{path} never answered {wanted} in {EFFECT_TIMEOUT:.0f} s")


def loaded_lines(server: common.Server) -> list[tuple[int, float]]:
    text_ = server.log.read_text(errors="replace")
    return [(int(keys), float(seconds)) for keys, seconds in LOADED.findall(text_)]


def slowest_ms(caller: Caller, start: float, end: float) -> tuple[float, int]:
    calls = caller.during(start, end)
    failed = sum(1 for call in calls if call.status != 200)
    return (max((call.seconds for call in calls), default=0.0) * 1000, failed)


def bench_one(
    store: str, size: int, args: argparse.Namespace, workdir: Path, upstream: common.Server
) -> Result:
    result = Result(store, size)
    home = workdir / f"{store}-{size}"
    home.mkdir()
    config = home / "tollway.yaml"
    with database(store, args, home) as url:
        env = {**common.tollway_env(home, "memory://"), "TOLLWAY_DATABASE_URL": url}
        engine: Engine = make_engine(url)
        try:
            upgrade(engine)
            config.write_text(
                CONFIG.format(upstream_port=args.upstream_port, extra="", apis="scale")
            )
            command(tollway("apply", "-f", str(config)), env, home)
            started = time.monotonic()
            population = populate(engine, "scale", size)
            result.figures["populate_s"] = time.monotonic() - started
            pauses = [asyncio.run(longest_loop_pause(engine)) * 1000 for _ in range(3)]
            result.figures["loop_pause_ms"] = max(pauses)
            result.figures["loop_pause_least_ms"] = min(pauses)
            measure(result, population, engine, env, home, config, args)
        finally:
            engine.dispose()
    return result


async def longest_loop_pause(engine: Engine) -> float:
    """A full load in a worker thread, as the gateway does it, next to an event loop that
    wakes every millisecond: the longest the loop waited beyond its millisecond (seconds)."""
    loader = StateLoader(session_factory(engine), SecretBox(None))
    longest = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            longest = max(longest, time.perf_counter() - before - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    state = await asyncio.to_thread(loader.load_full, None)
    done.set()
    await task
    # Freed in a thread, as the gateway frees an index it replaced: dropping it here would be a
    # pause of the bench's own making (freeing two million objects on the loop's thread).
    await asyncio.to_thread(state.keys.dispose)
    return longest


def measure(
    result: Result,
    population: Population,
    engine: Engine,
    env: dict[str, str],
    home: Path,
    config: Path,
    args: argparse.Namespace,
) -> None:
    port = args.tollway_port
    figures = result.figures
    key = population.key(0)
    started = time.monotonic()
    server = common.start_server(
        "tollway", tollway("serve", "--host", "127.0.0.1", "--port", str(port)), port, home, env
    )
    sampler = RssSampler(server.proc.pid)
    caller = Caller(port, population, avoid=min(10, population.count - 1))
    try:
        sampler.start()
        ready = common.Target("tollway", server, path="/-/ready")
        common.wait_ready(ready, timeout=600)
        figures["start_until_ready_s"] = time.monotonic() - started
        figures["full_load_s"] = loaded_lines(server)[-1][1]
        figures["rss_ready_mib"] = rss_mib(server.proc.pid)
        assert status_of(port, "/scale/x", key) == 200, "the population's keys do not work"

        caller.start()
        time.sleep(0.5)
        quiet_start, cpu_start, calls_start = (
            time.monotonic(),
            common.cpu_seconds(server.proc.pid),
            len(caller.calls),
        )
        time.sleep(args.quiet_seconds)
        calls = len(caller.calls) - calls_start
        cpu = common.cpu_seconds(server.proc.pid) - cpu_start
        figures["cpu_us_per_request"] = cpu / max(calls, 1) * 1e6
        figures["quiet_slowest_ms"], _ = slowest_ms(caller, quiet_start, time.monotonic())

        # Config change: an API added to the population's product.
        config.write_text(
            CONFIG.format(upstream_port=args.upstream_port, extra=EXTRA_API, apis="scale, extra")
        )
        begun = time.monotonic()
        cpu_start = common.cpu_seconds(server.proc.pid)
        command(tollway("apply", "-f", str(config)), env, home)
        returned = time.monotonic()
        effective = wait_for(port, "/extra/x", population.key(population.count - 1), 200, server)
        figures["config_change_s"] = effective - returned
        time.sleep(1.0)
        figures["config_change_cpu_s"] = common.cpu_seconds(server.proc.pid) - cpu_start
        figures["config_change_slowest_ms"], failed = slowest_ms(caller, begun, time.monotonic())
        if failed:
            result.notes.append(f"{failed} calls failed during the config change")

        # Key change: one subscription suspended.
        sid = population.subscription_id(engine, 0)
        begun = time.monotonic()
        command(tollway("subscription", "suspend", str(sid)), env, home)
        returned = time.monotonic()
        effective = wait_for(port, "/scale/x", key, 401, server)
        figures["key_change_s"] = effective - returned
        time.sleep(1.0)
        figures["key_change_slowest_ms"], failed = slowest_ms(caller, begun, time.monotonic())
        if failed:
            result.notes.append(f"{failed} calls failed during the key change")

        # Full reload while serving: more changes at once than are applied one by one.
        loads = len(loaded_lines(server))
        begun = time.monotonic()
        with engine.begin() as conn:
            conn.execute(
                insert(ChangeLog),
                [
                    {"kind": ChangeKind.subscription, "entity_id": n + 1}
                    for n in range(MAX_INCREMENTAL + 1)
                ],
            )
        deadline = time.monotonic() + EFFECT_TIMEOUT
        while len(loaded_lines(server)) == loads:
            if time.monotonic() > deadline:
                raise common.BenchError("the gateway never reloaded its keys")
            time.sleep(0.02)
        figures["full_reload_s"] = time.monotonic() - begun
        figures["full_reload_load_s"] = loaded_lines(server)[-1][1]
        time.sleep(1.5)  # (the index it replaced is freed at the next poll)
        figures["full_reload_slowest_ms"], failed = slowest_ms(caller, begun, time.monotonic())
        if failed:
            result.notes.append(f"{failed} calls failed during the full reload")
        figures["rss_end_mib"] = rss_mib(server.proc.pid)
        figures["rss_peak_mib"] = sampler.peak
        figures["calls"] = len(caller.calls)
    finally:
        caller.stopping.set()
        sampler.stopping.set()
        if caller.is_alive():
            caller.join(35)
        common.stop_server(server)


# --- report -----------------------------------------------------------------------------------

ROWS = (
    ("populate_s", "write the rows (s)", 1),
    ("loop_pause_ms", "longest event-loop pause in a full load, in-process (ms)", 1),
    ("loop_pause_least_ms", "  the same, least of 3 loads (ms)", 1),
    ("start_until_ready_s", "start until /-/ready (s)", 2),
    ("full_load_s", "  of which: load the keys (s)", 2),
    ("rss_ready_mib", "RSS when ready (MiB)", 0),
    ("rss_peak_mib", "RSS peak (MiB)", 0),
    ("rss_end_mib", "RSS at the end (MiB)", 0),
    ("cpu_us_per_request", "CPU per request, quiet (µs)", 0),
    ("quiet_slowest_ms", "slowest call, quiet (ms)", 1),
    ("config_change_s", "config change in effect after the command (s)", 2),
    ("config_change_cpu_s", "  gateway CPU for it (s, incl. the client's calls)", 2),
    ("config_change_slowest_ms", "  slowest call (ms)", 1),
    ("key_change_s", "key change in effect after the command (s)", 2),
    ("key_change_slowest_ms", "  slowest call (ms)", 1),
    ("full_reload_s", "full reload while serving (s)", 2),
    ("full_reload_slowest_ms", "  slowest call (ms)", 1),
)


def report(results: list[Result]) -> None:
    print()
    print("| | " + " | ".join(f"{r.store} {r.subscriptions:,}" for r in results) + " |")
    print("| --- |" + " --- |" * len(results))
    for name, label, digits in ROWS:
        cells = [f"{r.figures[name]:,.{digits}f}" if name in r.figures else "-" for r in results]
        print(f"| {label} | " + " | ".join(cells) + " |")
    for r in results:
        for note in r.notes:
            print(f"note ({r.store} {r.subscriptions:,}): {note}")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {' '.join(load)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for port in (args.upstream_port, args.tollway_port):
        if not common.port_is_free(port):
            print(f"bench: port {port} is taken", file=sys.stderr)
            return 1
    workdir = Path(tempfile.mkdtemp(prefix="tollway-scale-"))
    upstream_command = [
        sys.executable, "-m", "uvicorn", "upstream:create_app", "--factory",
        "--app-dir", str(common.BENCH_DIR), "--host", "127.0.0.1",
        "--port", str(args.upstream_port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    upstream = common.start_server("upstream", upstream_command, args.upstream_port, workdir)
    results: list[Result] = []
    try:
        for store in args.stores:
            for size in args.subscriptions:
                print(f"{store}, {size:,} subscriptions ...", flush=True)
                results.append(bench_one(store, size, args, workdir, upstream))
    except (common.BenchError, common.TargetUnavailable) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        common.stop_server(upstream)
        if args.keep_tmp:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
