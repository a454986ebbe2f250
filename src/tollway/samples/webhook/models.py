"""Pydantic models: Docker Hub's push payload, the confirmation, deliveries and problems.

The payload follows Docker Hub's documented webhook body (docs.docker.com, "Webhooks"); fields
Docker Hub may add later are ignored rather than rejected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_CALLBACK = (
    "https://registry.hub.docker.com/u/account1/geo-api/hook/2jg2hgehh4wAYi0eaimEAQ8SC04qe2CW2/"
)

DeliveryState = Literal["running", "succeeded", "failed", "timed_out", "skipped", "callback_failed"]


class PushData(BaseModel):
    """What was pushed, and by whom."""

    model_config = ConfigDict(extra="ignore")

    pusher: str = Field(max_length=255, description="Docker Hub account that pushed.")
    tag: str = Field(max_length=255, description="The pushed tag.", examples=["latest"])
    pushed_at: datetime | None = Field(None, description="When the image was pushed.")


class Repository(BaseModel):
    """The Docker Hub repository the image was pushed to."""

    model_config = ConfigDict(extra="ignore")

    repo_name: str = Field(
        max_length=255, description="namespace/name", examples=["account1/geo-api"]
    )
    namespace: str = Field(max_length=255, description="Owning account.", examples=["account1"])
    name: str = Field(max_length=255, description="Repository name.", examples=["geo-api"])
    owner: str | None = Field(None, max_length=255, description="Owner account.")
    repo_url: str | None = Field(None, max_length=2048, description="Repository page.")
    description: str | None = Field(None, description="Short description.")
    full_description: str | None = Field(None, description="Long description.")
    dockerfile: str | None = Field(None, description="Dockerfile content (automated builds).")
    date_created: datetime | None = Field(None, description="When the repository was created.")
    comment_count: int | None = Field(None, description="Number of comments.")
    star_count: int | None = Field(None, description="Number of stars.")
    is_official: bool | None = Field(None, description="Official image?")
    is_private: bool | None = Field(None, description="Private repository?")
    is_trusted: bool | None = Field(None, description="Automated build?")
    status: str | None = Field(None, description="Repository status, e.g. Active.")


class Payload(BaseModel):
    """The body Docker Hub POSTs when an image is pushed."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "callback_url": EXAMPLE_CALLBACK,
                    "push_data": {"pusher": "account1", "tag": "latest", "pushed_at": 1645586259},
                    "repository": {
                        "repo_name": "account1/geo-api",
                        "namespace": "account1",
                        "name": "geo-api",
                        "owner": "account1",
                        "repo_url": "https://hub.docker.com/r/account1/geo-api",
                        "is_private": True,
                        "status": "Active",
                    },
                }
            ]
        },
    )

    callback_url: str = Field(
        max_length=2048, description="Where to confirm the delivery (validates the chain)."
    )
    push_data: PushData
    repository: Repository


class Confirmation(BaseModel):
    """The callback body Docker Hub expects; also the response to a successful delivery."""

    state: Literal["success"] = "success"
    description: str = Field(description="What was received.")
    context: str = Field(description="Who confirmed it.")
    target_url: str | None = Field(None, description="Where to follow the deployment, if set.")


class Pong(BaseModel):
    """Liveness answer."""

    ping: Literal["pong"] = "pong"


class DeliveryOut(BaseModel):
    """One accepted push and what the deploy action did with it."""

    id: int = Field(description="Sequence number, counting from 1 since start-up.")
    received_at: datetime
    repo_name: str
    tag: str
    pusher: str
    state: DeliveryState = Field(description="Where the delivery stands.")
    exit_code: int | None = Field(description="The action's exit code, once it ended.")
    duration_seconds: float | None = Field(description="How long the action ran.")
    timed_out: bool = Field(description="The action was killed at the timeout.")
    output: str = Field(description="The start of the action's combined stdout/stderr.")
    output_truncated: bool = Field(description="The output was longer than kept.")
    error: str | None = Field(description="Why the action or the callback failed, if it did.")


class ProblemOut(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(description="Stable URI identifying the problem.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")


class FieldError(BaseModel):
    """One invalid field of a request body: where and why, never the value sent."""

    loc: list[str | int] = Field(description="Path to the field, e.g. body.push_data.pusher.")
    msg: str = Field(description="What is wrong with it.")


class ValidationProblemOut(ProblemOut):
    """A 422 problem: the body does not match the schema (the input is not echoed back)."""

    errors: list[FieldError] = Field(description="Each invalid field.")
