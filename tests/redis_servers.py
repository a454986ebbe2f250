"""redis-server processes of a test's own on free loopback ports: a plain one, one over TLS, a
Sentinel group, a Cluster. Each lives in its own temporary directory (its log is there, shown
when it fails to start) and is killed by whoever started it; killing harms nobody else.

Waiting is always a poll with a deadline (:func:`until`), never a sleep that hopes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from .conftest import REDIS_URL, require_service, require_tool
from .servers import free_port

T = TypeVar("T")
SERVICE = "tollway-master"  # the master name the Sentinel group watches


def until(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """``probe()``'s first answer that is not None (errors count as None), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except (redis.RedisError, OSError):
            found = None
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


@dataclass
class TlsFiles:
    """A test CA and the certificates it signed (``trustme``): the server's, for 127.0.0.1,
    and a client certificate for servers that ask for one."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, directory: Path) -> TlsFiles:
        import trustme

        authority = trustme.CA()
        server = authority.issue_cert("127.0.0.1", "localhost")
        client = authority.issue_cert("tollway-gateway@example.com")
        files = cls(*(directory / n for n in ("ca.pem", "s.pem", "s.key", "c.pem", "c.key")))
        authority.cert_pem.write_to_path(str(files.ca))
        server.cert_chain_pems[0].write_to_path(str(files.server_cert))
        server.private_key_pem.write_to_path(str(files.server_key))
        client.cert_chain_pems[0].write_to_path(str(files.client_cert))
        client.private_key_pem.write_to_path(str(files.client_key))
        return files

    def client_options(self) -> dict[str, Any]:
        """redis-py keywords of a client that trusts the CA and shows its certificate."""
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }


@dataclass
class RedisServer:
    """One ``redis-server`` (or sentinel) that a test can start, kill and start again on the
    same port. ``tls``: it speaks TLS only (and wants client certificates if ``client_certs``)."""

    binary: str
    port: int
    directory: Path
    args: list[str] = field(default_factory=list)
    tls: TlsFiles | None = None
    client_certs: bool = False
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = None
    probe: redis.Redis | None = None  # one connection for reading statistics, kept

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.tls.server_cert),
                     "--tls-key-file", str(self.tls.server_key),
                     "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "yes" if self.client_certs else "no"]  # fmt: skip
        if self.sentinel:  # (a sentinel rewrites its config file: it must have one of its own)
            config = self.directory / "sentinel.conf"
            if not config.exists():
                config.write_text("\n".join(self.args) + "\n")
            return [self.binary, str(config), "--sentinel", *ports, "--bind", "127.0.0.1",
                    "--dir", str(self.directory)]  # fmt: skip
        return [self.binary, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.directory), *self.args]  # fmt: skip

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client of the test's own (TLS: trusting the CA, with the client cert)."""
        tls = self.tls.client_options() if self.tls else {}
        return redis.Redis(
            port=self.port, socket_connect_timeout=1, socket_timeout=5, **tls, **options
        )

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=log)
        process = self.process

        def answers() -> bool | None:
            if process.poll() is not None:
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on {self.port} exited:\n{log}")
            with self.client() as client:
                return bool(client.ping())

        try:
            until(f"redis-server on {self.port} answers", answers, timeout=10)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def info(self, section: str) -> dict[str, Any]:
        """INFO over one kept connection (so reading statistics adds only INFO calls)."""
        if self.probe is None:
            self.probe = self.client()
        return dict(self.probe.info(section))


STORES = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    *(pytest.param(mode, marks=pytest.mark.slow) for mode in ("tls", "sentinel", "cluster")),
    pytest.param("tls-sentinel", marks=pytest.mark.slow),
    pytest.param("tls-cluster", marks=pytest.mark.slow),
]
"""The stores a contract test runs on: memory, the shared Redis (TOLLWAY_TEST_REDIS_URL) and
the production modes on servers of the session's own."""


