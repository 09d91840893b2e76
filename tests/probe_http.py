"""The HTTP API with the probe orchestrators registered: ``gunicorn tests.probe_http:app``.

For HTTP tests whose runs must stay live until the test releases them (``Held``).
"""

import tests.probe  # noqa: F401  (registers the probe orchestrators)
from proj.web import app

__all__ = ["app"]
