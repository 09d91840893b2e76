"""The app factory: read the configuration once, wire one client, register the routes."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from singleton import OrchestrationClient, tracing

from . import auth, cors, errors, metrics, routes
from .dashboard import register_dashboard

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024
SETTINGS = ("API_KEYS", "API_AUTH", "MAX_CONTENT_LENGTH", "TRUST_PROXY_HEADERS", "CORS_ORIGINS")
_ORIGIN = re.compile(r"https?://[^/\s?#]+")


class ConfigError(ValueError):
    """The API's configuration is missing or invalid; the app refuses to start."""


@dataclass(frozen=True)
class ApiConfig:
    """The API's settings.

    Attributes:
        keys: the accepted function keys; empty means anonymous access.
        max_content_length: the largest request body accepted, in bytes.
        proxy_hops: how many proxies' X-Forwarded-* headers to trust (0: none).
        cors_origins: the origins browsers may call the API from ('*': any); empty: no
            CORS headers at all.
    """

    keys: tuple[str, ...] = field(repr=False)  # never in a log line or a traceback
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    proxy_hops: int = 0
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def read(cls, source: Mapping[str, Any]) -> ApiConfig:
        """Build the settings from a mapping of the SETTINGS names.

        Raises:
            ConfigError: no key is configured and API_AUTH is not 'anonymous', keys
                and anonymous access are both asked for, a number is invalid, or a
                CORS origin is not '*' or scheme://host[:port].
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
        origins = _origins(source.get("CORS_ORIGINS"))
        return cls(keys=keys, max_content_length=size, proxy_hops=hops, cors_origins=origins)


def _keys(raw: Any) -> tuple[str, ...]:
    parts = raw.split(",") if isinstance(raw, str) else list(raw or ())
    return tuple(key.strip() for key in parts if key and key.strip())


def _origins(raw: Any) -> tuple[str, ...]:
    origins = _keys(raw)
    wrong = [o for o in origins if o != cors.ANY_ORIGIN and not _ORIGIN.fullmatch(o)]
    if wrong:
        raise ConfigError(f"CORS_ORIGINS must list '*' or origins like https://app.example, "
                          f"not {wrong[0]!r}.")
    return origins


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


def create_app(config: Mapping[str, Any] | None = None, celery_app: Celery | None = None) -> Flask:
    """Build a WSGI app that serves only the API, with one OrchestrationClient on `celery_app`.

    Every response of this app is JSON, unknown routes and wrong methods included, and
    with keys configured every route needs one. A project's WSGI entry passes its Celery
    app in (``proj/web.py``: ``app = create_app(celery_app=celery_app)``).

    Args:
        config: the settings (API_KEYS, API_AUTH, MAX_CONTENT_LENGTH,
            TRUST_PROXY_HEADERS); read from the environment when None.
        celery_app: the Celery app on which ``singleton.init_app`` was called.

    Raises:
        ConfigError: see ``ApiConfig.read``; or no Celery app was given.
    """
    app = Flask(__name__, static_folder=None)  # JSON only: no static route
    settings = _install(app, config, celery_app)
    app.url_map.merge_slashes = False  # a merge answers with an HTML redirect
    errors.install(app)
    auth.install(app, settings.keys)
    register_dashboard(app, app.extensions[routes.EXTENSION], celery_app=celery_app, keys=settings.keys,
                       config=os.environ if config is None else config)
    metrics.install(app, celery_app, config)
    tracing.instrument_wsgi(app)
    if settings.proxy_hops:
        n = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)
    return app


def init_app(flask_app: Flask, celery_app: Celery, config: Mapping[str, Any] | None = None) -> None:
    """Register the API's routes on an existing Flask app, beside the app's own routes.

    The API's routes answer as in ``create_app``: JSON errors, keys when configured.
    The app's other routes, its error pages and its JSON settings are left alone, and
    proxy headers are the app's concern (TRUST_PROXY_HEADERS is not applied).

    Args:
        flask_app: the application to extend.
        celery_app: the Celery app on which ``singleton.init_app`` was called.
        config: as in ``create_app`` (pass ``flask_app.config`` to read the settings
            from the Flask configuration); the environment when None.

    Raises:
        ConfigError: see ``ApiConfig.read``; or no Celery app was given.
    """
    settings = _install(flask_app, config, celery_app)
    auth.install(flask_app, settings.keys, blueprints=routes.BLUEPRINTS)


def _install(app: Flask, config: Mapping[str, Any] | None, celery_app: Celery | None) -> ApiConfig:
    if celery_app is None:
        raise ConfigError(
            "The API needs the Celery app it manages: create_app(celery_app=app) or "
            "init_app(flask_app, app), with singleton.init_app(app) called on it."
        )
    settings = ApiConfig.read(os.environ if config is None else config)
    if not settings.keys:
        logger.warning("API_AUTH=anonymous: the HTTP API accepts requests without a key.")
    app.extensions[routes.EXTENSION] = OrchestrationClient(celery_app)
    app.extensions[routes.BODY_LIMIT_EXTENSION] = settings.max_content_length
    app.extensions[cors.EXTENSION] = settings.cors_origins
    app.register_blueprint(routes.starter)
    app.register_blueprint(routes.management)
    return settings
