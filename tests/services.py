"""Real beat, Flower, RabbitMQ vhosts, Sentinel and Cluster servers for tests; JSON over HTTP.

Both are ``devtools.processes.ManagedProcess``es: their own process group, a log,
ready by a check with a deadline, stopped warmly.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.schedules import schedstate, schedule

from devtools.processes import REPO, ManagedProcess, wait_until
from devtools.rabbitmq import RabbitVhost, rabbitmq_missing
from proj.redis_server import RedisServer, free_port, redis_binary


class Beat(ManagedProcess):
    """``celery -A <module> beat`` with a private schedule file.

    `schedule_module` is Python source defining ``app`` and its ``beat_schedule``;
    it is written next to the schedule file and imported from there.
    """

    def __init__(self, directory: Path, schedule_module: str, name: str = "beatapp") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.py").write_text(schedule_module)
        path = os.pathsep.join([str(directory), str(REPO), os.environ.get("PYTHONPATH", "")])
        self.module = name
        self.schedule = directory / f"{name}-schedule"
        args = [sys.executable, "-m", "celery", "-A", name, "beat", "-s", str(self.schedule),
                "--loglevel=INFO"]
        super().__init__(args, log=directory / f"{name}.log", env={**os.environ, "PYTHONPATH": path},
                         name="beat")

    def start(self, timeout: float = 30.0) -> Beat:
        super().start()
        self.wait_ready(lambda: "beat: Starting" in self.text(), timeout=timeout, what="beat to start")
        return self

    def ticks_sent(self) -> int:
        return self.text().count("Scheduler: Sending due task")


class Limited(schedule):
    """A beat schedule that is due every `seconds`, `times` times, then never again.

    A test stops beat only after its last tick reached the worker, so no tick is cut
    off half-sent and every tick beat logged can be accounted for.
    """

    def __init__(self, seconds: float, times: int) -> None:
        super().__init__(seconds)
        self.times = times

    def is_due(self, last_run_at: Any) -> schedstate:
        if self.times <= 0:
            return schedstate(False, 5.0)
        state = super().is_due(last_run_at)
        self.times -= state.is_due
        return state

    def __reduce__(self) -> tuple:
        return self.__class__, (self.run_every.total_seconds(), self.times)


class Flower(ManagedProcess):
    """``celery -A proj flower`` on a free loopback port, optionally with basic auth."""

    def __init__(self, log: Path, basic_auth: str | None = None) -> None:
        env = {"FLOWER_BASIC_AUTH": basic_auth} if basic_auth else {"FLOWER_UNAUTHENTICATED_API": "true"}
        self.port = free_port()
        self.auth = basic_auth
        args = [sys.executable, "-m", "celery", "-A", "proj", "flower", "--address=127.0.0.1",
                f"--port={self.port}"]
        super().__init__(args, log=log, env={**os.environ, **env}, name="flower")

    def start(self, timeout: float = 60.0) -> Flower:
        super().start()
        self.wait_ready(self._healthy, timeout=timeout, what="Flower to answer")
        return self

    def _healthy(self) -> bool:
        try:
            return http_json("GET", f"http://127.0.0.1:{self.port}/healthcheck", raw=True)[0] == 200
        except OSError:
            return False

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http_json(method, f"http://127.0.0.1:{self.port}{path}", body, auth=self.auth)

    def form(self, path: str, fields: dict[str, str]) -> tuple[int, Any]:
        """POST `fields` form-encoded, as the pages' scripts do; return status and JSON."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method="POST",
                                         data=urllib.parse.urlencode(fields).encode())
        if self.auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(self.auth.encode()).decode())
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())


