"""Public API docs: `/docs` (catalogue), `/docs/<api>` (Swagger UI) and its openapi.json.

The OpenAPI document is fetched from the backend *through the same backend target the gateway
forwards with* (so injected credentials apply) and rewritten: ``servers`` point at the gateway
prefix and the subscription key is declared as an apiKey scheme (header and query), so
"Try it out" works through the gateway and the backend needs no ``root_path`` workaround.
Swagger UI's assets are served from the installed ``fastapi-offline`` package, never a CDN.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from html import escape
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tollway import problems
from tollway.gateway.snapshot.state import GatewayState
from tollway.gateway.snapshot.state import Route as ApiRoute
from tollway.gateway.upstream.backends import BodyFraming, UpstreamRequest
from tollway.gateway.upstream.client import UpstreamError
from tollway.site.internal import problem_exception_handlers, problem_response
from tollway.site.openapi import add_gateway_answers
from tollway.types import ASGIApp, Message, Receive, Scope, Send

NO_OPENAPI = problems.register_problem(
    problems.ProblemType(
        "no-openapi",
        "No API description",
        404,
        "This API does not publish an OpenAPI document.",
    )
)
MAX_DOCUMENT = 10 * 1024 * 1024
CACHE_SECONDS = 30.0
SWAGGER_ASSETS = str(files("fastapi_offline") / "static")
OWN_ASSETS = str(files("tollway.site") / "static")


class DocumentCache:
    """Rewritten OpenAPI documents per API for a short while (backends change rarely)."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}

    def get(self, route: ApiRoute) -> dict[str, Any] | None:
        entry = self._entries.get((route.name, id(route)))
        if entry and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    def put(self, route: ApiRoute, document: dict[str, Any]) -> None:
        self._entries[(route.name, id(route))] = (time.monotonic(), document)


async def fetch_backend_document(route: ApiRoute) -> dict[str, Any]:
    """GET the backend's OpenAPI document via the route's backend target."""
    assert route.openapi is not None
    path, _, query = route.openapi.partition("?")
    status = 0
    chunks: list[bytes] = []
    size = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))
            if size > MAX_DOCUMENT:
                raise UpstreamError("the backend's OpenAPI document is too large")
            chunks.append(message.get("body", b""))

    request = UpstreamRequest(
        method="GET",
        path=path.encode(),
        query=query.encode(),
        headers=[(b"accept", b"application/json")],
        host=b"",
        framing=BodyFraming.NONE,
        scope={"type": "http", "scheme": "http", "http_version": "1.1", "client": None},
    )
    await route.backend.forward(request, receive, send)
    if status != 200:
        raise UpstreamError(f"the backend answered {status} for {route.openapi}")
    try:
        document = json.loads(b"".join(chunks))
    except ValueError:
        raise UpstreamError("the backend's OpenAPI document is not JSON") from None
    if not isinstance(document, dict) or not ("openapi" in document or "swagger" in document):
        raise UpstreamError(f"{route.openapi} on the backend is not an OpenAPI document")
    return document


def rewrite_document(document: dict[str, Any], route: ApiRoute) -> dict[str, Any]:
    """Point the document at the gateway, declare the subscription key, add its answers."""
    doc = copy.deepcopy(document)
    if route.operations is not None:
        _keep_only_allowed_operations(doc, route)
    add_gateway_answers(doc, route)
    if "swagger" in doc:  # Swagger 2.0
        doc["basePath"] = route.prefix + (doc.get("basePath") or "").rstrip("/")
        doc.pop("host", None)
        if route.subscription_required:
            doc.setdefault("securityDefinitions", {}).update(_schemes(route))
            doc["security"] = [{name: []} for name in _schemes(route)]
        return doc
    doc["servers"] = [{"url": route.prefix, "description": "Tollway gateway"}]
    if route.subscription_required:
        components = doc.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(_schemes(route))
        doc["security"] = [{name: []} for name in _schemes(route)]
    return doc


def _schemes(route: ApiRoute) -> dict[str, dict[str, str]]:
    description = "Subscription key from the Tollway developer portal."
    return {
        "subscriptionKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": route.key_header_name,
            "description": description,
        },
        "subscriptionKeyQuery": {
            "type": "apiKey",
            "in": "query",
            "name": route.key_query.decode(),
            "description": description,
        },
    }


