"""The WSGI entry of the HTTP API on the project's Celery app: ``gunicorn proj.web:app``."""

from api import create_app

from .celery import app as celery_app

app = create_app(celery_app=celery_app)