def http_json(
    method: str, url: str, body: Any = None, *, auth: str | None = None, raw: bool = False
) -> tuple[int, Any]:
    """Send one request; return the status and the decoded JSON body (text when `raw`)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    text = payload.decode(errors="replace")
    if raw:
        return status, text
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


# -- RabbitMQ: a private vhost per use -------------------------------------------------
BROKERS = ("redis", "rabbitmq")
# A module marked so runs all its tests once per broker (Redis first): its `broker`
# fixture (conftest.py), and so its worker, beat and in-process client, are made once
# per broker.
both_brokers = pytest.mark.parametrize("broker", BROKERS, indirect=True, scope="module")
RABBITMQ_REQUIRED = os.environ.get("REQUIRE_RABBITMQ", "") == "1"
# The skip's reason starts so: the session's summary counts those skips from the test
# reports, which reach it from pytest-xdist's worker processes too.
RABBITMQ_SKIP = "RabbitMQ unusable: "


def rabbitmq_vhost() -> RabbitVhost:
    """Create a vhost of its own on the local RabbitMQ, or skip (fail under REQUIRE_RABBITMQ=1)."""
    missing = rabbitmq_missing()
    if missing and RABBITMQ_REQUIRED:
        pytest.fail(f"REQUIRE_RABBITMQ=1 but RabbitMQ is unusable: {missing}")
    if missing:
        pytest.skip(f"{RABBITMQ_SKIP}{missing}")
    return RabbitVhost().create()


# -- Redis Sentinel and Redis Cluster, from the tests' redis-server binary --------------
class SentinelGroup:
    """One master, one replica and three sentinels watching them, on free ports."""

    def __init__(self, directory: Path, name: str = "singleton-test") -> None:
        self.directory, self.name = directory, name
        self.master = RedisServer(directory / "master", appendonly=False)
        self.replica = RedisServer(directory / "replica", appendonly=False,
                                   extra_args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[ManagedProcess] = []

    @property
    def url(self) -> str:
        """The sentinel:// URL Celery and kombu take (with REDIS_SENTINEL_MASTER=name)."""
        return ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.ports)

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        wait_until(lambda: self._info(self.replica.port).get("master_link_status") == "up", 30,
                   "the replica to sync")
        for port in self.ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                            f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2\n"
                            f"sentinel down-after-milliseconds {self.name} 1000\n"
                            f"sentinel failover-timeout {self.name} 10000\n")
            process = ManagedProcess([redis_binary(), str(conf), "--sentinel"],
                                     log=self.directory / f"sentinel-{port}.log", name="sentinel")
            self.sentinels.append(process.start())
        wait_until(self._watched, 30, "the sentinels to find each other and the replica")
        return self

    def _info(self, port: int) -> dict:
        try:
            return redis.Redis(port=port, socket_timeout=2).info("replication")
        except redis.ConnectionError:
            return {}

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def _watched(self) -> bool:
        try:
            return all(
                len(self._sentinel(p).execute_command("SENTINEL", "SENTINELS", self.name)) == 2
                and len(self._sentinel(p).execute_command("SENTINEL", "REPLICAS", self.name)) == 1
                for p in self.ports
            )
        except redis.ConnectionError:
            return False

    def master_port(self) -> int:
        """Return the port the first sentinel names as the master now."""
        return int(self._sentinel(self.ports[0]).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)[1])

    def failover(self) -> int:
        """Force a failover (SENTINEL FAILOVER) and return the new master's port once named."""
        before = self.master_port()
        self._sentinel(self.ports[0]).execute_command("SENTINEL", "FAILOVER", self.name)
        wait_until(lambda: self.master_port() != before, 30, "a new master")
        return self.master_port()

    def wait_replicated(self, timeout: float = 60.0) -> None:
        """Wait until the current master has its replica online (after a failover, say)."""
        def online() -> bool:
            info = self._info(self.master_port())
            return info.get("connected_slaves", 0) >= 1 and info.get("slave0", {}).get("state") == "online"

        wait_until(online, timeout, "the master's replica to be online")

    def stop(self) -> None:
        for process in self.sentinels:
            process.stop()
        self.replica.stop()
        self.master.stop()


def _cluster_port() -> int:
    """Return a free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port <= 55535:
            try:
                with socket.socket() as bus:
                    bus.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue


class ClusterNodes:
    """A Redis Cluster of three masters (no replicas) made with CLUSTER ADDSLOTS and MEET."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [RedisServer(directory / f"node{n}", port=_cluster_port(), appendonly=False,
                                  extra_args=["--cluster-enabled", "yes", "--cluster-config-file",
                                              str(directory / f"node{n}" / "nodes.conf")])
                      for n in range(3)]

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL ``singleton_store_url`` takes."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> ClusterNodes:
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(port=node.port) for node in self.nodes]
        step = 16384 // len(clients)
        for n, client in enumerate(clients):
            last = 16383 if n == len(clients) - 1 else (n + 1) * step - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(n * step, last + 1))
            if n:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
        wait_until(lambda: all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
                               and b"cluster_known_nodes:3" in c.execute_command("CLUSTER", "INFO")
                               for c in clients), 30, "the cluster to agree")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
