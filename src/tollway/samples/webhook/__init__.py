"""The Docker Hub webhook receiver sample (seed 003), with the seed's security holes fixed.

``POST /`` takes Docker Hub's push payload, accepts only trusted pushers, confirms to the
``callback_url`` (allowed hosts only) and runs a configured argv template such as
``["docker", "pull", "{repo_name}"]`` in the background, without a shell and with a timeout.
``GET /deliveries`` shows what happened; ``GET /`` answers ``{"ping": "pong"}``.

Run it alone with ``uvicorn tollway.samples.webhook:app`` (settings from ``WEBHOOK_*`` variables
and ``.env``), or behind the gateway as the in-process backend ``tollway.samples.webhook:app``.
The defaults trust no pusher and run no action.
"""

from __future__ import annotations

from tollway.samples.webhook.app import create_app
from tollway.samples.webhook.settings import WebhookSettings

__all__ = ["WebhookSettings", "app", "create_app"]

app = create_app()
