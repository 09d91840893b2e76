"""The example project: a Celery app with singleton orchestrations."""

from . import orchestrators as orchestrators  # registers the example orchestrators
from .celery import app

__all__ = ["app"]
