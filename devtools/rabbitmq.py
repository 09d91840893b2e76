"""A vhost of its own on the local RabbitMQ, for the tests and the benchmark.

Every machine of this project's kind runs RabbitMQ on 127.0.0.1:5672 (guest/guest).
What a test or bench run's processes declare (queues, exchanges, native delayed
delivery's topology) lives in the vhost it made, so deleting that vhost removes
exactly what the run created and nothing else.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from typing import Any

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672


def rabbitmq_missing() -> str:
    """Return why a vhost cannot be made here ('' when it can)."""
    if not shutil.which("rabbitmqctl"):
        return "no rabbitmqctl on PATH (it makes each run's own vhost)"
    try:
        socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=1).close()
    except OSError:
        return f"nothing listens on {RABBITMQ_HOST}:{RABBITMQ_PORT}"
    return ""


class RabbitVhost:
    """A vhost of the local RabbitMQ, made by ``create`` and removed by ``delete``."""

    def __init__(self, name: str = "") -> None:
        self.name = name or f"singleton-test-{uuid.uuid4().hex[:10]}"
        self.url = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{self.name}"

    def create(self) -> RabbitVhost:
        """Add the vhost and give guest every permission in it."""
        _rabbitmqctl("add_vhost", self.name)
        _rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def delete(self) -> None:
        """Delete the vhost and everything in it."""
        _rabbitmqctl("delete_vhost", self.name)

    def queue_types(self) -> dict[str, str]:
        """Return the vhost's queues by name and their type (classic, quorum)."""
        out = _rabbitmqctl("list_queues", "-p", self.name, "--no-table-headers", "name", "type")
        return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def point_app_at(app: Any, url: str, transport_options: dict) -> None:
    """Make an in-process Celery app publish to `url` from now on.

    Its pools are looked up again; the old ones stay open, since kombu keeps one
    producer pool per broker for the process and hands it back when the app returns.
    Celery's task sender and its event dispatcher are built again too: the dispatcher
    keeps the event exchange's type for the broker it was made on (fanout on Redis,
    topic on RabbitMQ), and a fanout ``celeryev`` declared on RabbitMQ makes every
    worker's own (topic) declaration fail, which slows its event loop to a crawl.
    """
    app._pool = None
    app.amqp._producer_pool = None
    for cached in ("send_task_message", "_event_dispatcher"):
        app.amqp.__dict__.pop(cached, None)
    app.conf.broker_url = url
    app.conf.broker_transport_options = transport_options


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout
