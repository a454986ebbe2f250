"""The real nginx with deploy/nginx/tollway.conf in front of a real ``tollway serve``.

The sample config is used as written, except for what cannot be on this machine: its listen
ports become loopback ports, the certificate paths point at a throwaway certificate and the
upstream at the test's Tollway port. The test client connects from 127.0.0.2 (any 127/8
address is loopback) so the address nginx and Tollway see differs from nginx's own 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import require_tool
from tests.servers import free_port, serve_in_thread, tollway_env
from tollway.samples import echo

from .helpers import CLEAN_EXIT, DEPLOY, prepare_store, process_env, running, stop, wait_http

NGINX = "/usr/sbin/nginx"
SAMPLE = DEPLOY / "nginx" / "tollway.conf"
CLIENT_ADDRESS = "127.0.0.2"
SECRET = "test-secret-key-0123456789"


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and api.example.com."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("api.example.com"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def loopback_variant(
    text: str, *, tollway_port: int, http_port: int, https_port: int, cert: Path, key: Path
) -> str:
    """The sample with loopback ports and the test certificate; everything else unchanged."""
    replacements = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{tollway_port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/letsencrypt/live/api.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/api.example.com/privkey.pem": str(key),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"the sample no longer contains {old!r}"
        text = text.replace(old, new)
    # IPv6 listeners: the test binds loopback IPv4 only.
    return "\n".join(line for line in text.splitlines() if "listen [::]" not in line)


def nginx_main_config(prefix: Path, site: Path) -> str:
    """A minimal nginx.conf that includes the site file, as /etc/nginx/nginx.conf does."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the temp prefix
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {prefix}/access.log;\n{temp}\n    include {site};\n}}\n"
    )


@dataclass
class Stack:
    nginx_http: str
    nginx_https: str
    tollway: str
    key: str
    tls: ssl.SSLContext
    tollway_process: subprocess.Popen[str]

    def tollway_log(self) -> str:
        """Stop Tollway (SIGTERM) and return everything it logged."""
        code, output = stop(self.tollway_process)
        assert code in CLEAN_EXIT, output
        return output


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx = require_tool("nginx", package="nginx-light", path=NGINX)
    tmp_path = tmp_path_factory.mktemp("nginx-stack")
    database_url = f"sqlite:///{tmp_path / 'tollway.db'}"
    with serve_in_thread(echo.app) as echo_url:
        key = prepare_store(database_url, echo_url)
        tollway_port, http_port, https_port = free_port(), free_port(), free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        cert, cert_key = write_certificate(prefix)
        site = prefix / "tollway.conf"
        site.write_text(
            loopback_variant(
                SAMPLE.read_text(),
                tollway_port=tollway_port,
                http_port=http_port,
                https_port=https_port,
                cert=cert,
                key=cert_key,
            )
        )
        main = prefix / "nginx.conf"
        main.write_text(nginx_main_config(prefix, site))
        serve_env = process_env(
            tollway_env(
                database_url,
                TOLLWAY_PORT=str(tollway_port),
                TOLLWAY_TRUSTED_PROXIES="127.0.0.1",
                TOLLWAY_ACCESS_LOG="true",
            )
        )
        nginx_cmd = [nginx, "-p", str(prefix), "-c", str(main), "-e", str(prefix / "error.log")]
        with (
            running(["tollway", "serve"], serve_env) as tollway,
            running(nginx_cmd, dict(os.environ)) as proxy,
        ):
            tollway_url = f"http://127.0.0.1:{tollway_port}"
            wait_http(f"{tollway_url}/-/ready", tollway)
            tls = ssl.create_default_context(cafile=str(cert))
            https = f"https://127.0.0.1:{https_port}"
            wait_for_nginx(proxy, https, tls)
            yield Stack(f"http://127.0.0.1:{http_port}", https, tollway_url, key, tls, tollway)
            stop(proxy)
            if tollway.poll() is None:
                code, text = stop(tollway)
                assert code in CLEAN_EXIT, text


def wait_for_nginx(proxy: subprocess.Popen[str], https: str, tls: ssl.SSLContext) -> None:
    """Wait until nginx answers /-/health through to Tollway."""
    for _ in range(200):
        if proxy.poll() is not None:
            raise AssertionError(f"nginx exited:\n{proxy.stdout.read() if proxy.stdout else ''}")
        try:
            if httpx.get(f"{https}/-/health", verify=tls, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("nginx did not start")


def client(tls: ssl.SSLContext | bool = True) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=tls)
    return httpx.Client(transport=transport, timeout=10)


def echoed(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    headers: dict[str, str] = {}
    for name, value in body["headers"]:
        headers[name] = value
    return headers


@pytest.mark.slow
def test_nginx_terminates_tls_and_tollway_sees_the_client(stack: Stack) -> None:
    with client(stack.tls) as http:
        # Plain HTTP is redirected to HTTPS.
        redirect = http.get(f"{stack.nginx_http}/echo/x", headers={"Host": "api.example.com"})
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "https://api.example.com/echo/x"
        response = http.get(f"{stack.nginx_https}/echo/x", headers={"X-API-Key": stack.key})
        forged = http.get(
            f"{stack.nginx_https}/echo/x",
            headers={"X-API-Key": stack.key, "X-Forwarded-For": "198.51.100.9"},
        )
    assert response.headers["strict-transport-security"].startswith("max-age=")
    headers = echoed(response)
    # nginx appended the client; Tollway appended nginx (its peer) and passed it on.
    assert headers["x-forwarded-for"] == f"{CLIENT_ADDRESS}, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    # A forged header stays to the left of what nginx saw; it cannot displace the client.
    assert echoed(forged)["x-forwarded-for"] == f"198.51.100.9, {CLIENT_ADDRESS}, 127.0.0.1"


@pytest.mark.slow
def test_forwarded_headers_are_ignored_from_untrusted_peers(stack: Stack) -> None:
    with client() as http:
        direct = http.get(
            f"{stack.tollway}/echo/x",
            headers={
                "X-API-Key": stack.key,
                "X-Forwarded-For": "198.51.100.9",
                "X-Forwarded-Proto": "https",
            },
        )
    headers = echoed(direct)
    assert headers["x-forwarded-for"] == CLIENT_ADDRESS
    assert headers["x-forwarded-proto"] == "http"


@pytest.mark.slow
def test_access_log_shows_the_client_behind_nginx(stack: Stack) -> None:
    # Runs last: it stops the module's Tollway to read its log. Every API call in this module
    # came from CLIENT_ADDRESS, through nginx or directly, so no line may name nginx's address.
    with client(stack.tls) as http:
        echoed(http.get(f"{stack.nginx_https}/echo/logged", headers={"X-API-Key": stack.key}))
    log = stack.tollway_log()
    lines = [
        line.split("tollway.access: ", 1)[1]
        for line in log.splitlines()
        if "tollway.access" in line and '"GET /echo"' in line  # (not the /-/ready polls)
    ]
    assert lines, log
    assert all(line.startswith(f'{CLIENT_ADDRESS} "GET /echo" 200') for line in lines), lines
