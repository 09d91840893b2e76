"""Start an orchestration and wait for it, in a process of its own configuration.

``python -m tests.remote_start NAME INSTANCE_ID`` with REDIS_URL (or the CELERY_*
URLs) in the environment: prints the final status as JSON. The security tests use it
to prove that password and TLS URLs work end to end, through celeryconfig.
"""

from __future__ import annotations

import json
import sys

from proj import app
from singleton import OrchestrationClient


def main(name: str, instance_id: str) -> int:
    client = OrchestrationClient(app)
    client.start_new(name, instance_id)
    done = client.wait_for_completion(instance_id, timeout=30)
    print(json.dumps({"runtimeStatus": done.runtime_status.value, "output": done.output}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
