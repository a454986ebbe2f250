"""The gateway's own answers, added to each operation of a rewritten OpenAPI document.

A client generated from the backend's document alone does not know that the gateway may answer
instead of the backend: 400 for a malformed path, 401 without a valid key, 403 when the key's
product lacks the API, 413 for a body over a size limit, 429 with ``Retry-After`` for a rate
limit or quota. Each is documented as ``application/problem+json`` (RFC 9457) with a shared
``TollwayProblem`` schema; a code the backend documents too keeps its entry, and gains the
problem media type and a sentence saying the gateway may answer it.
"""

from __future__ import annotations

from typing import Any

from tollway import problems
from tollway.gateway.snapshot.state import Route

SCHEMA_NAME = "TollwayProblem"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem from the Tollway gateway.",
    "properties": {
        "type": {"type": "string", "description": "Stable URI of the problem type."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What happened and what to do."},
    },
    "required": ["type", "title", "status", "detail"],
}
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "type": "integer"}


def _answers(route: Route) -> dict[str, tuple[problems.ProblemType, ...]]:
    keyed = (
        {
            "401": (problems.MISSING_KEY, problems.INVALID_KEY),
            "403": (problems.FORBIDDEN_API,),
        }
        if route.subscription_required
        else {}
    )
    return {
        "400": (problems.BAD_PATH,),
        **keyed,
        "413": (problems.REQUEST_TOO_LARGE,),
        "429": (problems.RATE_LIMITED, problems.QUOTA_EXCEEDED),
    }


def _description(kinds: tuple[problems.ProblemType, ...]) -> str:
    said = "; ".join(f"{p.title} (`{p.uri}`)" for p in kinds)
    return f"From the Tollway gateway: {said}."


def _response(kinds: tuple[problems.ProblemType, ...], swagger: bool) -> dict[str, Any]:
    if swagger:
        ref = {"$ref": f"#/definitions/{SCHEMA_NAME}"}
        response: dict[str, Any] = {"description": _description(kinds), "schema": ref}
        if kinds[0].status == 429:
            response["headers"] = {"Retry-After": RETRY_AFTER}
        return response
    ref = {"$ref": f"#/components/schemas/{SCHEMA_NAME}"}
    response = {"description": _description(kinds), "content": {MEDIA_TYPE: {"schema": ref}}}
    if kinds[0].status == 429:
        schema = {"type": "integer"}
        response["headers"] = {
            "Retry-After": {"description": RETRY_AFTER["description"], "schema": schema}
        }
    return response


def add_gateway_answers(doc: dict[str, Any], route: Route) -> None:
    """Document the gateway's answers on every operation of ``doc`` (in place)."""
    swagger = "swagger" in doc
    if swagger:
        doc.setdefault("definitions", {})[SCHEMA_NAME] = PROBLEM_SCHEMA
    else:
        doc.setdefault("components", {}).setdefault("schemas", {})[SCHEMA_NAME] = PROBLEM_SCHEMA
    answers = _answers(route)
    paths = doc.get("paths")
    for item in paths.values() if isinstance(paths, dict) else ():
        for method in METHODS:
            operation = item.get(method) if isinstance(item, dict) else None
            if isinstance(operation, dict):
                _add(operation, answers, swagger)


def _add(
    operation: dict[str, Any], answers: dict[str, tuple[problems.ProblemType, ...]], swagger: bool
) -> None:
    responses = operation.setdefault("responses", {})
    if not isinstance(responses, dict):
        return
    for code, kinds in answers.items():
        ours = _response(kinds, swagger)
        theirs = responses.get(code)
        if not isinstance(theirs, dict) or "$ref" in theirs:
            responses.setdefault(code, ours)
            continue
        theirs["description"] = f"{theirs.get('description', '')} Or {ours['description']}"
        if not swagger and isinstance(theirs.get("content", {}), dict):
            theirs.setdefault("content", {}).setdefault(MEDIA_TYPE, ours["content"][MEDIA_TYPE])
