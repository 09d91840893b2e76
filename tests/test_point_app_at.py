"""An in-process app pointed from Redis at RabbitMQ publishes there as one started there would."""

from __future__ import annotations

import subprocess

from devtools.rabbitmq import point_app_at
from proj.tasks import say_hello
from tests.services import rabbitmq_vhost


def _exchange_types(vhost: str) -> dict[str, str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_exchanges", "-p", vhost, "--no-table-headers",
                          "name", "type"], capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def test_task_sent_events_declare_rabbitmqs_topic_exchange_after_a_switch(
    app, redis_client, redis_server, uid
):
    queue = f"test-queue-{uid}"
    # Celery's task sender and event dispatcher are built on the Redis broker first.
    say_hello.si([], "Tokyo").apply_async(ignore_result=True, queue=queue)
    redis_client.delete(queue)
    assert app.conf.task_send_sent_event
    vhost = rabbitmq_vhost()
    options = app.conf.broker_transport_options
    point_app_at(app, vhost.url, {"confirm_publish": True})
    try:
        say_hello.si([], "Tokyo").apply_async(ignore_result=True, queue=queue)
        # A fanout celeryev (Redis' kind) would make every worker's declaration fail.
        assert _exchange_types(vhost.name).get("celeryev") == "topic"
    finally:
        point_app_at(app, redis_server.url, options)
        vhost.delete()