def store_url(request: pytest.FixtureRequest) -> str:
    """TOLLWAY_REDIS_URL for ``request.param`` of :data:`STORES` (TLS: trusting the test CA
    and showing the client certificate)."""
    mode = request.param
    if mode == "memory":
        return "memory://"
    if mode == "redis":
        return require_service(REDIS_URL, "redis")
    if mode == "tls":
        server: RedisServer = request.getfixturevalue("tls_redis")
        assert server.tls is not None
        files = server.tls
        return (
            f"{server.url}?ssl_ca_certs={files.ca}&ssl_certfile={files.client_cert}"
            f"&ssl_keyfile={files.client_key}"
        )
    if mode in ("sentinel", "tls-sentinel"):
        return str(request.getfixturevalue(f"{mode.replace('-', '_')}_redis").url)
    if mode == "cluster":
        nodes: list[RedisServer] = request.getfixturevalue("cluster_redis")
        return "redis+cluster://" + ",".join(node.address for node in nodes)
    nodes = request.getfixturevalue("tls_cluster_redis")
    files = nodes[0].tls
    assert files is not None
    return (
        f"rediss+cluster://{nodes[0].address}?ssl_ca_certs={files.ca}"
        f"&ssl_certfile={files.client_cert}&ssl_keyfile={files.client_key}"
    )


def redis_binary() -> str:
    return require_tool("redis-server", package="redis-server")


@contextmanager
def redis_server(directory: Path, **options: Any) -> Iterator[RedisServer]:
    """One started server, killed on the way out."""
    server = RedisServer(redis_binary(), free_port(), directory, **options)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def commands(servers: list[RedisServer], *names: str) -> int:
    """How many times these servers ran the commands ``names`` (INFO commandstats), so a test
    can count round trips; reading it is an INFO call, which is not among them."""
    total = 0
    for server in servers:
        stats = server.info("commandstats")
        total += sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)
    return total


@dataclass
class SentinelGroup:
    """A master, its replica and one sentinel that promotes the replica when the master dies."""

    master: RedisServer
    replica: RedisServer
    sentinel: RedisServer

    @property
    def url(self) -> str:
        files = self.sentinel.tls
        if files is None:
            return f"redis+sentinel://{self.sentinel.address}/{SERVICE}/0"
        return (
            f"rediss+sentinel://{self.sentinel.address}/{SERVICE}/0?ssl_ca_certs={files.ca}"
            f"&ssl_certfile={files.client_cert}&ssl_keyfile={files.client_key}"
        )

    def current_master(self) -> str | None:
        """The master's address as clients learn it from the sentinel (None mid-fail-over:
        the sentinel names the new master to clients once the fail-over is complete)."""
        with self.sentinel.client() as client:
            state = _state(client.execute_command("SENTINEL", "MASTER", SERVICE))
        flags = state["flags"].split(",")
        if "master" not in flags or {"s_down", "o_down", "failover_in_progress"} & set(flags):
            return None
        return f"{state['ip']}:{state['port']}"

    def replicated(self) -> None:
        """Wait until the replica has everything the master wrote (replication is async)."""

        def caught_up() -> bool:
            offset = self.master.info("replication")["master_repl_offset"]
            return bool(self.replica.info("replication").get("slave_repl_offset", -1) >= offset)

        until("the replica catches up", caught_up)

    def switch_over(self) -> RedisServer:
        """A planned fail-over (SENTINEL FAILOVER): the replica is promoted, the old master
        lives on as its replica. Returns the new master once it takes writes."""
        self.replicated()

        def started() -> bool:  # (NOGOODSLAVE until the sentinel has fresh news of the replica)
            with self.sentinel.client() as client:
                return bool(client.execute_command("SENTINEL", "FAILOVER", SERVICE))

        until("the sentinel starts a fail-over", started)
        promoted = self.promoted()
        # The sentinel turns the old master into a replica of the new one once it sees it still
        # claiming to be master, some seconds later; do now what it will do.
        with self.master.client() as client:
            client.execute_command("REPLICAOF", "127.0.0.1", promoted.port)
        return promoted

    def fail_over(self) -> RedisServer:
        """Kill the master; return the replica once the sentinel has promoted it and it takes
        writes."""
        self.replicated()
        self.master.kill()
        return self.promoted()

    def promoted(self) -> RedisServer:
        replica = self.replica
        until("the sentinel names the replica", lambda: self.current_master() == replica.address)
        until("the replica is a master", lambda: replica.info("replication")["role"] == "master")
        return replica


