"""The two kinds of body every route answers with: JSON, or empty."""

from __future__ import annotations

import json
from typing import Any

from flask import Response


def json_response(value: Any, status: int = 200) -> Response:
    """Return `value` as a JSON response, keys in the order given.

    Serialised here rather than by the host app's JSON provider, so the contract's key
    order holds in an application that sorts keys (Flask's default).
    """
    body = json.dumps(value, separators=(",", ":")) + "\n"
    return Response(body, status, mimetype="application/json")


def empty_response(status: int) -> Response:
    """Return a response with no body and no Content-Type (an empty body is not HTML)."""
    response = Response(b"", status)
    del response.headers["Content-Type"]
    return response
