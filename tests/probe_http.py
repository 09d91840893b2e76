"""The HTTP API with the probe orchestrators registered: ``gunicorn 'tests.probe_http:create_app()'``.

For HTTP tests whose runs must stay live until the test releases them (``Held``).
"""

import tests.probe  # noqa: F401  (registers the probe orchestrators)
from api import create_app

__all__ = ["create_app"]
