"""The webhook receiver app: ``create_app(settings)`` builds it, routes below."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tollway.samples.webhook.action import render_argv, run_action
from tollway.samples.webhook.checks import RejectedPayload, check_callback_url, check_names
from tollway.samples.webhook.deliveries import DeliveryLog
from tollway.samples.webhook.models import (
    Confirmation,
    DeliveryOut,
    DeliveryState,
    FieldError,
    Payload,
    Pong,
    ProblemOut,
    ValidationProblemOut,
)
from tollway.samples.webhook.settings import WebhookSettings

logger = logging.getLogger("tollway.samples.webhook")
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TITLES = {
    "untrusted-pusher": "Pusher not trusted",
    "invalid-repository": "Invalid repository or tag",
    "callback-not-allowed": "Callback URL not allowed",
    "callback-failed": "Callback failed",
    "invalid-body": "Invalid request body",
    "invalid-payload": "Payload does not match the schema",
}


def problem_response(
    kind: str, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An RFC 9457 response of type ``/-/problems/<kind>``."""
    title = PROBLEM_TITLES.get(kind) or HTTPStatus(status).phrase
    problem = ProblemOut(type=f"/-/problems/{kind}", title=title, status=status, detail=detail)
    return JSONResponse(
        problem.model_dump(), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    """422 as a problem naming each invalid field and why, never echoing the value sent."""
    errors = [
        FieldError(loc=list(error.get("loc", ())), msg=str(error.get("msg", "invalid")))
        for error in exc.errors()
    ]
    named = "; ".join(".".join(map(str, e.loc)) + f": {e.msg}" for e in errors)
    problem = ValidationProblemOut(
        type="/-/problems/invalid-payload",
        title=PROBLEM_TITLES["invalid-payload"],
        status=422,
        detail=f"Fix these fields of the push payload: {named}",
        errors=errors,
    )
    return JSONResponse(problem.model_dump(), status_code=422, media_type=PROBLEM_MEDIA_TYPE)


def problem_doc(description: str, model: type[ProblemOut] = ProblemOut) -> dict[str, Any]:
    # Documented by hand: a `model` in `responses` would be listed under application/json.
    schema = model.model_json_schema()
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}}}


POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc(
        "Untrusted pusher, invalid repository/tag, callback host not allowed, or a body that "
        "is not JSON."
    ),
    422: problem_doc("The body does not match the push payload's schema.", ValidationProblemOut),
    502: problem_doc("The confirmation could not be posted to callback_url."),
}


