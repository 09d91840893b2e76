"""GET /metrics: the Prometheus scrape of the singleton layer.

Behind the API's keys like every route, unless ``METRICS_PUBLIC=1`` (scrapers
usually sit on a private network and send no key): then ``/metrics`` is answered
before the key check, and only that path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import Celery
from flask import Blueprint, Flask, Response, current_app

from singleton import metrics
from singleton.runtime import runtime

from . import cors

EXTENSION = "singleton.metrics"
PATH = "/metrics"

blueprint = Blueprint("metrics", __name__)
cors.install(blueprint)  # OPTIONS answers 204 like every route of the API, never 401


@blueprint.get(PATH)
def scrape() -> Response:
    """Every process's metrics and the live runs, in Prometheus' text format."""
    return _response(current_app.extensions[EXTENSION])


def _response(celery_app: Celery) -> Response:
    body = metrics.exposition(runtime(celery_app).store)
    return Response(body, 200, content_type=metrics.CONTENT_TYPE)


def install(flask_app: Flask, celery_app: Celery, config: Mapping[str, Any] | None = None) -> None:
    """Serve ``/metrics`` on `flask_app` for `celery_app`'s store.

    Args:
        config: where METRICS_PUBLIC is read (the environment when None).
    """
    source = os.environ if config is None else config
    flask_app.extensions[EXTENSION] = celery_app
    flask_app.register_blueprint(blueprint)
    if str(source.get("METRICS_PUBLIC") or "").strip().lower() in ("1", "true", "yes"):
        flask_app.wsgi_app = _Public(flask_app.wsgi_app, flask_app)


class _Public:
    """WSGI middleware that answers GET /metrics itself, before the key check runs."""

    def __init__(self, wsgi_app: Any, flask_app: Flask) -> None:
        self.wsgi_app, self.flask_app = wsgi_app, flask_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            with self.flask_app.app_context():
                response = _response(self.flask_app.extensions[EXTENSION])
            return response(environ, start_response)
        return self.wsgi_app(environ, start_response)
