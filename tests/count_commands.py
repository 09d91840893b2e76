"""Count the Redis commands of a singleton start vs a plain chain.apply_async.

Run as ``python -m tests.count_commands`` (it starts a private Redis server) or with
REDIS_URL pointing at an idle server. Prints one JSON line with, per call, the
commands the client sent (read with MONITOR; a script counts once) and the
commands Redis executed (INFO commandstats; a script's inner commands count too).
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


def main() -> None:
    if "REDIS_URL" not in os.environ:
        from proj.redis_server import RedisServer

        server = RedisServer(Path(tempfile.mkdtemp()), appendonly=False).start()
        os.environ["REDIS_URL"] = server.url
        try:
            print(json.dumps(measure()))
        finally:
            server.stop()
        return
    print(json.dumps(measure()))


if __name__ == "__main__":
    sys.exit(main())
