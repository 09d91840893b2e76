"""The worker side: the task class that fences every step, and the run's end tasks.

Every task of a run carries its instance and run identity as stamps. Before user
code runs, SingletonTask asks the store (one script) whether this delivery may run:
the run must still be the instance's current, live run, and no other delivery of
the same step may hold its lease. A step of a stale run raises Ignore, which also
stops the rest of its chain.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Ignore
from celery.signals import task_failure, task_revoked
from celery.worker.request import Request
from kombu.utils.json import dumps, loads

from .runs import COMPLETE_TASK, RunIdentity
from .settings import Settings
from .signals import gate_decided, run_ended, step_finished, step_started
from .status import RuntimeStatus
from .store import Store

logger = logging.getLogger(__name__)


class Runtime:
    """Per-app state of the singleton layer: settings, store and step heartbeat."""

    def __init__(self, app: Celery) -> None:
        self.settings = Settings.from_conf(app.conf)
        self.store = Store(
            _blocking_client(app.backend.client, self.settings),
            prefix=self.settings.key_prefix,
            retention_s=self.settings.retention,
        )
        self.heartbeat = Heartbeat(self.store, self.settings.step_lease)


def _blocking_client(backend_client: redis.Redis, settings: Settings) -> redis.Redis:
    # Same server and options as the result backend, but a pool that makes a burst of
    # threads wait for a connection instead of failing at redis-py's limit.
    pool = backend_client.connection_pool
    blocking = redis.BlockingConnectionPool(
        connection_class=pool.connection_class,
        max_connections=int(settings.max_connections),
        timeout=settings.connection_wait,
        **pool.connection_kwargs,
    )
    return redis.Redis(connection_pool=blocking)


def runtime(app: Celery) -> Runtime:
    """Return the app's Runtime, creating it on first use."""
    rt = app.__dict__.get("_singleton_runtime")
    if rt is None:
        rt = app.__dict__["_singleton_runtime"] = Runtime(app)
    return rt


class Lease:
    """One delivery's hold on one step, renewed while the step runs."""

    def __init__(self, store: Store, identity: RunIdentity, task_id: str) -> None:
        self.store, self.identity, self.task_id = store, identity, task_id
        self.token = uuid.uuid4().hex

    def mark(self, action: str, value: Any = "") -> bool:
        """Apply a step-marker action ('done', 'renew', 'release') under the fence."""
        i = self.identity
        return self.store.mark_step(i.instance_id, i.run_id, self.task_id, self.token, action, value)


