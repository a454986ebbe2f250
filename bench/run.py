"""Benchmark Tollway against nginx, both proxying the same upstream, in one run.

Usage: ``.venv/bin/python bench/run.py [--quick] [--duration SECONDS]`` (see bench/README.md).

Starts the upstream (raw ASGI under uvicorn), then nginx and Tollway in front of it (key auth
alone; with rate-limit + quota on memory stores; the same on Redis; with validate-jwt; with a
cache every request hits), each pinned to one CPU,
drives every target with wrk pinned to another CPU at 50 connections then 1, and reports req/s,
latency and the servers' CPU time per request read from /proc. Every process it
starts is stopped on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import redis
from issuer import AUDIENCE, ISSUER, BenchIssuer, create_issuer
from upstream import COUNT_PATH, JWKS_PATH

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
NGINX = "/usr/sbin/nginx"
TOLLWAY_VARIANTS = (
    "tollway", "tollway-policies", "tollway-redis", "tollway-jwt", "tollway-cache",
)  # fmt: skip
TARGETS = ("upstream", "nginx", *TOLLWAY_VARIANTS)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
EVAL_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro")
POLICY_COST_TARGET_US = 10.0
REDIS_RATIO_TARGET = 1.5
CONNECTIONS = (50, 1)
KEY_PATTERN = re.compile(r"tw_[0-9A-Za-z]{46}")
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
COMMAND_TIMEOUT = 60.0

# wrk reports through this hook: exact percentiles in µs instead of its rounded text output.
WRK_REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

TOLLWAY_CONFIG = """\
backends:
  upstream: {{url: "http://127.0.0.1:{upstream_port}"}}
apis:
  bench:
    path: /bench
    backend: upstream
{policies}products:
  bench: {{apis: [bench]}}
"""

# Limits no run reaches, so every request pays the full check and none is refused. The nonce
# in the names changes the policies' counter keys, so a run never inherits counts in Redis.
BENCH_POLICIES = """\
    policies:
      - {{type: rate-limit, calls: 1000000000, period: 60, name: bench-{nonce}}}
      - {{type: quota, calls: 1000000000, period: month, name: bench-q-{nonce}}}
"""

# Every request carries the bench issuer's token and is validated; the JWKS comes from the
# upstream on loopback, fetched once: cache_seconds outlasts any run, so none refetches mid-run.
JWT_POLICY = """\
    policies:
      - type: validate-jwt
        issuer: "{issuer}"
        jwks_uri: "http://127.0.0.1:{upstream_port}{jwks_path}"
        audiences: ["{audience}"]
        cache_seconds: 86400
"""

# One path, requested again and again: after the first request every one is a hit.
CACHE_POLICY = """\
    policies:
      - {type: cache, ttl: 86400}
"""


class BenchError(Exception):
    """The run cannot go on; the message says why."""


class TargetUnavailable(Exception):
    """One target could not be started; the others still run."""


@dataclass
class Server:
    """A server process we started, with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


@dataclass
class RedisWatch:
    """The Redis a target uses: its command counts and (when local) its server's CPU."""

    client: redis.Redis
    pid: int | None

    def snapshot(self) -> tuple[int, float | None]:
        """EVAL/EVALSHA calls so far (each one round trip) and the Redis server's CPU seconds.

        Only the script calls: commandstats also counts every command a script runs inside Redis.
        """
        stats = self.client.info("commandstats")
        evals = sum(int(stats.get(name, {}).get("calls", 0)) for name in EVAL_COMMANDS)
        return evals, None if self.pid is None else cpu_seconds(self.pid)


@dataclass
class Target:
    """What wrk drives: a path on ``server``, with request headers."""

    name: str
    server: Server
    path: str = "/bench/x"
    headers: dict[str, str] = field(default_factory=dict)
    redis: RedisWatch | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{self.path}"


@dataclass
class WrkReport:
    """What wrk's ``done`` hook prints (times in µs)."""

    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    max_us: int
    errors: dict[str, int]


@dataclass
class Run:
    """One wrk run against one target and what the servers spent on it."""

    target: str
    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    proxy_cpu_us: float | None
    upstream_cpu_us: float
    redis_cpu_us: float | None = None
    redis_evals: int | None = None  # EVAL + EVALSHA calls during the run (any client)
    redis_round_trips: float | None = None  # redis_evals per request completed
    upstream_requests: int = 0  # requests the upstream answered during the run
    jwks_fetches: int = 0  # JWKS fetches the upstream served during the run


