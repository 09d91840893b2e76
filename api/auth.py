"""Function keys: every request must carry one of the configured keys.

A key comes as the ``x-functions-key`` header or the ``code`` query parameter, as in
Azure Functions, and the header takes precedence: with both, only the header counts.
Keys are compared in constant time and never logged. A CORS preflight (OPTIONS) needs
no key: browsers cannot send one with it, and it reveals only the allowed methods.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection

from flask import Flask, current_app, g, request
from werkzeug.exceptions import Unauthorized

KEY_HEADER = "x-functions-key"
KEY_PARAMETER = "code"
# Blueprints that check credentials themselves (the dashboard's session cookie).
OWN_CREDENTIALS = "own_credentials"


def install(app: Flask, keys: tuple[str, ...], *, blueprints: Collection[str] | None = None) -> None:
    """Require one of `keys` on requests to `app`; do nothing when `keys` is empty.

    Args:
        app: the Flask app.
        keys: the accepted keys.
        blueprints: only requests routed to these blueprints need a key (the API inside
            a larger app); None: every request, unknown routes included.
    """
    if not keys:
        return
    encoded = tuple(key.encode() for key in keys)

    @app.before_request
    def require_key() -> None:
        if request.method == "OPTIONS":
            return
        if request.blueprint in current_app.extensions.get(OWN_CREDENTIALS, ()):
            return
        if blueprints is not None and request.blueprint not in blueprints:
            return
        given = request.headers.get(KEY_HEADER)
        in_query = given is None
        if in_query:
            given = request.args.get(KEY_PARAMETER)
        if given is None or not _matches(given.encode(), encoded):
            # errors.py turns this into the JSON 401 (code "unauthorized").
            raise Unauthorized(
                f"A valid function key is required, as the '{KEY_HEADER}' header or the "
                f"'{KEY_PARAMETER}' query parameter."
            )
        if in_query:
            g.query_key = given


def query_key() -> str | None:
    """Return the key the current request was authorised with as ``code=``, else None.

    Only such a key is echoed into the URLs of a response: a key sent as a header stays
    out of query strings, and so out of the access logs of whoever follows them.
    """
    return g.get("query_key")


def exempt(app: Flask, blueprint: str) -> None:
    """Let `blueprint`, which checks its own credentials, skip the function-key check."""
    app.extensions.setdefault(OWN_CREDENTIALS, set()).add(blueprint)


def _matches(given: bytes, keys: tuple[bytes, ...]) -> bool:
    # Compare against every key, without stopping at a match, so the time taken
    # does not tell which key (or which prefix) was right.
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found
