"""The HTTP API: Durable Functions' singleton starter and management routes on Flask.

``create_app()`` builds the WSGI app (``gunicorn 'api:create_app()'``).
"""

from .app import ConfigError, create_app

__all__ = ["create_app", "ConfigError"]
