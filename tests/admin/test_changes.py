"""Changes through the admin API: all-or-nothing config documents, optimistic concurrency, and
one audit row per change from every door (API, portal admin, portal self-service), with no
secret in any row."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select

from tests.portal.conftest import PASSWORD, cheap_argon2, csrf_of
from tollway.db.models import ChangeLog, UserRole
from tollway.db.session import transaction
from tollway.services import users
from tollway.services.passwords import hash_password

from .conftest import API, Admin

__all__ = ["cheap_argon2"]  # (the portal's cheap argon2id, for the sign-ins below)


def change_log_size(admin: Admin) -> int:
    with transaction(admin.sessions) as session:
        return int(session.scalar(select(func.count(ChangeLog.id))) or 0)


BROKEN: list[tuple[str, str, str]] = [
    ("application/yaml", "apis: [unclosed", "line 1"),
    ("application/yaml", "apis:\n  x:\n    path: /x\n    backend: nowhere\n", "apis.x.backend"),
    ("application/json", '{"backends": {"b": {"url": "ftp://x"}}}', "backends.b.url"),
    (
        "application/yaml",
        "backends:\n  b: {url: 'http://127.0.0.1:9'}\n"
        "apis:\n  y: {path: /y, backend: b, policies: [{type: no-such-policy}]}\n",
        "apis.y.policies[0]",
    ),
    ("application/yaml", "apis:\n  z: {path: /docs/z, backend: names}\n", "apis.z.path"),
    ("application/yaml", "backends:\n  c: {url: '${NOT_SENT}'}\n", "NOT_SENT"),
]


def test_a_broken_config_document_changes_nothing(admin: Admin) -> None:
    with admin.client(admin.write) as client:
        before = client.get("/config")
        log, audit = change_log_size(admin), admin.last_audit_id()
        for content_type, document, named in BROKEN:
            answer = client.put(
                "/config?prune=true", content=document, headers={"content-type": content_type}
            )
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert named in answer.json()["detail"]
        after = client.get("/config")
    assert after.json() == before.json() and after.headers["etag"] == before.headers["etag"]
    assert (change_log_size(admin), admin.last_audit_id()) == (log, audit)


def test_config_round_trip_dry_run_apply_and_prune(admin: Admin) -> None:
    with admin.client(admin.write) as client:
        exported = client.get("/config", headers={"accept": "application/yaml"})
        assert exported.headers["content-type"].startswith("application/yaml")
        document = yaml.safe_load(exported.text)
        unchanged = client.put("/config", content=exported.text)
        assert unchanged.json() == {"dry_run": False, "changed": False, "plan": ["no changes"]}

        document["apis"]["names"]["title"] = "Names, renamed"
        del document["apis"]["hidden"]
        body = json.dumps(document)
        audit = admin.last_audit_id()
        planned = client.put("/config?dry_run=true&prune=true", content=body)
        assert planned.json()["plan"] == ["~ update api names (title)", "- delete api hidden"]
        assert planned.json()["changed"] is False
        assert client.get("/apis/names").json()["title"] == "Names"
        assert admin.last_audit_id() == audit

        stale = client.put("/config", content=body, headers={"if-match": '"0123"'})
        assert stale.status_code == 412
        applied = client.put(
            "/config?prune=true", content=body, headers={"if-match": exported.headers["etag"]}
        )
        assert applied.status_code == 200 and applied.json()["changed"] is True
        assert client.get("/apis/names").json()["title"] == "Names, renamed"
        assert client.get("/apis/hidden").status_code == 404
    (row,) = [r for r in admin.audit() if r.id > audit]
    assert (row.actor, row.entity, row.action) == ("token:ci", "config", "apply")
    assert row.changes["plan"] == planned.json()["plan"]


def test_two_admins_with_the_same_etag_one_wins_one_gets_412(admin: Admin) -> None:
    with admin.client(admin.write) as first, admin.client(admin.write) as second:
        read_first, read_second = first.get("/products/gold"), second.get("/products/gold")
        assert read_first.headers["etag"] == read_second.headers["etag"]
        product = {k: v for k, v in read_first.json().items() if k not in ("name", "version")}
        won = first.put(
            "/products/gold",
            json={**product, "title": "Gold (first)"},
            headers={"if-match": read_first.headers["etag"]},
        )
        lost = second.put(
            "/products/gold",
            json={**product, "title": "Gold (second)"},
            headers={"if-match": read_second.headers["etag"]},
        )
        assert won.status_code == 200 and won.headers["etag"] != read_first.headers["etag"]
        assert lost.status_code == 412
        assert lost.headers["content-type"] == "application/problem+json"
        assert second.get("/products/gold").json()["title"] == "Gold (first)"
        deleted = second.delete("/products/gold", headers={"if-match": read_second.headers["etag"]})
        assert deleted.status_code == 412


def test_racing_writers_with_one_etag_exactly_one_wins(admin: Admin) -> None:
    with admin.client(admin.write) as client:
        read = client.get("/products/gold")
    product = {k: v for k, v in read.json().items() if k not in ("name", "version")}
    start = threading.Barrier(3)

    def put(title: str) -> int:
        with admin.client(admin.write) as client:
            start.wait(timeout=30)
            return client.put(
                "/products/gold",
                json={**product, "title": title},
                headers={"if-match": read.headers["etag"]},
            ).status_code

    with ThreadPoolExecutor(3) as pool:
        statuses = sorted(pool.map(put, ["one", "two", "three"]))
    assert statuses == [200, 412, 412]
    assert len([r for r in admin.audit(entity="product", action="update")]) == 1


SECRET_VALUE = "n0t-for-the-log-4711"


def test_every_api_change_leaves_one_audit_row_without_secrets(admin: Admin) -> None:
    changes: list[tuple[str, str, Any, str, str]] = [
        ("POST", "/backends", {"name": "b2", "url": "http://127.0.0.1:9"}, "backend", "create"),
        (
            "POST",
            "/named-values",
            {"name": "upstream-key", "value": SECRET_VALUE, "secret": True},
            "named-value",
            "create",
        ),
        (
            "PUT",
            "/backends/b2",
            {"url": "http://127.0.0.1:9", "headers": {"Authorization": "{{upstream-key}}"}},
            "backend",
            "update",
        ),
        (
            "PUT",
            "/policies",
            {"policies": [{"type": "rate-limit", "calls": 9, "period": 60}]},
            "policies",
            "update",
        ),
        ("POST", "/users", {"email": "partner@example.com"}, "user", "create"),
        ("PATCH", "/users/1", {"state": "blocked"}, "user", "block"),
        (
            "POST",
            "/subscriptions",
            {"user": "partner@example.com", "product": "starter"},
            "subscription",
            "create",
        ),
        (
            "POST",
            "/subscriptions/1/keys/secondary/regenerate",
            None,
            "subscription",
            "regenerate-key",
        ),
        ("POST", "/subscriptions/1/cancel", None, "subscription", "cancel"),
        ("DELETE", "/named-values/upstream-key", None, "named-value", "delete"),
    ]
    shown: list[str] = []
    with admin.client(admin.write) as client:
        for method, path, body, entity, action in changes:
            if method == "DELETE":  # the backend must stop using it first
                client.put("/backends/b2", json={"url": "http://127.0.0.1:9"})
            before = admin.last_audit_id()
            answer = client.request(method, path, json=body)
            assert answer.status_code in (200, 201, 204), (path, answer.text)
            shown.append(answer.text)
            rows = [r for r in admin.audit() if r.id > before]
            assert [(r.entity, r.action) for r in rows] == [(entity, action)], path
            assert (rows[0].actor, rows[0].address) == ("token:ci", "127.0.0.1")
    keys = re.findall(r"tw_[0-9A-Za-z]{46}", "".join(shown))
    assert len(keys) == 3  # two on creation, one regenerated: each shown once
    everything = json.dumps([r.changes for r in admin.audit()])
    for secret in [SECRET_VALUE, admin.write, *keys]:
        assert secret not in everything
    assert SECRET_VALUE not in "".join(shown)


@contextmanager
def signed_in(base: str, email: str) -> Iterator[httpx.Client]:
    """A browser-like client over the socket, signed in to the portal as ``email``."""
    with httpx.Client(base_url=base, timeout=30) as browser:
        page = browser.get("/portal/signin")
        form = {"csrf_token": csrf_of(page), "email": email, "password": PASSWORD}
        answer = browser.post("/portal/signin", data={**form, "next_url": "/portal/"})
        assert answer.status_code == 303, answer.text
        yield browser


def test_portal_changes_are_audited_with_the_signed_in_user(admin: Admin) -> None:
    with transaction(admin.sessions) as session:
        for email, role in (("boss@example.com", UserRole.admin), ("dev2@example.com", None)):
            users.create_user(
                session,
                email,
                role=role or UserRole.developer,
                password_hash=hash_password(PASSWORD),
            )
    start = admin.last_audit_id()
    with signed_in(admin.base, "dev2@example.com") as developer:
        account = developer.get("/portal/account")
        subscribed = developer.post(
            "/portal/subscribe", data={"csrf_token": csrf_of(account), "product": "gold"}
        )
        assert subscribed.status_code == 201
        sub_id = int(re.findall(r"/portal/subscriptions/(\d+)/regenerate", subscribed.text)[0])
        regenerated = developer.post(
            f"/portal/subscriptions/{sub_id}/regenerate",
            data={"csrf_token": csrf_of(account), "slot": "primary"},
        )
        assert regenerated.status_code == 200
        page_keys = re.findall(r"tw_[0-9A-Za-z]{46}", subscribed.text + regenerated.text)
    with signed_in(admin.base, "boss@example.com") as boss:
        overview = boss.get("/portal/admin")
        approved = boss.post(
            f"/portal/admin/subscriptions/{sub_id}",
            data={"csrf_token": csrf_of(overview), "action": "approve"},
        )
        assert approved.status_code == 303
    rows = [r for r in admin.audit() if r.id > start]
    assert [(r.actor, r.entity, r.entity_id, r.action) for r in rows] == [
        ("user:dev2@example.com", "subscription", str(sub_id), "create"),
        ("user:dev2@example.com", "subscription", str(sub_id), "regenerate-key"),
        ("user:boss@example.com", "subscription", str(sub_id), "approve"),
    ]
    assert all(r.address == "127.0.0.1" for r in rows)
    assert rows[2].changes == {"before": {"state": "submitted"}, "after": {"state": "active"}}
    assert page_keys and not any(key in json.dumps(r.changes) for r in rows for key in page_keys)
    with admin.client(admin.read) as client:
        listed = client.get("/audit", params={"actor": "user:boss@example.com"}).json()
        assert [item["action"] for item in listed["items"]] == ["approve"]
        wrong = client.get("/audit", params={"since": "yesterday"})
        assert wrong.status_code == 422 and wrong.json()["errors"] == [{"field": "since"}]
        first = client.get("/audit", params={"limit": 2, "since": "1h"}).json()
        rest = client.get("/audit", params={"limit": 500, "cursor": first["next_cursor"]}).json()
        ids = [item["id"] for item in first["items"] + rest["items"]]
        assert ids == sorted(ids, reverse=True) and len(ids) == len(admin.audit())


def test_portal_admins_use_the_api_with_their_session_and_csrf_token(admin: Admin) -> None:
    with transaction(admin.sessions) as session:
        for email, role in (("boss@example.com", UserRole.admin), ("dev2@example.com", None)):
            users.create_user(
                session,
                email,
                role=role or UserRole.developer,
                password_hash=hash_password(PASSWORD),
            )
    bridge = "/portal/admin/api/v1"
    with httpx.Client(base_url=admin.base) as anonymous:
        assert anonymous.get(f"{bridge}/apis").status_code == 401
    with signed_in(admin.base, "dev2@example.com") as developer:
        assert developer.get(f"{bridge}/apis").status_code == 403
        assert developer.get(f"{API}/apis").status_code == 401  # the cookie is not sent there
    with signed_in(admin.base, "boss@example.com") as boss:
        listed = boss.get(f"{bridge}/apis")
        assert listed.status_code == 200 and listed.json()["items"]
        new_user = {"email": "partner@example.com"}
        forged = boss.post(f"{bridge}/users", json=new_user)  # what another site could send
        assert forged.status_code == 403
        assert forged.json()["type"] == "/-/problems/portal-csrf"
        token = csrf_of(boss.get("/portal/admin"))
        made = boss.post(f"{bridge}/users", json=new_user, headers={"x-csrf-token": token})
        assert made.status_code == 201, made.text
    (row,) = admin.audit(entity="user", action="create", entity_id=str(made.json()["id"]))
    assert (row.actor, row.address) == ("user:boss@example.com", "127.0.0.1")
