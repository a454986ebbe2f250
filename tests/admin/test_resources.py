"""Admin API resources beyond the basics: list filters and cursors, users, subscription states
(APIM's), usage per subscription, API, product and period, and the config entries' conflicts."""

from __future__ import annotations

from datetime import timedelta

from tollway.db.models import Usage, utcnow
from tollway.db.session import transaction

from .conftest import Admin


def test_lists_filter_and_page_with_a_cursor(admin: Admin) -> None:
    with admin.client(admin.write) as client:
        for n in range(5):
            assert client.post("/users", json={"email": f"p{n}@example.com"}).status_code == 201
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, "email": "@example.com", **({"cursor": cursor} if cursor else {})}
            page = client.get("/users", params=params).json()
            seen += [user["email"] for user in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["dev@example.com"] + [f"p{n}@example.com" for n in range(5)]
        apis = client.get("/apis", params={"limit": 2}).json()
        rest = client.get("/apis", params={"cursor": apis["next_cursor"]}).json()
        names = [a["name"] for a in apis["items"] + rest["items"]]
        assert names == sorted(names) and len(names) == 5
        assert client.get("/apis", params={"q": "nam"}).json()["items"][0]["name"] == "names"
        bad = client.get("/users", params={"cursor": "!!"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
        assert client.get("/users", params={"limit": 0}).json()["errors"][0]["field"] == (
            "query.limit"
        )


def test_users_and_subscription_states(admin: Admin) -> None:
    with admin.client(admin.write) as client:
        taken = client.post("/users", json={"email": "DEV@example.com"})
        assert taken.status_code == 409
        not_email = client.post("/users", json={"email": "nobody"})
        assert not_email.status_code == 422 and "nobody" in not_email.json()["detail"]
        user = client.get("/users", params={"email": "dev@"}).json()["items"][0]
        changed = client.patch(
            f"/users/{user['id']}",
            json={"name": "Dev Eloper", "role": "admin"},
            headers={"if-match": f'"v{user["version"]}"'},
        )
        assert changed.json()["name"] == "Dev Eloper" and changed.json()["role"] == "admin"
        assert client.get("/users/999").status_code == 404

        made = client.post(
            "/subscriptions",
            json={"user": "dev@example.com", "product": "gold", "state": "submitted"},
        ).json()
        sub = f"/subscriptions/{made['id']}"
        assert client.post(f"{sub}/suspend").status_code == 409  # not active yet
        assert client.post(f"{sub}/approve").json()["state"] == "active"
        assert client.post(f"{sub}/approve").status_code == 409  # no longer waiting
        assert client.post(f"{sub}/suspend").json()["state"] == "suspended"
        assert client.post(f"{sub}/activate").json()["state"] == "active"
        assert client.post(f"{sub}/cancel").json()["state"] == "cancelled"
        assert client.post(f"{sub}/activate").status_code == 409
        assert client.post(f"{sub}/explode").status_code == 422
        listed = client.get("/subscriptions", params={"user": "dev@example.com"}).json()
        assert [s["state"] for s in listed["items"]] == ["cancelled"]
        assert client.get("/subscriptions", params={"product": "nope"}).json()["items"] == []
        assert (
            client.post(
                "/subscriptions", json={"user": "dev@example.com", "product": "nope"}
            ).status_code
            == 404
        )


def test_usage_per_subscription_api_product_and_period(admin: Admin) -> None:
    with admin.client(admin.write) as client:
        made = client.post(
            "/subscriptions", json={"user": "dev@example.com", "product": "starter"}
        ).json()
        names = client.get("/apis/names").json()
    now = utcnow().replace(second=0, microsecond=0)
    with transaction(admin.sessions) as session:
        api_ids = {row.name: row.id for row in session.query(__import__("tollway").db.models.Api)}
        for minutes_ago, api, status, calls in (
            (5, "names", 2, 3),
            (5, "echo", 4, 1),
            (90, "names", 2, 2),
        ):
            session.add(
                Usage(
                    subscription_id=made["id"],
                    api_id=api_ids[api],
                    minute=now - timedelta(minutes=minutes_ago),
                    status_class=status,
                    calls=calls,
                )
            )
    assert names["name"] == "names"
    with admin.client(admin.read) as client:
        daily = client.get("/usage", params={"subscription": made["id"], "period": "30d"}).json()
        assert daily["total"]["calls"] == 6 and daily["step"] == "day"
        assert daily["total"]["by_status"] == {"1xx": 0, "2xx": 5, "3xx": 0, "4xx": 1, "5xx": 0}
        hourly = client.get("/usage", params={"product": "starter", "period": "24h"}).json()
        assert sum(b["calls"] for b in hourly["buckets"]) == 6 and len(hourly["buckets"]) == 24
        by_api = client.get("/usage", params={"api": "names", "period": "1h"}).json()
        assert by_api["total"]["calls"] == 3 and by_api["total"]["error_rate"] == 0
        assert client.get("/usage", params={"api": "nope"}).status_code == 404
        assert client.get("/usage", params={"period": "soon"}).status_code == 422
        assert client.get("/usage", params={"subscription": 999}).status_code == 404


def test_config_entries_conflicts_and_scoped_policies(admin: Admin) -> None:
    with admin.client(admin.write) as client:
        assert client.post("/backends", json={"name": "names", "app": "x:y"}).status_code == 409
        assert client.delete("/backends/echo").status_code == 409  # APIs use it
        assert client.delete("/apis/names").status_code == 409  # products list it
        assert client.delete("/products/metered").status_code == 204
        api = client.get("/apis/names").json()
        body = {k: v for k, v in api.items() if k not in ("name", "version")}
        body["operations"] = [{"method": "GET", "path": "/generate_name"}]
        assert client.put("/apis/names", json=body).status_code == 200
        policy = {"policies": [{"type": "rate-limit", "calls": 2, "period": 60}]}
        put = client.put("/apis/names/operations/0/policies", json=policy)
        assert put.status_code == 200, put.text
        assert client.get("/apis/names").json()["operations"][0]["policies"][0]["calls"] == 2
        assert client.get("/apis/names/operations/3/policies").status_code == 404
        wrong = client.put("/products/gold/policies", json={"policies": [{"type": "nope"}]})
        assert wrong.status_code == 422
        stale = client.put("/policies", json={"policies": []}, headers={"if-match": '"x"'})
        assert stale.status_code == 412
        missing = client.put("/apis/ghost", json={"path": "/ghost", "backend": "echo"})
        assert missing.status_code == 404
        gold = client.get("/products/gold")
        relinked = client.put(
            "/products/gold",
            json={"apis": ["echo", "names"], "approval_required": True, "title": "Gold"},
            headers={"if-match": gold.headers["etag"]},
        )
        assert relinked.json()["apis"] == ["echo", "names"]
        assert relinked.headers["etag"] != gold.headers["etag"]  # only its links changed
        moved = client.put("/apis/hidden", json={"path": "/names", "backend": "echo"})
        assert moved.status_code == 409 and "already used by api 'names'" in moved.text
