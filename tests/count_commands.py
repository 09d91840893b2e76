"""Count the Redis commands of a singleton start vs a plain chain.apply_async.

Run as ``python -m tests.count_commands`` (it starts a private Redis server) or with
REDIS_URL pointing at an idle server. Prints one JSON line with, per call, the
commands the client sent (read with MONITOR; a script counts once) and the
commands Redis executed (INFO commandstats; a script's inner commands count too).
With ``--message-bytes``, prints instead the size of the first broker message of each.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from devtools.redis_commands import executed_per_call, sent_per_call

CALLS = 200


def measure() -> dict:
    from celery import chain

    from proj import app
    from proj.tasks import say_hello
    from singleton import OrchestrationClient

    client = OrchestrationClient(app)
    redis_client = app.backend.client

    def plain() -> None:
        chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"), say_hello.s("London")).apply_async()

    def singleton() -> None:
        client.start_new("HelloSequence")

    plain(), singleton()  # warm up: connections, script loading
    result = {}
    for label, fn in (("plain", plain), ("start_new", singleton)):
        result[label] = {"sent": sent_per_call(redis_client, fn, CALLS),
                         "executed": executed_per_call(redis_client, fn, CALLS)}
        for view in ("sent", "executed"):
            result[label][f"{view}_total"] = sum(result[label][view].values())
    return result


def message_bytes() -> dict:
    from celery import chain

    from proj import app
    from proj.tasks import say_hello
    from singleton import OrchestrationClient

    client = OrchestrationClient(app)
    broker = app.backend.client  # broker and backend share the private server's database
    sizes = {}
    for label, start in (
        ("plain", lambda: chain(say_hello.s([], "Tokyo"), say_hello.s("Seattle"),
                                say_hello.s("London")).apply_async()),
        # An instance ID as long as a generated one.
        ("start_new", lambda: client.start_new("HelloSequence", "0123456789abcdef0123456789abcdef")),
    ):
        broker.delete("celery")
        start()
        sizes[label] = len(broker.lindex("celery", 0) or b"")
        broker.delete("celery")
    return sizes


def main() -> None:
    what = message_bytes if "--message-bytes" in sys.argv[1:] else measure
    if "REDIS_URL" not in os.environ:
        from proj.redis_server import RedisServer

        server = RedisServer(Path(tempfile.mkdtemp()), appendonly=False).start()
        os.environ["REDIS_URL"] = server.url
        try:
            print(json.dumps(what()))
        finally:
            server.stop()
        return
    print(json.dumps(what()))


if __name__ == "__main__":
    sys.exit(main())