class Heartbeat:
    """A daemon thread per process that renews the leases of running steps."""

    def __init__(self, store: Store, lease_s: float) -> None:
        self._lease_us = int(lease_s * 1_000_000)
        self._interval = lease_s / 3
        self._leases: set[Lease] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tick = threading.Event()  # never set: a timer the loop waits on

    @contextmanager
    def keep(self, lease: Lease) -> Iterator[None]:
        """Renew `lease` in the background for as long as the block runs."""
        with self._lock:
            self._leases.add(lease)
            if self._thread is None or not self._thread.is_alive():
                # A forked pool child inherits the attribute but not the thread.
                self._thread = threading.Thread(target=self._loop, daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._leases.discard(lease)

    def _loop(self) -> None:
        while True:
            self._tick.wait(self._interval)
            with self._lock:
                leases = list(self._leases)
            for lease in leases:
                try:
                    lease.mark("renew", self._lease_us)
                except Exception:
                    logger.warning("Could not renew the lease of step %s", lease.task_id)


class SingletonRequest(Request):
    """The worker's request for a singleton step: fails the run on a hard time limit."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        # Celery fires task_failure for a hard time limit from the main process without
        # the task's request on the stack; push it so the handler can read the stamps.
        self.task.request_stack.push(self._context)
        try:
            super().on_timeout(soft, timeout)
        finally:
            self.task.request_stack.pop()


class SingletonTask(Task):
    """Base task class that runs a step only if its run is current and live.

    Use it as the app's task class: ``Celery(..., task_cls=SingletonTask)``. Tasks
    called outside an orchestration run (no stamps) behave like plain Celery tasks.
    """

    Request = SingletonRequest

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        identity = RunIdentity.from_request(self.request)
        if identity is None:
            return super().__call__(*args, **kwargs)
        return self._run_step(identity, args, kwargs)

    def _run_step(self, identity: RunIdentity, args: tuple, kwargs: dict) -> Any:
        rt = runtime(self.app)
        lease = Lease(rt.store, identity, self.request.id)
        gate = rt.store.begin_step(
            identity.instance_id, identity.run_id, lease.task_id, lease.token,
            rt.settings.step_lease, self.name,
        )
        gate_decided.send(sender=self, verdict=gate.outcome)
        if gate.outcome in ("stale", "parked"):
            logger.info(
                "Skipping %s[%s]: run %s of instance %r is not running this step (%s %s).",
                self.name, lease.task_id, identity.run_id, identity.instance_id,
                gate.outcome, gate.detail,
            )
            raise Ignore()
        if gate.outcome == "done":
            # A redelivery of a step that already succeeded: hand its result on again;
            # a duplicate of the next step is stopped by that step's own gate.
            return loads(gate.detail)
        if gate.outcome == "busy":
            # Another delivery holds the lease; come back when it would have expired.
            countdown = int(gate.detail) / 1_000_000 + 0.5
            raise self.retry(countdown=countdown, max_retries=self.request.retries + 1)
        if gate.outcome == "suspended":
            return self._park_suspended(rt, identity, args, kwargs)
        if gate.outcome == "continued":
            return self.on_continued(identity, gate.detail, kwargs)
        return self._run_leased(rt, identity, lease, args, kwargs)

    def _run_leased(
        self, rt: Runtime, identity: RunIdentity, lease: Lease, args: tuple, kwargs: dict
    ) -> Any:
        self.request.singleton_lease = lease  # for on_replace
        ids = {"instance_id": identity.instance_id, "run_id": identity.run_id, "task_id": lease.task_id}
        step_started.send(sender=self, **ids)
        with rt.heartbeat.keep(lease):
            try:
                result = super().__call__(*args, **kwargs)
            except BaseException:
                step_finished.send(sender=self, failed=True, **ids)
                lease.mark("release")
                raise
        step_finished.send(sender=self, failed=False, **ids)
        if identity.is_final(lease.task_id):
            # The last step's result is the run's output: this ends the run (and drops
            # its step markers), so a redelivery of this step finds the run finished.
            if rt.store.end_run(
                identity.instance_id, identity.run_id, RuntimeStatus.COMPLETED, dumps(result),
                lease.task_id,
            ):
                run_ended.send(sender=self, store=rt.store, **_ended(identity, RuntimeStatus.COMPLETED))
        else:
            lease.mark("done", dumps(result))
        return result

    def _park_suspended(self, rt: Runtime, identity: RunIdentity, args: tuple, kwargs: dict) -> Any:
        # The run is suspended: keep this delivery (with the rest of its chain) in the
        # record instead of running it; resume publishes it again, same task id.
        sig = self.signature_from_request(self.request, args, kwargs)
        park = dumps({"kind": "suspend", "run": identity.run_id, "sig": dict(sig)})
        gate = rt.store.park(identity.instance_id, identity.run_id, self.request.id, park)
        if gate.outcome == "resumed":
            return self._run_step(identity, args, kwargs)
        logger.info("Parked %s[%s]: instance %r is suspended.", self.name, self.request.id,
                    identity.instance_id)
        raise Ignore()

    def on_continued(self, identity: RunIdentity, new_run: str, kwargs: dict) -> Any:
        """Handle a redelivered step whose run was continued as new by this very step."""
        raise Ignore()

    def on_replace(self, sig: Any) -> Any:
        """Stamp a replacement with this step's run, and hand it this step's lease.

        Celery gives the replacement's last task this task's id but not its stamps; without
        them the replacement would run unfenced and a replaced last step never complete.
        """
        identity = RunIdentity.from_request(self.request)
        if identity is not None:
            sig.stamp(**identity.stamps())
            # The replacement runs under this task's id: free the lease before it starts.
            self.request.singleton_lease.mark("release")
        return super().on_replace(sig)



def _complete(task: Task, result: Any) -> None:
    identity = RunIdentity.from_request(task.request)
    rt = runtime(task.app)
    if rt.store.end_run(identity.instance_id, identity.run_id, RuntimeStatus.COMPLETED, dumps(result)):
        run_ended.send(sender=task, store=rt.store, **_ended(identity, RuntimeStatus.COMPLETED))


def _fail(app: Celery, request: Any, exc: BaseException) -> None:
    identity = RunIdentity.from_request(request)
    if identity is None:
        return
    output = dumps(f"{type(exc).__name__}: {exc}")
    store = runtime(app).store
    if store.end_run(identity.instance_id, identity.run_id, RuntimeStatus.FAILED, output, request.id or ""):
        run_ended.send(sender=app, store=store, **_ended(identity, RuntimeStatus.FAILED))


def _ended(identity: RunIdentity, status: RuntimeStatus) -> dict[str, str]:
    # The run_ended signal's arguments for a run whose identity is known.
    return {"instance_id": identity.instance_id, "orchestrator": identity.name, "status": status.value}


def init_app(app: Celery) -> None:
    """Register the singleton layer's tasks and signal handlers on a Celery app."""

    # Ends a run whose canvas has no single last task (it ends in a group), or whose
    # last task replaced itself. It needs no step gate: end_run is itself fenced on the
    # run ID and idempotent, so a stale or redelivered completion writes nothing.
    @app.task(name=COMPLETE_TASK, bind=True, base=Task)
    def complete(self: Task, result: Any) -> None:
        _complete(self, result)

    def on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        # Celery sends task_failure once per final failure of a task: from the pool child
        # when the step raised, and from the worker's main process (request on the stack)
        # when the child was lost or hit its hard time limit. Retries are not failures.
        if sender is None or sender.app is not app:
            return
        _fail(app, sender.request, exception)

    def on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
        if sender is None or sender.app is not app:
            return
        identity = RunIdentity.from_request(request)
        store = runtime(app).store
        if identity is not None and store.end_run(
            identity.instance_id, identity.run_id, RuntimeStatus.TERMINATED, dumps("revoked")
        ):
            run_ended.send(sender=app, store=store, **_ended(identity, RuntimeStatus.TERMINATED))

    from . import durable, recovery  # they build on this module

    durable.register(app)
    recovery.register(app)
    task_failure.connect(on_failure, weak=False)
    task_revoked.connect(on_revoked, weak=False)

    # Operations (issue 5): the beat/Flower starter task, and run-labelled log records.
    from . import logs, metrics, schedules, tracing  # imported late: schedules imports this module

    schedules.register_starter(app)
    logs.install()
    metrics.install(app)
    tracing.install(app)