@contextmanager
def sentinel_group(directory: Path, tls: TlsFiles | None = None) -> Iterator[SentinelGroup]:
    """``tls``: every server and the sentinel speak TLS only, among themselves too."""
    secure = {"tls": tls, "client_certs": True} if tls else {}
    replication = ["--tls-replication", "yes"] if tls else []
    with ExitStack() as stack:
        master = stack.enter_context(
            redis_server(
                directory / "master",
                args=["--repl-diskless-sync-delay", "0", *replication],
                **secure,
            )
        )
        follow = ["--replicaof", "127.0.0.1", str(master.port), *replication]
        replica = stack.enter_context(redis_server(directory / "replica", args=follow, **secure))
        until(
            "the replica is linked",
            lambda: replica.info("replication")["master_link_status"] == "up",
        )
        config = [
            f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 1",
            f"sentinel down-after-milliseconds {SERVICE} 500",
            f"sentinel failover-timeout {SERVICE} 5000",
            *(["tls-replication yes"] if tls else []),
        ]
        sentinel = stack.enter_context(
            redis_server(directory / "sentinel", args=config, sentinel=True, **secure)
        )
        group = SentinelGroup(master, replica, sentinel)

        def knows_replica() -> bool:
            """The sentinel is connected to the replica and sees it linked (else it could not
            promote it)."""
            with sentinel.client() as client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            states = [_state(r) for r in replicas]
            return any(
                r["flags"] == "slave" and r.get("master-link-status") == "ok" for r in states
            )

        until("the sentinel sees the replica", knows_replica)
        yield group


@contextmanager
def redis_cluster(
    directory: Path, nodes: int = 3, tls: TlsFiles | None = None
) -> Iterator[list[RedisServer]]:
    """A Cluster of ``nodes`` masters (no replicas) with all 16384 slots assigned; ``tls``:
    clients and the nodes among themselves speak TLS only (client certificates required)."""
    cli = require_tool("redis-cli", package="redis-tools")
    with ExitStack() as stack:
        servers = []
        for i in range(nodes):
            bus = str(free_port())  # (not port + 10000: that may be past 65535)
            args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-port", bus, "--cluster-node-timeout", "5000"]  # fmt: skip
            if tls is not None:
                args += ["--tls-cluster", "yes", "--tls-replication", "yes"]
            server = redis_server(directory / f"node{i}", args=args, tls=tls, client_certs=True)
            servers.append(stack.enter_context(server))
        secure = []
        if tls is not None:
            secure = ["--tls", "--cacert", str(tls.ca), "--cert", str(tls.client_cert),
                      "--key", str(tls.client_key)]  # fmt: skip
        subprocess.run(
            [cli, *secure, "--cluster", "create", *(s.address for s in servers),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

        def agreed() -> bool:
            infos = [_cluster_info(server) for server in servers]
            return all(
                info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == str(nodes)
                for info in infos
            )

        until("every node sees the cluster ok", agreed)
        yield servers


def node_id(server: RedisServer) -> str:
    with server.client() as client:
        return _text(client.execute_command("CLUSTER MYID"))


def slot_owner(servers: list[RedisServer], slot: int) -> RedisServer:
    """The node that serves ``slot`` (by each node's own view of itself)."""
    with servers[0].client() as client:
        owner = next(
            _text(entry[2][2]) for entry in client.execute_command("CLUSTER SLOTS")
            if entry[0] <= slot <= entry[1]
        )  # fmt: skip
    return next(server for server in servers if node_id(server) == owner)


def move_slot(servers: list[RedisServer], slot: int, to: RedisServer) -> None:
    """Migrate ``slot`` and its keys to ``to``, the way resharding does (Redis' documented
    steps: IMPORTING, MIGRATING, MIGRATE the keys, then SETSLOT NODE everywhere)."""
    source = slot_owner(servers, slot)
    source_id, target_id = node_id(source), node_id(to)
    with source.client() as src, to.client() as dst:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)
    for server in [to, source, *servers]:
        with server.client() as client:
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)


def _state(reply: Any) -> dict[str, str]:
    """A sentinel's description of a server (a flat list or a mapping) as text."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    return {_text(k): _text(v) for k, v in reply.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cluster_info(server: RedisServer) -> dict[str, str]:
    with server.client() as client:
        reply = client.execute_command("CLUSTER INFO")
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