# --- arguments and ports --------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="3 s runs (overrides --duration)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load first")
    parser.add_argument("--upstream-port", type=int, default=18081)
    parser.add_argument("--nginx-port", type=int, default=18082)
    parser.add_argument("--tollway-port", type=int, default=18083)
    parser.add_argument("--tollway-policies-port", type=int, default=18084)
    parser.add_argument("--tollway-redis-port", type=int, default=18085)
    parser.add_argument("--tollway-jwt-port", type=int, default=18086)
    parser.add_argument("--tollway-cache-port", type=int, default=18087)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis of tollway-redis")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    parser.add_argument("--wrk-cpu", type=int, default=0, help="CPU wrk is pinned to")
    parser.add_argument("--server-cpu", type=int, default=1, help="CPU all servers are pinned to")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3
    args.targets = [name for name in args.targets.split(",") if name]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or "upstream" not in args.targets:
        parser.error(f"--targets: choose from {', '.join(TARGETS)}, including upstream")
    return args


def needed_ports(args: argparse.Namespace) -> dict[str, int]:
    """The port of every target this run starts."""
    ports = {
        "upstream": args.upstream_port,
        "nginx": args.nginx_port,
        "tollway": args.tollway_port,
        "tollway-policies": args.tollway_policies_port,
        "tollway-redis": args.tollway_redis_port,
        "tollway-jwt": args.tollway_jwt_port,
        "tollway-cache": args.tollway_cache_port,
    }
    return {name: port for name, port in ports.items() if name in args.targets}


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` (binding the way servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(ports: dict[str, int]) -> None:
    """Refuse to run when a port is taken: a stale server there would give nonsense numbers."""
    busy = [f"{name} port {port}" for name, port in ports.items() if not port_is_free(port)]
    if busy:
        raise BenchError(
            f"already in use: {', '.join(busy)}. Stop what listens there (see `ss -ltnp`) "
            "or choose other ports (--upstream-port, --nginx-port, --tollway-port, "
            "--tollway-policies-port, --tollway-redis-port, --tollway-jwt-port, "
            "--tollway-cache-port)."
        )
    if len(set(ports.values())) != len(ports):
        raise BenchError(f"ports must differ: {ports}")


def check_tools() -> None:
    """wrk, nginx and taskset must be installed."""
    missing = [tool for tool in ("wrk", NGINX, "taskset") if not shutil.which(tool)]
    if missing:
        raise BenchError(
            f"missing {', '.join(missing)}: apt-get install -y wrk nginx-light util-linux"
        )


def pin_prefix(args: argparse.Namespace, cpu: int) -> list[str]:
    """``taskset -c CPU`` when pinning (it execs, so the pid stays the server's)."""
    return [] if args.no_pin else ["taskset", "-c", str(cpu)]


def check_cpus(args: argparse.Namespace) -> None:
    """Pinning needs both CPUs; without them, say so and run unpinned."""
    available = os.sched_getaffinity(0)
    if args.no_pin or {args.wrk_cpu, args.server_cpu} <= available:
        return
    print(f"warning: CPUs {sorted(available)} available; running unpinned (numbers are noisier)")
    args.no_pin = True


# --- processes --------------------------------------------------------------------------------


def start_server(
    name: str,
    command: list[str],
    port: int,
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Server:
    """Start a server in its own session (so Ctrl-C reaches us, and we stop it)."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
    return Server(name, proc, port, log)


def stop_server(server: Server) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after a few seconds."""
    if server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(STOP_TIMEOUT)
    # Reaped leader: its group may still hold children (nginx workers, tollway helpers).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.proc.pid, signal.SIGKILL)


def log_tail(server: Server, lines: int = 15) -> str:
    """The last lines of a server's output, for error messages."""
    try:
        text = server.log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def http_get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET to 127.0.0.1:``port``: status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(target: Target, timeout: float = READY_TIMEOUT) -> None:
    """Poll the target's URL until it answers 200, the server dies, or time runs out.

    Refused connections and 503 (still starting) mean "wait"; any other status is a failure.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if target.server.proc.poll() is not None:
            code = target.server.proc.returncode
            raise TargetUnavailable(f"{target.name} exited ({code}):\n{log_tail(target.server)}")
        try:
            status, body = http_get(target.server.port, target.path, target.headers)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"GET {target.path} answered HTTP {status}: {body[:200]!r}"
            if status != 503:
                raise TargetUnavailable(f"{last}\n  its log ends:\n{log_tail(target.server, 8)}")
        time.sleep(0.1)
    raise TargetUnavailable(f"{target.name} not ready after {timeout:.0f} s ({last})")


def child_pids() -> dict[int, list[int]]:
    """Every process's children, from the ppid field of /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = read_stat(int(entry.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children = child_pids()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def read_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state first); [] if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants, in seconds."""
    ticks = 0
    for member in process_tree(pid):
        fields = read_stat(member)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # stat fields 14 and 15
    return ticks / CLK_TCK


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any address), from /proc/net/tcp and tcp6."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets held open by ``pid`` and its descendants."""
    inodes = set()
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{member}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    return inodes


def verify_owner(server: Server) -> None:
    """The socket listening on the server's port must belong to the process we started."""
    if not listening_inodes(server.port) & socket_inodes(server.proc.pid):
        raise BenchError(
            f"port {server.port} is not served by the {server.name} we started "
            f"(pid {server.proc.pid}); is another server listening there?"
        )


# --- the targets ------------------------------------------------------------------------


def start_upstream(args: argparse.Namespace, workdir: Path, issuer: BenchIssuer) -> Target:
    """The raw ASGI upstream under uvicorn with uvloop and httptools, no access log.

    It also serves the issuer's JWKS, and counts the requests it answers (bench/upstream.py).
    """
    command = [
        *pin_prefix(args, args.server_cpu),
        sys.executable, "-m", "uvicorn", "upstream:create_app", "--factory",
        "--app-dir", str(BENCH_DIR),
        "--host", "127.0.0.1", "--port", str(args.upstream_port),
        "--no-access-log", "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
        # Longer than nginx's 60 s upstream idle timeout, so nginx never reuses a closed one.
        "--timeout-keep-alive", "75",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_JWKS": issuer.jwks}
    server = start_server("upstream", command, args.upstream_port, workdir, env)
    return Target("upstream", server)


def write_nginx_config(args: argparse.Namespace, workdir: Path) -> Path:
    """Fill bench/nginx.conf.template into ``workdir``/nginx."""
    nginx_dir = workdir / "nginx"
    nginx_dir.mkdir()
    nginx_dir.chmod(0o755)  # run as root, nginx's workers switch to an unprivileged user
    template = string.Template((BENCH_DIR / "nginx.conf.template").read_text())
    config = nginx_dir / "nginx.conf"
    config.write_text(
        template.substitute(
            workdir=nginx_dir, upstream_port=args.upstream_port, nginx_port=args.nginx_port
        )
    )
    return config


def start_nginx(args: argparse.Namespace, workdir: Path, issuer: BenchIssuer) -> Target:
    """nginx as a keep-alive reverse proxy to the upstream (master + one worker)."""
    config = write_nginx_config(args, workdir)
    prefix = str(config.parent)
    command = [
        *pin_prefix(args, args.server_cpu),
        NGINX, "-p", prefix, "-c", str(config), "-e", f"{prefix}/error.log",
    ]  # fmt: skip
    server = start_server("nginx", command, args.nginx_port, workdir)
    return Target("nginx", server)


def tollway_env(workdir: Path, redis_url: str) -> dict[str, str]:
    """Environment for the tollway commands: our database, our stores, no access log."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOLLWAY_")}
    env["TOLLWAY_DATABASE_URL"] = f"sqlite:///{workdir}/bench.db"
    env["TOLLWAY_REDIS_URL"] = redis_url
    env["TOLLWAY_ACCESS_LOG"] = "false"
    return env


def tollway_setup(tollway: str, config: Path) -> list[list[str]]:
    """The CLI steps that load the config and print a subscription key (adjust here)."""
    return [
        [tollway, "apply", "-f", str(config)],
        [tollway, "user", "create", "bench@example.com"],
        [tollway, "subscription", "create", "--user", "bench@example.com", "--product", "bench"],
    ]


def run_tollway_command(command: list[str], env: dict[str, str], workdir: Path) -> str:
    """Run one setup command; its stdout, or TargetUnavailable saying what failed."""
    shown = " ".join(["tollway", *command[1:]])
    try:
        done = subprocess.run(
            command, env=env, cwd=workdir, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TargetUnavailable(f"`{shown}` failed: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()[-8:]
        details = "\n".join("    " + line for line in output)
        raise TargetUnavailable(f"`{shown}` exited with {done.returncode}:\n{details}")
    return done.stdout


def start_tollway_variant(
    args: argparse.Namespace, workdir: Path, name: str, port: int, redis_url: str, policies: str
) -> Target:
    """Configure Tollway in a fresh SQLite store of its own, subscribe a user, serve (1 worker)."""
    tollway = str(Path(sys.executable).parent / "tollway")
    if not Path(tollway).exists():
        raise TargetUnavailable(f"{tollway} not found (is the package installed in the venv?)")
    home = workdir / name
    home.mkdir()
    config = home / "tollway.yaml"
    config.write_text(TOLLWAY_CONFIG.format(upstream_port=args.upstream_port, policies=policies))
    env = tollway_env(home, redis_url)
    output = "".join(
        run_tollway_command(step, env, home) for step in tollway_setup(tollway, config)
    )
    keys = KEY_PATTERN.findall(output)
    if not keys:
        raise TargetUnavailable("no `tw_...` key in the output of `tollway subscription create`")
    command = [
        *pin_prefix(args, args.server_cpu),
        tollway, "serve", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    server = start_server(name, command, port, workdir, env)
    return Target(name, server, headers={"X-API-Key": keys[-1]})


def start_tollway(args: argparse.Namespace, workdir: Path, issuer: BenchIssuer) -> Target:
    """Tollway with key auth and usage recording only."""
    return start_tollway_variant(args, workdir, "tollway", args.tollway_port, "memory://", "")


def start_tollway_policies(args: argparse.Namespace, workdir: Path, issuer: BenchIssuer) -> Target:
    """Tollway with key auth, usage, rate-limit and quota on memory stores."""
    policies = BENCH_POLICIES.format(nonce=secrets.token_hex(4))
    port = args.tollway_policies_port
    return start_tollway_variant(args, workdir, "tollway-policies", port, "memory://", policies)


def shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def redis_server_pid(client: redis.Redis) -> int | None:
    """The Redis server's pid when it runs on this machine (its /proc entry is redis-server)."""
    pid = int(client.info("server").get("process_id", 0))
    try:
        command = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return None
    return pid if pid and command.startswith("redis") else None


def connect_redis(url: str) -> RedisWatch:
    """A client for ``url`` that answered PING, or TargetUnavailable saying why not."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        return RedisWatch(client, redis_server_pid(client))
    except (redis.RedisError, OSError, ValueError) as exc:
        raise TargetUnavailable(
            f"Redis at {shown_url(url)} does not answer PING ({type(exc).__name__}: {exc}); "
            "start it or pass --redis-url"
        ) from None


def start_tollway_redis(args: argparse.Namespace, workdir: Path, issuer: BenchIssuer) -> Target:
    """The policy configuration of tollway-policies with its counters in Redis."""
    watch = connect_redis(args.redis_url)
    policies = BENCH_POLICIES.format(nonce=secrets.token_hex(4))
    port = args.tollway_redis_port
    target = start_tollway_variant(args, workdir, "tollway-redis", port, args.redis_url, policies)
    target.redis = watch
    return target


def start_tollway_jwt(args: argparse.Namespace, workdir: Path, issuer: BenchIssuer) -> Target:
    """Tollway with key auth, usage and validate-jwt; every request carries the issuer's token."""
    policies = JWT_POLICY.format(
        issuer=ISSUER, upstream_port=args.upstream_port, jwks_path=JWKS_PATH, audience=AUDIENCE
    )
    port = args.tollway_jwt_port
    target = start_tollway_variant(args, workdir, "tollway-jwt", port, "memory://", policies)
    target.headers["Authorization"] = f"Bearer {issuer.token}"
    return target


def start_tollway_cache(args: argparse.Namespace, workdir: Path, issuer: BenchIssuer) -> Target:
    """Tollway with key auth, usage and a memory cache: after the first request, only hits."""
    port = args.tollway_cache_port
    return start_tollway_variant(args, workdir, "tollway-cache", port, "memory://", CACHE_POLICY)


# Each takes the options, this run's temp dir and its token issuer.
STARTERS = {
    "upstream": start_upstream,
    "nginx": start_nginx,
    "tollway": start_tollway,
    "tollway-policies": start_tollway_policies,
    "tollway-redis": start_tollway_redis,
    "tollway-jwt": start_tollway_jwt,
    "tollway-cache": start_tollway_cache,
}


# --- measuring --------------------------------------------------------------------------------


def run_wrk(
    args: argparse.Namespace, target: Target, connections: int, seconds: int, script: Path
) -> WrkReport:
    """One closed-loop wrk run (one thread) and its report."""
    command = [
        *pin_prefix(args, args.wrk_cpu),
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
    ]  # fmt: skip
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(target.url)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return WrkReport(**json.loads(line.removeprefix("BENCH_JSON ")))
    raise BenchError(f"wrk gave no report (exit {done.returncode}): {done.stderr.strip()}")


def upstream_counts(upstream: Server) -> tuple[int, int]:
    """Requests the upstream has answered and JWKS fetches it has served, so far."""
    try:
        status, body = http_get(upstream.port, COUNT_PATH, {})
    except OSError as exc:
        raise BenchError(f"cannot read the upstream's request count: {exc}") from None
    try:
        counts = json.loads(body)
        return int(counts["requests"]), int(counts["jwks_fetches"])
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"upstream {COUNT_PATH}: HTTP {status}, {body[:200]!r}") from None


def measure(
    args: argparse.Namespace,
    target: Target,
    upstream: Server,
    connections: int,
    script: Path,
) -> Run:
    """Drive ``target`` with wrk and read the CPU the proxy and the upstream spent meanwhile."""
    proxied = target.server is not upstream
    counts_before = upstream_counts(upstream)
    before = cpu_seconds(target.server.proc.pid), cpu_seconds(upstream.proc.pid)
    redis_before = target.redis.snapshot() if target.redis else None
    report = run_wrk(args, target, connections, args.duration, script)
    redis_after = target.redis.snapshot() if target.redis else None
    after = cpu_seconds(target.server.proc.pid), cpu_seconds(upstream.proc.pid)
    counts_after = upstream_counts(upstream)
    per_request = 1e6 / max(report.requests, 1)
    seconds = report.duration_us / 1e6
    run = Run(
        target=target.name,
        connections=connections,
        requests=report.requests,
        seconds=round(seconds, 3),
        rps=round(report.requests / seconds, 1) if seconds else 0.0,
        p50_ms=report.p50_us / 1000,
        p99_ms=report.p99_us / 1000,
        max_ms=report.max_us / 1000,
        errors={name: count for name, count in report.errors.items() if count},
        proxy_cpu_us=round((after[0] - before[0]) * per_request, 2) if proxied else None,
        upstream_cpu_us=round((after[1] - before[1]) * per_request, 2),
        upstream_requests=counts_after[0] - counts_before[0],
        jwks_fetches=counts_after[1] - counts_before[1],
    )
    if redis_before and redis_after:
        add_redis_figures(run, redis_before, redis_after, report.requests)
    return run


def add_redis_figures(
    run: Run, before: tuple[int, float | None], after: tuple[int, float | None], requests: int
) -> None:
    """Redis round trips and server CPU per request, from two snapshots."""
    count = max(requests, 1)
    run.redis_evals = after[0] - before[0]
    run.redis_round_trips = round(run.redis_evals / count, 4)
    if before[1] is not None and after[1] is not None:
        run.redis_cpu_us = round((after[1] - before[1]) * 1e6 / count, 2)


def bench_target(
    args: argparse.Namespace, target: Target, upstream: Server, script: Path
) -> list[Run]:
    """Warm up, then one measured run per connection count."""
    if args.warmup:
        run_wrk(args, target, 50, args.warmup, script)
    runs = []
    for connections in CONNECTIONS:
        print(f"  {target.name}: wrk -c{connections} -d{args.duration}s ...", flush=True)
        runs.append(measure(args, target, upstream, connections, script))
    return runs


# --- reporting --------------------------------------------------------------------------------


def find_run(runs: list[Run], target: str, connections: int) -> Run | None:
    """The run of ``target`` at ``connections``, if there is one."""
    return next((r for r in runs if (r.target, r.connections) == (target, connections)), None)


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Per proxy: CPU/req and req/s at 50 connections, added p50 at 1; then the comparisons."""
    direct = find_run(runs, "upstream", 1)
    summary: dict[str, dict[str, float]] = {}
    for proxy in ("nginx", *TOLLWAY_VARIANTS):
        loaded, single = find_run(runs, proxy, 50), find_run(runs, proxy, 1)
        if not loaded or not single or not direct or loaded.proxy_cpu_us is None:
            continue
        summary[proxy] = {
            "cpu_us_per_req": loaded.proxy_cpu_us,
            "rps": loaded.rps,
            "added_p50_ms_c1": round(single.p50_ms - direct.p50_ms, 3),
        }
        for run in (loaded, single):
            if run.redis_evals is not None and run.redis_round_trips is not None:
                suffix = "" if run is loaded else "_c1"
                summary[proxy]["redis_round_trips_per_req" + suffix] = run.redis_round_trips
                # wrk stops with up to `connections` requests sent (so checked) but not counted.
                summary[proxy]["redis_evals_beyond_requests" + suffix] = float(
                    run.redis_evals - run.requests
                )
        if loaded.redis_cpu_us is not None:
            summary[proxy]["redis_cpu_us_per_req"] = loaded.redis_cpu_us
        add_checks(summary[proxy], loaded, single)
    compare(summary)
    return summary


def add_checks(figures: dict[str, float], loaded: Run, single: Run) -> None:
    """What shows a figure measures what it claims: failed requests, what reached the upstream.

    ``wrk_errors`` counts non-2xx/3xx answers, timeouts and socket errors of both measured runs
    (for tollway-jwt: tokens refused); ``upstream_requests`` (for tollway-cache: misses) and
    ``jwks_fetches`` (for tollway-jwt: key refetches) count what reached the upstream meanwhile.
    """
    figures["wrk_errors"] = float(sum(loaded.errors.values()) + sum(single.errors.values()))
    figures["upstream_requests"] = float(loaded.upstream_requests)
    figures["upstream_requests_c1"] = float(single.upstream_requests)
    figures["jwks_fetches"] = float(loaded.jwks_fetches + single.jwks_fetches)


def compare(summary: dict[str, dict[str, float]]) -> None:
    """Add the ratios to nginx, the policy cost over key auth alone, and Redis over memory."""
    nginx = summary.get("nginx")
    for variant in TOLLWAY_VARIANTS:
        figures = summary.get(variant)
        if nginx and figures:
            figures["cpu_ratio_vs_nginx"] = ratio(
                figures["cpu_us_per_req"], nginx["cpu_us_per_req"]
            )
            figures["rps_ratio_vs_nginx"] = ratio(figures["rps"], nginx["rps"])
    plain, policies = summary.get("tollway"), summary.get("tollway-policies")
    on_redis = summary.get("tollway-redis")
    for variant in TOLLWAY_VARIANTS[1:]:
        figures = summary.get(variant)
        if plain and figures:
            cost = figures["cpu_us_per_req"] - plain["cpu_us_per_req"]
            figures["cost_over_tollway_us"] = round(cost, 2)
    if plain and policies:
        cost = policies["cpu_us_per_req"] - plain["cpu_us_per_req"]
        policies["policy_cost_us"] = round(cost, 2)
    if policies and on_redis:
        memory_cpu = policies["cpu_us_per_req"]
        on_redis["cpu_ratio_vs_memory"] = ratio(on_redis["cpu_us_per_req"], memory_cpu)
        if "redis_cpu_us_per_req" in on_redis:
            with_server = on_redis["cpu_us_per_req"] + on_redis["redis_cpu_us_per_req"]
            on_redis["cpu_ratio_vs_memory_with_redis"] = ratio(with_server, memory_cpu)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` to two decimals (0 when there is nothing to divide by)."""
    return round(numerator / denominator, 2) if denominator else 0.0


def optional(value: float | None, width: int, digits: int = 1) -> str:
    """A right-aligned number, or '-' when there is none."""
    return f"{'-' if value is None else f'{value:.{digits}f}':>{width}}"


def print_table(runs: list[Run]) -> None:
    """One line per wrk run."""
    header = (
        "target", "conns", "req/s", "p50 ms", "p99 ms", "proxy µs/req",
        "upstr µs/req", "upstr reqs", "redis µs/req", "redis rt/req",
    )  # fmt: skip
    columns = "{:<16} {:>5} {:>9} {:>8} {:>8} {:>12} {:>12} {:>10} {:>12} {:>12}  errors"
    print("\n" + columns.format(*header))
    for r in runs:
        errors = ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "-"
        print(
            f"{r.target:<16} {r.connections:>5} {r.rps:>9.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
            f"{optional(r.proxy_cpu_us, 12)} {r.upstream_cpu_us:>12.1f} {r.upstream_requests:>10} "
            f"{optional(r.redis_cpu_us, 12)} {optional(r.redis_round_trips, 12, 3)}  {errors}"
        )


def verdict(ok: bool) -> str:
    """How a figure compares with its target."""
    return "meets target" if ok else "MISSES target"


def print_summary(summary: dict[str, dict[str, float]], skipped: dict[str, str]) -> None:
    """CPU per request next to nginx, the policy and Redis targets; why a target was skipped."""
    print("\nCPU per request at 50 connections (proxy process tree):")
    for proxy, figures in summary.items():
        vs_nginx = figures.get("cpu_ratio_vs_nginx")
        versus = f"  {vs_nginx:.2f}x nginx" if vs_nginx is not None else ""
        cost = figures.get("cost_over_tollway_us")
        over = f"  {cost:+7.1f} µs over tollway" if cost is not None else ""
        server = figures.get("redis_cpu_us_per_req")
        extra = f"  (+ Redis server {server:.1f} µs/req)" if server is not None else ""
        print(f"  {proxy:<17} {figures['cpu_us_per_req']:>7.1f} µs/req{versus}{over}{extra}")
    print_targets(summary)
    print_checks(summary)
    print()
    for proxy, figures in summary.items():
        line = f"{proxy}: added p50 at 1 connection {figures['added_p50_ms_c1']:+.3f} ms"
        if "rps_ratio_vs_nginx" in figures:
            line += f", req/s at c50 {figures['rps_ratio_vs_nginx']:.2f}x nginx"
        print(line)
    for name, reason in skipped.items():
        lines = reason.splitlines()
        last = f" ... {lines[-1].strip()}" if len(lines) > 1 else ""
        print(f"{name}: SKIPPED - {lines[0]}{last}")


def print_targets(summary: dict[str, dict[str, float]]) -> None:
    """The figures issue 3 sets targets for, each with its verdict."""
    policies, on_redis = summary.get("tollway-policies", {}), summary.get("tollway-redis", {})
    if "policy_cost_us" in policies:
        cost = policies["policy_cost_us"]
        print(
            f"policy cost (tollway-policies - tollway): {cost:+.1f} µs/req "
            f"(target <= {POLICY_COST_TARGET_US:.0f} µs: {verdict(cost <= POLICY_COST_TARGET_US)})"
        )
    if "cpu_ratio_vs_memory" in on_redis:
        share = on_redis["cpu_ratio_vs_memory"]
        print(
            f"Redis/memory CPU (tollway-redis / tollway-policies): {share:.2f}x "
            f"(target <= {REDIS_RATIO_TARGET}x: {verdict(share <= REDIS_RATIO_TARGET)})"
        )
    if "cpu_ratio_vs_memory_with_redis" in on_redis:
        with_server = on_redis["cpu_ratio_vs_memory_with_redis"]
        print(f"  counting the Redis server's CPU too: {with_server:.2f}x")
    if "redis_round_trips_per_req" in on_redis and "redis_round_trips_per_req_c1" in on_redis:
        beyond, beyond_c1 = (
            on_redis["redis_evals_beyond_requests"],
            on_redis["redis_evals_beyond_requests_c1"],
        )
        # One per request, give or take the requests in flight when wrk stopped.
        exact = 0 <= beyond <= CONNECTIONS[0] and 0 <= beyond_c1 <= CONNECTIONS[1]
        print(
            "Redis round trips per request (EVAL+EVALSHA / requests completed): "
            f"c50 {on_redis['redis_round_trips_per_req']:.3f}, "
            f"c1 {on_redis['redis_round_trips_per_req_c1']:.3f} "
            f"(target exactly 1: {verdict(exact)})"
        )
        print(
            f"  calls beyond requests completed: c50 {beyond:+.0f}, c1 {beyond_c1:+.0f} "
            "(up to 50 resp. 1 requests are in flight when wrk stops)"
        )


def check(ok: bool) -> str:
    """How a sanity check came out."""
    return "check passed" if ok else "CHECK FAILED: these figures do not measure what they claim"


def print_checks(summary: dict[str, dict[str, float]]) -> None:
    """tollway-jwt validated every request; tollway-cache answered every one from its cache."""
    jwt_figures, cache = summary.get("tollway-jwt"), summary.get("tollway-cache")
    if jwt_figures:
        errors, fetches = jwt_figures["wrk_errors"], jwt_figures["jwks_fetches"]
        print(
            f"tollway-jwt: {errors:.0f} failed requests (non-2xx, timeouts, socket errors), "
            f"{fetches:.0f} JWKS fetches during the measured runs (expected 0 and 0: every "
            f"token validated against keys fetched once): {check(errors == 0 and fetches == 0)}"
        )
    if cache:
        misses, misses_c1 = cache["upstream_requests"], cache["upstream_requests_c1"]
        print(
            f"tollway-cache: requests that reached the upstream during the measured runs: "
            f"c50 {misses:.0f}, c1 {misses_c1:.0f}; failed requests {cache['wrk_errors']:.0f} "
            f"(expected 0, 0 and 0: every request a cache hit): "
            f"{check(misses == misses_c1 == cache['wrk_errors'] == 0)}"
        )


def previous_results() -> Path | None:
    """The newest results file, if any."""
    files = sorted(RESULTS_DIR.glob("*.json")) if RESULTS_DIR.is_dir() else []
    return files[-1] if files else None


PREVIOUS_KEYS = (
    "cpu_us_per_req",
    "rps",
    "added_p50_ms_c1",
    "cpu_ratio_vs_nginx",
    "cost_over_tollway_us",
    "policy_cost_us",
    "cpu_ratio_vs_memory",
    "cpu_ratio_vs_memory_with_redis",
    "redis_round_trips_per_req",
    "redis_round_trips_per_req_c1",
    "redis_cpu_us_per_req",
)


def print_previous(path: Path | None, summary: dict[str, dict[str, float]]) -> None:
    """The previous run's figures of every Tollway variant next to this run's."""
    if path is None:
        return
    try:
        before = json.loads(path.read_text()).get("summary", {})
        before = before if isinstance(before, dict) else {}
    except (OSError, ValueError, AttributeError):
        before = {}
    variants = [v for v in TOLLWAY_VARIANTS if before.get(v) or summary.get(v)]
    if not any(before.get(v) for v in variants):
        print(f"\n(previous run {path.name} has no Tollway figures)")
        return
    print(f"\n{'':<48} {'previous ' + path.stem:>26} {'this run':>12}")
    for variant in variants:
        old, now = before.get(variant) or {}, summary.get(variant, {})
        for key in PREVIOUS_KEYS:
            if key in old or key in now:
                label = f"{variant} {key}"
                print(f"{label:<48} {old.get(key, '-')!s:>26} {now.get(key, '-')!s:>12}")


def machine_info() -> dict[str, object]:
    """Enough about the machine and versions to tell runs apart."""
    cpu = ""
    with contextlib.suppress(OSError):
        models = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = models[0] if models else ""
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": command_output(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"]),
        "dirty": bool(command_output(["git", "-C", str(REPO_DIR), "status", "--porcelain"])),
        "nginx": command_output([NGINX, "-v"]),
    }


def command_output(command: list[str]) -> str:
    """A command's output (stdout, else stderr), or '' if it cannot run."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def save_results(
    args: argparse.Namespace, runs: list[Run], summary: dict[str, object], skipped: dict[str, str]
) -> Path:
    """Write this run to bench/results/<UTC timestamp>.json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}.json"
    settings = {k: v for k, v in vars(args).items() if k != "keep_tmp"}
    settings["redis_url"] = shown_url(args.redis_url)  # never a password in the results
    document = {
        "timestamp": stamp,
        "settings": settings,
        "machine": machine_info(),
        "runs": [asdict(run) for run in runs],
        "summary": summary,
        "skipped": skipped,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --- main -------------------------------------------------------------------------------------


def start_target(
    args: argparse.Namespace, name: str, workdir: Path, issuer: BenchIssuer, servers: list[Server]
) -> Target:
    """Start one target, wait until it answers 200, and check it is the process we started."""
    print(f"starting {name} ...", flush=True)
    target = STARTERS[name](args, workdir, issuer)
    servers.append(target.server)
    wait_ready(target)
    verify_owner(target.server)
    return target


def bench_all(
    args: argparse.Namespace, workdir: Path, servers: list[Server]
) -> tuple[list[Run], dict[str, str]]:
    """Start and measure each target in turn; a failing proxy is skipped, with the reason."""
    script = workdir / "report.lua"
    script.write_text(WRK_REPORT_LUA)
    issuer = create_issuer()
    upstream = start_target(args, "upstream", workdir, issuer, servers)
    runs, skipped = bench_target(args, upstream, upstream.server, script), {}
    for name in (name for name in args.targets if name != "upstream"):
        try:
            target = start_target(args, name, workdir, issuer, servers)
        except TargetUnavailable as exc:
            print(f"  {name} SKIPPED: {exc}", flush=True)
            skipped[name] = str(exc)
            continue
        runs += bench_target(args, target, upstream.server, script)
        # An idle proxy still wakes up now and then; stopped, it cannot disturb the next one.
        stop_server(target.server)
    return runs, skipped


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    """A temporary directory for configs, logs and the database."""
    workdir = Path(tempfile.mkdtemp(prefix="tollway-bench-"))
    try:
        yield workdir
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> Path:
    """The whole benchmark; always stops what it started."""
    check_tools()
    check_ports(needed_ports(args))
    check_cpus(args)
    previous = previous_results()
    servers: list[Server] = []
    with workspace(args.keep_tmp) as workdir:
        try:
            runs, skipped = bench_all(args, workdir, servers)
        finally:
            for server in reversed(servers):
                stop_server(server)
    summary = summarize(runs)
    print_table(runs)
    print_summary(summary, skipped)
    print_previous(previous, summary)
    path = save_results(args, runs, dict(summary), skipped)
    print(f"\nresults: {path.relative_to(REPO_DIR)}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 1 on a bench error, 130 on Ctrl-C."""
    args = parse_args(argv)
    # Unwind on SIGTERM, and on SIGINT even when started with it ignored (`cmd &` in a script).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run(args)
    except (BenchError, TargetUnavailable) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted; servers stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
