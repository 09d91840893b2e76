"""Start an orchestration and wait for it, in a process of its own configuration.

``python -m tests.remote_start NAME INSTANCE_ID [INPUT_JSON]`` with REDIS_URL (or the
CELERY_* URLs) in the environment: prints the final status as JSON. The security tests
use it to prove that password and TLS URLs work end to end, through celeryconfig; the
RabbitMQ tests, that a process configured for quorum queues starts and times runs.
"""

from __future__ import annotations

import json
import sys

import tests.probe  # noqa: F401  (the probe orchestrators)
from proj import app
from singleton import OrchestrationClient


def main(name: str, instance_id: str, input_json: str = "null") -> int:
    client = OrchestrationClient(app)
    client.start_new(name, instance_id, json.loads(input_json))
    done = client.wait_for_completion(instance_id, timeout=30)
    print(json.dumps({"runtimeStatus": done.runtime_status.value, "output": done.output}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
