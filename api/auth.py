"""Function keys: every request must carry one of the configured keys.

A key comes as the ``code`` query parameter or the ``x-functions-key`` header, as in
Azure Functions. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac

from flask import Flask, current_app, g, request
from werkzeug.exceptions import Unauthorized

KEY_HEADER = "x-functions-key"
KEY_PARAMETER = "code"
# Blueprints that check credentials themselves (the dashboard's session cookie).
OWN_CREDENTIALS = "own_credentials"


def install(app: Flask, keys: tuple[str, ...]) -> None:
    """Require one of `keys` on every request to `app`; do nothing when `keys` is empty."""
    if not keys:
        return
    encoded = tuple(key.encode() for key in keys)

    @app.before_request
    def require_key() -> None:
        if request.blueprint in current_app.extensions.get(OWN_CREDENTIALS, ()):
            return
        given = request.args.get(KEY_PARAMETER)
        if given is None:
            given = request.headers.get(KEY_HEADER)
        if given is None or not _matches(given.encode(), encoded):
            # errors.py turns this into the JSON 401 (code "unauthorized").
            raise Unauthorized(
                f"A valid function key is required, as the '{KEY_PARAMETER}' query "
                f"parameter or the '{KEY_HEADER}' header."
            )
        g.api_key = given


def exempt(app: Flask, blueprint: str) -> None:
    """Let `blueprint`, which checks its own credentials, skip the function-key check."""
    app.extensions.setdefault(OWN_CREDENTIALS, set()).add(blueprint)


def caller_key() -> str | None:
    """Return the key the current request was authorised with (None without keys)."""
    return g.get("api_key")


def _matches(given: bytes, keys: tuple[bytes, ...]) -> bool:
    # Compare against every key, without stopping at a match, so the time taken
    # does not tell which key (or which prefix) was right.
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found
