"""Absolute URLs of an instance's management routes, and the check-status response."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from flask import Response, request

from . import auth
from .responses import json_response

WEBHOOK_PREFIX = "/runtime/webhooks/durabletask"

# Seconds a caller should wait before polling a freshly started instance.
START_RETRY_AFTER = 10


def instance_uri(instance_id: str) -> str:
    """Return the absolute URL of the instance, from the request's scheme and host."""
    root = request.url_root.rstrip("/")
    return f"{root}{WEBHOOK_PREFIX}/instances/{quote(instance_id, safe='')}"


def status_location(instance_id: str) -> str:
    """Return the status route's own URL (for its Location): built from the instance ID
    quoted once, with the request's query parameters re-encoded."""
    query = urlencode(list(request.args.items(multi=True)), quote_via=quote)
    return f"{instance_uri(instance_id)}?{query}" if query else instance_uri(instance_id)


def status_query_uri(instance_id: str) -> str:
    """Return the instance's status URL, with the caller's key when keys are in use."""
    return _with_code(instance_uri(instance_id))


def check_status_body(instance_id: str) -> dict[str, str]:
    """Return the check-status payload, keys in the contract's order."""
    base = instance_uri(instance_id)
    return {
        "id": instance_id,
        "statusQueryGetUri": _with_code(base),
        "sendEventPostUri": _with_code(f"{base}/raiseEvent/{{eventName}}"),
        "terminatePostUri": _with_code(f"{base}/terminate?reason={{text}}"),
        "purgeHistoryDeleteUri": _with_code(base),
        "restartPostUri": _with_code(f"{base}/restart"),
        "suspendPostUri": _with_code(f"{base}/suspend?reason={{text}}"),
        "resumePostUri": _with_code(f"{base}/resume?reason={{text}}"),
    }


def check_status_response(instance_id: str) -> Response:
    """Return the 202 check-status response (Location, Retry-After) for an instance."""
    body = check_status_body(instance_id)
    response = json_response(body, 202)
    response.headers["Location"] = body["statusQueryGetUri"]
    response.headers["Retry-After"] = str(START_RETRY_AFTER)
    return response


def _with_code(url: str) -> str:
    key = auth.query_key()
    if key is None:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}code={quote(key, safe='')}"
