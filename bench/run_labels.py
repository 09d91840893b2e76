"""What the Flower run labels cost a start: ``start_new`` with and without RunLabelAMQP.

``python -m bench.run_labels`` starts a private Redis server, then times HelloSequence
starts in-process (no worker; the messages stay queued) with the app's amqp class set
to Celery's own ``AMQP`` (with and without the ``task-sent`` event Flower wants) and
to ``RunLabelAMQP``, in interleaved rounds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from proj.redis_server import RedisServer

ROUNDS = 7
STARTS = 1000


def main() -> None:
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-labels-")), appendonly=False).start()
    os.environ["REDIS_URL"] = server.url
    try:
        from celery import Celery

        import proj.orchestrators  # noqa: F401  (registers HelloSequence)
        import singleton

        clients = {}
        variants = [
            ("plain AMQP", "celery.app.amqp:AMQP", False),
            ("RunLabelAMQP", "singleton.monitoring:RunLabelAMQP", False),
            ("plain + sent event", "celery.app.amqp:AMQP", True),
        ]
        for label, amqp, sent_event in variants:
            app = Celery("bench", task_cls=singleton.SingletonTask, amqp=amqp)
            app.config_from_object("celeryconfig")
            app.conf.task_send_sent_event = sent_event
            singleton.init_app(app)
            clients[label] = singleton.OrchestrationClient(app)
        times: dict[str, list[float]] = {label: [] for label in clients}
        for _ in range(ROUNDS):
            for label, client in clients.items():
                begin = time.perf_counter()
                for _ in range(STARTS):
                    client.start_new("HelloSequence")
                times[label].append((time.perf_counter() - begin) / STARTS * 1e6)
        for label, values in times.items():
            print(f"{label:>20}: median {statistics.median(values):7.1f} µs/start "
                  f"(min {min(values):.1f}, max {max(values):.1f}; {ROUNDS} rounds of {STARTS})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
