"""Load and faults for the chaos run, every operation and fault logged with its time.

Load: starts of the examples under shared IDs (some eternal, some waiting for
events, some with an event timeout and a default, fan-outs with a group and a chord's
callback), events, suspends of fan-outs while their group runs and of Counters while
they continue as new, terminates and same-ID restarts mid-flight, suspends and resumes,
and bursts of concurrent duplicate starts. Faults: SIGKILLed workers (restarted) and
pool children, one warm Redis restart (SIGTERM) and one Redis crash (SIGKILL). A burst
is the check of the singleton rule: on a live run it must get no 202, on a free ID at
most one; every single start (and same-ID restart) is checked the same way, from the
ID's status just before and after.

Around each Redis restart, writes are paused (``CLIENT PAUSE ... WRITE``) while the
records are read, on the old server just before it stops and on the new one just after
it answers (for the crash: just before the SIGKILL), so the two snapshots must be
equal: any difference is a lost write, allowed after the crash only inside its loss window.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from typing import Any

import redis

from .stack import Stack

HTTP_TIMEOUT = 15.0
BURST = 30
WEBHOOK = "/runtime/webhooks/durabletask/instances"
# Longest a snapshot may keep the server's writes paused (milliseconds).
PAUSE_MS = 10_000


class Driver:
    """Drive a running stack for `seconds` with a seeded random generator."""

    def __init__(self, stack: Stack, seconds: float, seed: int) -> None:
        self.stack, self.seconds = stack, seconds
        self.rng = random.Random(seed)
        self.ops: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.bursts: list[dict[str, Any]] = []
        self.starts: list[dict[str, Any]] = []
        # Per Redis restart: its kind (warm, crash), when the server went down, both snapshots.
        self.redis_snapshots: list[dict[str, Any]] = []
        self.restart_windows: list[tuple[float, float]] = []
        self.codes: Counter[str] = Counter()
        self.redis_check: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        from proj import app
        from singleton import OrchestrationClient  # proj reads REDIS_URL: import it late

        self.client = OrchestrationClient(app)

    # -- HTTP -----------------------------------------------------------------------
    def http(self, method: str, path: str, body: Any = None) -> int:
        """Send one request; return its status (0 when the connection failed)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.web_port, timeout=HTTP_TIMEOUT)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        except OSError:
            return 0
        finally:
            conn.close()

    def start(self, name: str, instance_id: str, body: Any = None) -> int:
        """Start `name` as `instance_id`; record the answer with the ID's status around it."""
        return self._claim("start", instance_id, "POST", f"/api/orchestrators/{name}/{instance_id}",
                           body, name=name)

    def _claim(self, op: str, instance_id: str, method: str, path: str, body: Any = None,
               **extra: Any) -> int:
        before, t0 = self._status(instance_id), time.time()
        code = self.http(method, path, body)
        t = time.time()
        after = self._status(instance_id)
        self._record(op, instance_id, code, **extra)
        with self._lock:
            self.starts.append({"op": op, "instance": instance_id, "t0": t0, "t": t, "before": before,
                                "after": after, "codes": {str(code): 1}})
        return code

    def _record(self, op: str, instance_id: str, code: int, **extra: Any) -> None:
        with self._lock:
            self.ops.append({"op": op, "instance": instance_id, "code": code, "t": time.time(), **extra})
            self.codes[f"{op} {code}"] += 1

    # -- the run --------------------------------------------------------------------------
    def run(self) -> None:
        """Run load and faults for the configured time, then settle the eternal runs."""
        loops = [self._starts, self._events, self._mid_flight, self._suspends, self._bursts, self._faults]
        threads = [threading.Thread(target=self._guard, args=(loop,), daemon=True) for loop in loops]
        for thread in threads:
            thread.start()
        time.sleep(self.seconds)
        self._stop.set()
        for thread in threads:
            thread.join(60)
        self._settle()

    def _guard(self, loop: Any) -> None:
        try:
            loop()
        except Exception as exc:  # a broken load thread must not pass for a quiet one
            with self._lock:
                self.faults.append({"fault": "driver-error", "error": repr(exc), "t": time.time()})

    def _pause(self, low: float, high: float) -> bool:
        return not self._stop.wait(self.rng.uniform(low, high))

    def _starts(self) -> None:
        examples = [
            ("HelloSequence", lambda r: None, "job"), ("AlwaysFails", lambda r: "x", "job"),
            ("Delay", lambda r: {"seconds": round(r.uniform(0.1, 3), 2), "value": 1}, "job"),
            ("FanOutFanIn", lambda r: {"seconds": round(r.uniform(0.1, 1.5), 2)}, "job"),
            ("ApprovalWorkflow", lambda r: None, "approval"),
            # Short event timeouts with a default: the timer, not an event, moves these on.
            ("ApprovalWorkflow", lambda r: {"timeout": round(r.uniform(0.5, 3), 2), "default": "late"},
             "approval"),
            ("Counter", lambda r: {"count": 0, "interval": round(r.uniform(0.2, 1), 2)}, "counter"),
        ]
        sizes = {"job": 25, "approval": 8, "counter": 3}
        while self._pause(0.05, 0.25):
            name, body, pool = self.rng.choices(examples, weights=[4, 1, 3, 3, 1, 1, 1])[0]
            self.start(name, f"{pool}-{self.rng.randrange(sizes[pool])}", body(self.rng))

    def _events(self) -> None:
        while self._pause(0.2, 1.0):
            instance_id = f"approval-{self.rng.randrange(8)}"
            code = self.http("POST", f"{WEBHOOK}/{instance_id}/raiseEvent/Approval", {"ok": True})
            self._record("event", instance_id, code)

    def _mid_flight(self) -> None:
        while self._pause(0.5, 1.5):
            instance_id = f"job-{self.rng.randrange(25)}"
            action = self.rng.choice(["terminate", "restart", "suspend-resume"])
            if action == "terminate":
                code = self.http("POST", f"{WEBHOOK}/{instance_id}/terminate")
                self._record("terminate", instance_id, code)
            elif action == "restart":
                self._claim("restart", instance_id, "POST",
                            f"{WEBHOOK}/{instance_id}/restart?restartWithNewInstanceId=false")
            else:
                self._record("suspend", instance_id, self.http("POST", f"{WEBHOOK}/{instance_id}/suspend"))
                self._stop.wait(self.rng.uniform(0.2, 1))
                self._record("resume", instance_id, self.http("POST", f"{WEBHOOK}/{instance_id}/resume"))

    def _suspends(self) -> None:
        # Suspend a fan-out while its group runs (its parts take 1 s), or a Counter while
        # it continues as new, then resume it.
        n = 0
        while self._pause(0.5, 1.5):
            n += 1
            if n % 2:
                instance_id = f"fan-{n % 4}"
                if self.start("FanOutFanIn", instance_id, {"seconds": 1}) != 202:
                    continue
                self._stop.wait(self.rng.uniform(0.2, 0.8))
            else:
                instance_id = f"counter-{self.rng.randrange(3)}"
            self._record("suspend", instance_id, self.http("POST", f"{WEBHOOK}/{instance_id}/suspend"))
            self._stop.wait(self.rng.uniform(0.3, 2))
            self._record("resume", instance_id, self.http("POST", f"{WEBHOOK}/{instance_id}/resume"))

    def _bursts(self) -> None:
        n = 0
        while self._pause(1.5, 3.0):
            instance_id = f"burst-{n % 6}"
            n += 1
            if self.rng.random() < 0.5:
                self.start("Delay", instance_id, {"seconds": 6, "value": "held"})
            self._burst(instance_id)

    def _burst(self, instance_id: str) -> None:
        before, t0 = self._status(instance_id), time.time()
        barrier = threading.Barrier(BURST)
        codes: list[int] = []

        def one() -> None:
            barrier.wait(10)
            code = self.http("POST", f"/api/orchestrators/Delay/{instance_id}", {"seconds": 1, "value": 2})
            with self._lock:
                codes.append(code)

        threads = [threading.Thread(target=one) for _ in range(BURST)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HTTP_TIMEOUT + 15)
        after = self._status(instance_id)
        with self._lock:
            self.bursts.append({"instance": instance_id, "t0": t0, "t": time.time(), "before": before,
                                "after": after, "codes": {str(c): n for c, n in Counter(codes).items()}})

    def _status(self, instance_id: str) -> dict[str, Any] | None:
        try:
            status = self.client.get_status(instance_id, show_input=False)
        except Exception as exc:
            return {"error": repr(exc)}
        if status is None:
            return None
        return {"run": status.run_id, "status": status.runtime_status.value}

    # -- faults ---------------------------------------------------------------------------
    def _faults(self) -> None:
        # One warm Redis restart, then one crash, at 30 % and 65 % of the load.
        redis_at = [(time.time() + self.seconds * 0.3, False), (time.time() + self.seconds * 0.65, True)]
        next_worker_kill = time.time() + self.rng.uniform(6, 12)
        while self._pause(2, 5):
            now = time.time()
            if redis_at and now >= redis_at[0][0]:
                self._restart_redis(crash=redis_at.pop(0)[1])
            elif now >= next_worker_kill:
                self._kill_worker()
                next_worker_kill = now + self.rng.uniform(8, 15)
            else:
                self._kill_pool_child()

    def _kill_worker(self) -> None:
        worker = self.rng.choice([w for w in self.stack.workers if w.alive()] or self.stack.workers)
        pids = worker.kill()
        self._fault("kill-worker", pids=pids, worker=worker.name)
        self._stop.wait(self.rng.uniform(1, 3))
        worker.start()

    def _kill_pool_child(self) -> None:
        found = self.stack.random_pool_child(self.rng)
        if found is None:
            return
        worker, pid = found
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self._fault("kill-child", pids=[pid], worker=worker.name)

    def _restart_redis(self, *, crash: bool) -> None:
        began = time.time()
        before = self._frozen_records(resume=False)  # paused until the server stops (or dies)
        down = time.time()  # for the crash: the moment of the SIGKILL, which its loss window ends at
        if crash:
            self.stack.crash_redis()
        else:
            self.stack.restart_redis()
        after = self._frozen_records(resume=True)
        self.restart_windows.append((began, time.time()))
        kind = "crash" if crash else "warm"
        self._fault("crash-redis" if crash else "restart-redis", pids=[], began=began)
        self.redis_snapshots.append({"kind": kind, "at": down, "before": before, "after": after})
        changed = [i for i, record in before.items() if after.get(i) != record]
        self.redis_check[kind] = {"records_before": len(before), "records_after": len(after),
                                  "changed": changed}

    def _frozen_records(self, *, resume: bool) -> dict[str, Any]:
        # Writes wait while the records are read: the snapshot is one moment of the server.
        # Without `resume` the pause lasts until the server stops (the restart's first half).
        server = redis.Redis.from_url(self.stack.redis.url)
        try:
            server.client_pause(PAUSE_MS, all=False)
            records = self._records()
            if resume:
                server.client_unpause()
        finally:
            server.close()
        return records

    def _records(self) -> dict[str, Any]:
        from singleton.runtime import runtime

        ids = [s.instance_id for s in self.client.get_status_all(show_input=False)]
        rows = runtime(self.client._app).store.read_many(ids)
        return {i: {"run": row["run"], "fence": row["fence"], "status": row["status"],
                    "updated": int(row["updated"]) / 1e6}
                for i, row in zip(ids, rows, strict=True) if row}

    def _fault(self, fault: str, **extra: Any) -> None:
        with self._lock:
            self.faults.append({"fault": fault, "t": time.time(), **extra})

    # -- the end ----------------------------------------------------------------------------
    def _settle(self) -> None:
        """Give waiting runs their event and end the eternal ones, so the quiet period can tell."""
        for n in range(8):
            self._record("event", f"approval-{n}",
                         self.http("POST", f"{WEBHOOK}/approval-{n}/raiseEvent/Approval", {"ok": "final"}))
        for instance_id in ([f"counter-{n}" for n in range(3)] + [f"job-{n}" for n in range(25)]
                            + [f"fan-{n}" for n in range(4)]):
            status = self._status(instance_id)
            if status and status.get("status") == "Suspended":
                self._record("resume", instance_id, self.http("POST", f"{WEBHOOK}/{instance_id}/resume"))
        for n in range(3):
            self._record("terminate", f"counter-{n}", self.http("POST", f"{WEBHOOK}/counter-{n}/terminate"))
