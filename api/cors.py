"""OPTIONS and CORS: what a browser asks before a cross-origin call, and what it needs after.

An OPTIONS request to any route of the API answers 204 with ``Allow`` (the route's
methods), never 401: a preflight cannot carry a key. CORS headers are added only when
CORS_ORIGINS names the origins allowed (or is ``*``), and only for a request whose
``Origin`` is one of them. Keys travel in a header, not cookies: credentials are never
allowed.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from .responses import empty_response

EXTENSION = "singleton.cors_origins"
ANY_ORIGIN = "*"
ALLOWED_HEADERS = "Content-Type, x-functions-key, x-ms-continuation-token, Idempotency-Key"
EXPOSED_HEADERS = "Location, Retry-After, x-ms-continuation-token"
PREFLIGHT_MAX_AGE = 600


def install(blueprint: Blueprint) -> None:
    """Answer OPTIONS on `blueprint`'s routes, and add CORS headers to its responses."""
    blueprint.before_request(_preflight)
    blueprint.after_request(_cors_headers)


def _preflight() -> Response | None:
    if request.method != "OPTIONS":
        return None
    # Flask's automatic OPTIONS answers 200 with an HTML content type; the contract's
    # bodies are JSON or empty, so answer here, with every method the path allows.
    methods = current_app.create_url_adapter(request).allowed_methods()
    response = empty_response(204)
    response.headers["Allow"] = ", ".join(sorted(methods))
    return response


def _cors_headers(response: Response) -> Response:
    origin = _allowed_origin()
    if origin is None:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.vary.add("Origin")
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = response.headers.get("Allow", "")
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    else:
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def _allowed_origin() -> str | None:
    origins: tuple[str, ...] = current_app.extensions.get(EXTENSION, ())
    origin = request.headers.get("Origin")
    if not origins or origin is None:
        return None
    if ANY_ORIGIN in origins:
        return ANY_ORIGIN
    return origin if origin in origins else None
