"""The instance dashboard: server-rendered pages under /dashboard, on the API's own app.

``register_dashboard(app, client, ...)`` adds it to a Flask app built by
``api.create_app``; it reads and acts only through the app's OrchestrationClient
(and one summary read of the store).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery import Celery
from flask import Flask

from singleton import OrchestrationClient
from singleton.runtime import runtime

from .. import auth
from . import actions, views  # noqa: F401  (their routes join the blueprint)
from .access import Access, AccessConfig
from .blueprint import EXTENSION, Context, dashboard

__all__ = ["register_dashboard"]

logger = logging.getLogger(__name__)


def register_dashboard(
    app: Flask,
    client: OrchestrationClient,
    *,
    celery_app: Celery,
    keys: tuple[str, ...],
    config: Mapping[str, Any],
) -> None:
    """Serve the dashboard from `app` under /dashboard.

    Args:
        app: the API's Flask app.
        client: the app's OrchestrationClient; every read and action goes through it.
        celery_app: the Celery app of `client` (its store answers the live summary).
        keys: the API's function keys (operator keys); empty means an open dashboard.
        config: the settings mapping the API read (DASHBOARD_READONLY_KEYS,
            DASHBOARD_SECRET, DASHBOARD_SECURE_COOKIE).
    """
    access = Access(AccessConfig.read(config, keys=keys))
    if access.config.is_open:
        logger.warning("API_AUTH=anonymous: the dashboard at /dashboard is open, with every action.")
    app.extensions[EXTENSION] = Context(client, runtime(celery_app).store, access)
    auth.exempt(app, dashboard.name)
    app.register_blueprint(dashboard)