class Receiver:
    """What one app instance holds: settings, the delivery log and the running actions."""

    def __init__(
        self, settings: WebhookSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.deliveries = DeliveryLog(settings.max_deliveries)
        self.tasks: set[asyncio.Task[None]] = set()

    def confirmation(self, payload: Payload) -> Confirmation:
        """The body posted to ``callback_url`` (the seed sent random words here)."""
        return Confirmation(
            description=f"Received {payload.repository.repo_name}:{payload.push_data.tag}",
            context="tollway webhook sample",
            target_url=self.settings.target_url,
        )

    async def confirm(self, url: httpx.URL, confirmation: Confirmation) -> str | None:
        """POST the confirmation; None on a 2xx, else why it failed (no redirects followed)."""
        body = confirmation.model_dump(exclude_none=True)
        # One short-lived client per delivery: pushes are rare, and it binds to no event loop.
        async with httpx.AsyncClient(timeout=self.settings.callback_timeout) as client:
            try:
                response = await client.post(url, json=body)
            except httpx.HTTPError as exc:
                return f"callback to {url.host} failed: {type(exc).__name__}"
        if not response.is_success:
            return f"callback to {url.host} answered {response.status_code}"
        return None

    def start_action(self, payload: Payload) -> None:
        """Record the delivery and run the action in the background."""
        repo, push = payload.repository, payload.push_data
        template = self.settings.action
        state: DeliveryState = "running" if template else "skipped"
        delivery = self.deliveries.add(repo.repo_name, push.tag, push.pusher, state)
        if not template:
            return
        values = {"repo_name": repo.repo_name, "namespace": repo.namespace, "name": repo.name}
        argv = render_argv(template, {**values, "tag": push.tag})
        limit, max_output = self.settings.action_timeout, self.settings.max_output_bytes
        coro = run_action(argv, delivery, limit, max_output, self.clock)
        task = asyncio.create_task(coro)
        self.tasks.add(task)  # a reference, so the task is not garbage-collected mid-run
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        """Cancel running actions (their processes are killed) and wait for them."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def check_payload(receiver: Receiver, payload: Payload) -> httpx.URL:
    """Run every check on ``payload``; returns the callback URL to confirm to."""
    settings = receiver.settings
    if payload.push_data.pusher not in settings.trusted_pushers:
        # Logged for later probing, as the seed did; %r keeps control characters out of the log.
        logger.warning(
            "rejected push to %r by untrusted pusher %r",
            payload.repository.repo_name,
            payload.push_data.pusher,
        )
        raise RejectedPayload(
            "untrusted-pusher", f"pusher {payload.push_data.pusher!r} is not a trusted account"
        )
    check_names(payload)
    return check_callback_url(
        payload.callback_url, settings.callback_hosts, https_only=settings.callback_https_only
    )


def create_app(
    settings: WebhookSettings | None = None, *, clock: Callable[[], float] = time.monotonic
) -> FastAPI:
    """Build the webhook receiver; without ``settings`` they come from ``WEBHOOK_*`` and .env.

    ``clock`` times the deploy actions (seconds; tests pass one they control).
    """
    receiver = Receiver(settings if settings is not None else WebhookSettings(), clock)
    docs = receiver.settings.docs_enabled

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await receiver.stop()

    app = FastAPI(
        title=receiver.settings.title,
        description="Sample API: receives Docker Hub push webhooks and runs a deploy action.",
        version="1.0.0",
        root_path=receiver.settings.root_path,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        lifespan=lifespan,
    )
    app.state.receiver = receiver

    @app.exception_handler(RejectedPayload)
    async def _rejected(request: Request, exc: RejectedPayload) -> JSONResponse:
        return problem_response(exc.kind, 400, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths, wrong methods and unparseable JSON bodies as problems too.
        kind = "invalid-body" if exc.status_code == 400 else f"http-{exc.status_code}"
        return problem_response(kind, exc.status_code, str(exc.detail), exc.headers)

    @app.get("/", response_model=Pong, summary="Test app liveliness")
    async def ping() -> Pong:
        """Answer `{"ping": "pong"}`: the base URL doubles as a liveness check."""
        return Pong()

    @app.post("/", response_model=Confirmation, responses=POST_RESPONSES, summary="Receive a push")
    async def receive_push(payload: Payload) -> Confirmation | JSONResponse:
        """Check and confirm a Docker Hub push, then run the deploy action in the background."""
        callback = check_payload(receiver, payload)
        confirmation = receiver.confirmation(payload)
        failure = await receiver.confirm(callback, confirmation)
        if failure is not None:
            logger.error("push of %r not confirmed: %s", payload.repository.repo_name, failure)
            repo, push = payload.repository, payload.push_data
            delivery = receiver.deliveries.add(
                repo.repo_name, push.tag, push.pusher, "callback_failed"
            )
            delivery.error = failure
            return problem_response("callback-failed", 502, failure)
        receiver.start_action(payload)
        return confirmation

    @app.get("/deliveries", response_model=list[DeliveryOut], summary="Recent deliveries")
    async def deliveries() -> list[DeliveryOut]:
        """Accepted pushes, newest first, with the outcome of their deploy action."""
        return [delivery.public() for delivery in receiver.deliveries.newest_first()]

    return app