def _keep_only_allowed_operations(doc: dict[str, Any], route: ApiRoute) -> None:
    assert route.operations is not None
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return
    for path, item in list(paths.items()):
        if not isinstance(item, dict):
            continue
        for method in list(item):
            if method.upper() in ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"):
                concrete = path.encode()
                allowed = route.operations.find(method.upper(), concrete) or any(
                    op.template == path and op.method in ("*", method.upper())
                    for op in route.operations.templated
                )
                if not allowed:
                    del item[method]
        if not any(m.upper() in ("GET", "PUT", "POST", "DELETE", "PATCH") for m in item):
            del paths[path]


def _page(title: str, body: str, head: str = "") -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/docs/-/tollway/docs.css">{head}
</head><body>
<header><a href="/docs">Tollway API docs</a></header>
{body}
</body></html>"""
    return HTMLResponse(html)


NO_FRAMING = [
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
]


def refusing_frames(app: ASGIApp) -> ASGIApp:
    """``app`` with every answer forbidding other sites to frame it (clickjacking)."""

    async def framed(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *NO_FRAMING]}
            await send(message)

        await app(scope, receive, send_with_headers)

    return framed


ADMIN_OPENAPI = "/admin/api/v1/openapi.json"


def create_docs_app(get_state: Callable[[], GatewayState]) -> ASGIApp:
    """The ``/docs`` app; ``get_state`` returns the gateway's current state."""
    cache = DocumentCache()

    def find(name: str) -> ApiRoute | None:
        for route in get_state().apis():
            if route.name == name and route.published:
                return route
        return None

    async def catalogue(request: Request) -> Response:
        items = []
        for route in get_state().apis():
            if not route.published:
                continue
            access = "key required" if route.subscription_required else "open"
            items.append(
                f'<section class="api"><h2><a href="/docs/{escape(route.name)}">'
                f"{escape(route.title)}</a></h2><p>{escape(route.description)}</p>"
                f"<p><code>{escape(route.prefix)}</code> "
                f'<span class="tag">{access}</span></p></section>'
            )
        listing = "".join(items) or "<p>No APIs are published yet.</p>"
        admins = (
            '<p class="admin">For administrators: the <a href="/docs/-/admin">admin API</a> '
            "(an admin token is needed to call it).</p>"
        )
        return _page("APIs", f"<main><h1>APIs</h1>{listing}{admins}</main>")

    async def admin_api(request: Request) -> Response:
        """Swagger UI for the admin API's own document (docs/admin-api.md)."""
        head = '\n<link rel="stylesheet" href="/docs/-/swagger/swagger-ui.css">'
        body = (
            f'<div id="swagger-ui" data-openapi-url="{ADMIN_OPENAPI}"></div>'
            '<script src="/docs/-/swagger/swagger-ui-bundle.js"></script>'
            '<script src="/docs/-/tollway/docs-init.js"></script>'
        )
        return _page("Tollway admin API", body, head)

    async def swagger_ui(request: Request) -> Response:
        route = find(request.path_params["api"])
        if route is None:
            return problem_response(problems.NOT_FOUND, "no published API with this name")
        openapi_url = f"/docs/{route.name}/openapi.json"
        head = '\n<link rel="stylesheet" href="/docs/-/swagger/swagger-ui.css">'
        body = (
            f'<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>'
            '<script src="/docs/-/swagger/swagger-ui-bundle.js"></script>'
            '<script src="/docs/-/tollway/docs-init.js"></script>'
        )
        return _page(f"{route.title} API", body, head)

    async def openapi(request: Request) -> Response:
        route = find(request.path_params["api"])
        if route is None:
            return problem_response(problems.NOT_FOUND, "no published API with this name")
        if route.openapi is None:
            return problem_response(NO_OPENAPI)
        document = cache.get(route)
        if document is None:
            try:
                document = rewrite_document(await fetch_backend_document(route), route)
            except UpstreamError as exc:
                return problem_response(problems.BACKEND_UNREACHABLE, str(exc))
            cache.put(route, document)
        return JSONResponse(document)

    return refusing_frames(
        Starlette(
            exception_handlers=problem_exception_handlers(),
            routes=[
                Route("/docs", catalogue),
                Route("/docs/", catalogue),
                Mount("/docs/-/swagger", StaticFiles(directory=SWAGGER_ASSETS), name="swagger"),
                Mount("/docs/-/tollway", StaticFiles(directory=OWN_ASSETS), name="tollway"),
                Route("/docs/-/admin", admin_api),
                Route("/docs/{api}", swagger_ui),
                Route("/docs/{api}/openapi.json", openapi),
            ],
        )
    )
