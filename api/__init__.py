"""The HTTP API: Durable Functions' singleton starter and management routes on Flask.

``create_app(celery_app=app)`` builds a WSGI app that serves only the API (the
project's entry is ``proj.web:app``, so ``gunicorn proj.web:app``); ``init_app(flask_app,
app)`` adds the API's routes to an existing Flask application.
"""

from .app import ConfigError, create_app, init_app

__all__ = ["create_app", "init_app", "ConfigError"]
