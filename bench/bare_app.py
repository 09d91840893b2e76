"""The baseline of the HTTP benchmark: a bare Flask endpoint doing a plain chain.apply_async."""

from celery import chain
from flask import Flask

from proj.tasks import say_hello


def create_app() -> Flask:
    """Return an app whose one route publishes HelloSequence's chain, with no singleton layer."""
    app = Flask(__name__)

    @app.post("/bare/HelloSequence")
    def start() -> tuple[dict, int]:
        result = chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"), say_hello.s("London")).apply_async()
        return {"id": result.id}, 202

    return app
