"""TOLLWAY_REDIS_URL's forms: what each means, and a clear refusal (never repeating the URL,
which may hold a password) for anything that cannot work, before a request is served."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tollway.cli import main
from tollway.stores import check_store_url
from tollway.stores.redis_url import BadRedisURL, parse


def test_the_forms_and_what_they_name(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("(a CA)")
    sentinel = parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/orders/2")
    assert (sentinel.mode, sentinel.tls, sentinel.service, sentinel.db) == (
        "sentinel", False, "orders", 2
    )  # fmt: skip
    assert sentinel.nodes == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert sentinel.auth == {"password": "s3cret"}
    tls = parse(f"rediss+sentinel://h:26379/orders?ssl_ca_certs={ca}&sentinel_password=x")
    assert tls.ssl == {"ssl": True, "ssl_ca_certs": str(ca)}
    assert (tls.db, tls.sentinel_auth) == (0, {"password": "x"})
    cluster = parse("redis+cluster://app:pw@h1:7000,[::1]:7001")
    assert (cluster.mode, cluster.nodes) == ("cluster", [("h1", 7000), ("::1", 7001)])
    assert cluster.auth == {"username": "app", "password": "pw"}
    single = parse(f"rediss://h:6380/0?ssl_ca_certs={ca}&ssl_cert_reqs=required&socket_timeout=2")
    assert single.ssl == {"ssl": True, "ssl_ca_certs": str(ca), "ssl_cert_reqs": "required"}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://user:s3cret@h/0", "unsupported Redis URL scheme 'mysql'"),
        ("redis://:s3cret@h:6379/0?ssl_ca_certs=/ca.pem", "ssl_ca_certs needs TLS: use rediss://"),
        ("rediss://:s3cret@h:6380/0?ssl_ca_certs=/no/such.pem", "no such file '/no/such.pem'"),
        ("rediss://:s3cret@h:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        ("rediss://:s3cret@h:6380/0?ssl_cert_reqs=Required", "ssl_cert_reqs must be one of"),
        ("rediss://:s3cret@h:6380/0?ssl_ca_cert=/ca.pem", "unknown Redis URL option 'ssl_ca_cert'"),
        ("redis+sentinel://:s3cret@h:26379", "needs the master name after the hosts"),
        ("redis+sentinel://:s3cret@h/orders", "hosts as host:port"),
        ("redis+cluster://:s3cret@h:7000/1", "database 0 only"),
        ("redis+cluster://:s3cret@h:7000?sentinel_password=x", "redis+sentinel:// URLs only"),
    ],
)
def test_a_url_that_cannot_work_is_refused_saying_what_to_fix(url: str, says: str) -> None:
    with pytest.raises(BadRedisURL) as refused:
        check_store_url(url)
    assert says in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_tollway_serve_refuses_a_bad_redis_url_in_one_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """(In-process: the check comes before anything is started or migrated.)"""
    monkeypatch.setenv("TOLLWAY_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TOLLWAY_REDIS_URL", "redis+sentinel://:s3cret@h:26379")
    monkeypatch.setattr(sys, "argv", ["tollway", "serve", "--port", "0"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: redis+sentinel:// needs the master name after the hosts: "
        "redis+sentinel://host:26379[,host:26379]/master-name[/db]"
    ]
