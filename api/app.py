"""The app factory: read the configuration once, wire one client, register the routes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import proj
from singleton import OrchestrationClient, tracing

from . import auth, errors, metrics, routes

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024
SETTINGS = ("API_KEYS", "API_AUTH", "MAX_CONTENT_LENGTH", "TRUST_PROXY_HEADERS")


class ConfigError(ValueError):
    """The API's configuration is missing or invalid; the app refuses to start."""


@dataclass(frozen=True)
class ApiConfig:
    """The API's settings.

    Attributes:
        keys: the accepted function keys; empty means anonymous access.
        max_content_length: the largest request body accepted, in bytes.
        proxy_hops: how many proxies' X-Forwarded-* headers to trust (0: none).
    """

    keys: tuple[str, ...] = field(repr=False)  # never in a log line or a traceback
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    proxy_hops: int = 0

    @classmethod
    def read(cls, source: Mapping[str, Any]) -> ApiConfig:
        """Build the settings from a mapping of the SETTINGS names.

        Raises:
            ConfigError: no key is configured and API_AUTH is not 'anonymous', keys
                and anonymous access are both asked for, or a number is invalid.
        """
        keys = _keys(source.get("API_KEYS"))
        anonymous = str(source.get("API_AUTH") or "").strip().lower() == "anonymous"
        if not keys and not anonymous:
            raise ConfigError(
                "No API key is configured: set API_KEYS (comma-separated), "
                "or API_AUTH=anonymous to allow unauthenticated access explicitly."
            )
        if keys and anonymous:
            raise ConfigError("API_KEYS and API_AUTH=anonymous contradict each other; set one.")
        size = _count(source, "MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, minimum=1)
        hops = _proxy_hops(source.get("TRUST_PROXY_HEADERS"))
        return cls(keys=keys, max_content_length=size, proxy_hops=hops)


def _keys(raw: Any) -> tuple[str, ...]:
    parts = raw.split(",") if isinstance(raw, str) else list(raw or ())
    return tuple(key.strip() for key in parts if key and key.strip())


def _count(source: Mapping[str, Any], name: str, default: int, *, minimum: int) -> int:
    raw = source.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name} must be an integer of at least {minimum}, not {raw!r}.")
    return value


def _proxy_hops(raw: Any) -> int:
    # "true" trusts one proxy; a number trusts that many; unset, "" or "false": none.
    text = str(raw if raw is not None else "").strip().lower()
    if text in ("", "0", "false", "no"):
        return 0
    if text in ("true", "yes"):
        return 1
    return _count({"TRUST_PROXY_HEADERS": text}, "TRUST_PROXY_HEADERS", 0, minimum=0)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app with one OrchestrationClient on ``proj.app``.

    Args:
        config: the settings (API_KEYS, API_AUTH, MAX_CONTENT_LENGTH,
            TRUST_PROXY_HEADERS); read from the environment when None.

    Raises:
        ConfigError: see ``ApiConfig.read``.
    """
    settings = ApiConfig.read(os.environ if config is None else config)
    if not settings.keys:
        logger.warning("API_AUTH=anonymous: the HTTP API accepts requests without a key.")
    app = Flask(__name__, static_folder=None)  # JSON only: no static route
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.json.sort_keys = False  # the check-status keys keep the contract's order
    app.url_map.merge_slashes = False  # a merge answers with an HTML redirect
    app.extensions[routes.EXTENSION] = OrchestrationClient(proj.app)
    errors.install(app)
    auth.install(app, settings.keys)
    app.register_blueprint(routes.starter)
    app.register_blueprint(routes.management)
    metrics.install(app, proj.app, config)
    tracing.instrument_wsgi(app)
    if settings.proxy_hops:
        n = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
    return app
