"""The worker side: the task class that fences every step, and how a run's end is recorded.

Every task of a run carries its instance and run identity as stamps. Before user
code runs, SingletonTask asks the store (one script) whether this delivery may run:
the run must still be the instance's current, live run, and no other delivery of
the same step may hold its lease. A step of a stale run raises Ignore, which also
stops the rest of its chain.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore
from celery.worker.request import Request
from kombu.utils.json import dumps, loads

from .errors import ServiceUnavailable
from .leases import Lease
from .runs import CurrentRun, RunIdentity, broker_countdown, hand_on, running_in
from .runtime import Runtime, runtime
from .signals import gate_decided, run_ended, step_finished, step_started
from .status import RuntimeStatus
from .store import StepGate, StepVerdict

logger = logging.getLogger(__name__)
# How often a gate that cannot reach the store tries again (while it holds the message).
STORE_RETRY_S = 0.5


class SingletonRequest(Request):
    """The worker's request for a singleton step: fails the run on a hard time limit."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Report the time limit with the task's request on the stack (see below)."""
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
    #: run_canvas leaves the next step's stamp to this class (runs.HANDS_ON names it).
    singleton_hands_on = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the step through its gate when it belongs to a run."""
        identity = RunIdentity.from_request(self.request)
        if identity is None:
            return super().__call__(*args, **kwargs)
        return self._run_step(identity, args, kwargs)

    def _run_step(self, identity: RunIdentity, args: tuple, kwargs: dict) -> Any:
        rt = runtime(self.app)
        lease = Lease(rt.store, identity, self.request.id)
        # The delivery as the gate sees it, kept while the step runs: if its lease runs
        # out with no completion, the reconciler publishes it again (same task id).
        message = dumps(dict(self.signature_from_request(self.request, args, kwargs)))
        gate = self._gate(rt, identity, lease, message)
        gate_decided.send(sender=self, verdict=gate.outcome)
        match gate.outcome:
            case StepVerdict.RUN:
                self._hand_on(identity)
                run = CurrentRun(identity.instance_id, identity.run_id, gate.fence, identity.name)
                with running_in(run):
                    return self._run_leased(rt, identity, lease, args, kwargs)
            case StepVerdict.DONE:
                # A redelivery of a step that already succeeded: hand its result on again;
                # a duplicate of the next step is stopped by that step's own gate.
                self._hand_on(identity)
                return loads(gate.detail)
            case StepVerdict.BUSY:
                # Another delivery holds the lease; come back when it would have expired.
                self._wait(int(gate.detail) / 1_000_000 + 0.5, args, kwargs)
            case StepVerdict.SUSPENDED:
                return self._park_suspended(rt, identity, args, kwargs)
            case StepVerdict.CONTINUED:
                return self.on_continued(identity, gate.detail, kwargs)
        logger.info(
            "Skipping %s[%s]: run %s of instance %r is not running this step (%s %s).",
            self.name, lease.task_id, identity.run_id, identity.instance_id, gate.outcome, gate.detail,
        )
        raise Ignore()

    def _hand_on(self, identity: RunIdentity) -> None:
        # A plain chain's first message stamps only its first step: stamp the next one,
        # which Celery's tracer publishes (chain[-1], with the rest as its chain) once this
        # step returns. Before user code, so that what a step parks (the rest of its chain
        # when it waits for an event) or a replacement takes over is stamped too.
        if identity.plain and self.request.chain:
            hand_on(self.request.chain[-1], identity)

    def _gate(self, rt: Runtime, identity: RunIdentity, lease: Lease, message: str) -> StepGate:
        # A store that restarts or fails over is back within seconds: wait for it (up to
        # a step lease) while this delivery holds its message, rather than fail the step
        # with nobody able to record the failure.
        deadline = time.monotonic() + rt.settings.step_lease
        while True:
            try:
                return rt.store.begin_step(
                    identity.instance_id, run_id=identity.run_id, task_id=lease.task_id,
                    token=lease.token, lease_s=rt.settings.step_lease, name=self.name,
                    message_json=message, parent_id=_parent_to_drop(self.request),
                )
            except ServiceUnavailable:
                if time.monotonic() > deadline:
                    raise
                logger.warning("The store is unreachable; %s[%s] waits for it.", self.name, lease.task_id)
                time.sleep(STORE_RETRY_S)

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
                lease.release()
                raise
        step_finished.send(sender=self, failed=False, **ids)
        if identity.is_final(lease.task_id):
            # The last step's result is the run's output: this ends the run (and drops
            # its step markers), so a redelivery of this step finds the run finished.
            if rt.store.end_run(
                identity.instance_id, run_id=identity.run_id, status=RuntimeStatus.COMPLETED,
                output_json=dumps(result), task_id=lease.task_id,
            ):
                run_ended.send(sender=self, store=rt.store, **_ended(identity, RuntimeStatus.COMPLETED))
            else:
                # The run had ended already (terminated): drop this step's draining
                # lease, or the ID's next run would wait until it runs out.
                lease.release()
        else:
            lease.complete(dumps(result))
        return result

    def _wait(self, countdown: float, args: tuple, kwargs: dict) -> None:
        # Waiting is not retrying: the same delivery goes out again with a countdown and
        # its retry count unchanged, so a wait never spends the step's own max_retries
        # (self.retry would count it, and fire task_retry for a step that never ran).
        countdown = broker_countdown(self.app, countdown)
        self.signature_from_request(self.request, args, kwargs, countdown=countdown).apply_async()
        logger.info("Waiting %.1f s to run %s[%s]: another delivery holds it.", countdown,
                    self.name, self.request.id)
        raise Ignore()

    def _park_suspended(self, rt: Runtime, identity: RunIdentity, args: tuple, kwargs: dict) -> Any:
        # The run is suspended: keep this delivery (with the rest of its chain) in the
        # record instead of running it; resume publishes it again, same task id.
        sig = self.signature_from_request(self.request, args, kwargs)
        park = dumps({"kind": "suspend", "run": identity.run_id, "task": self.request.id,
                      "sig": dict(sig)})
        gate = rt.store.park(
            identity.instance_id, run_id=identity.run_id, task_id=self.request.id, park_json=park
        )
        if gate.outcome is StepVerdict.RESUMED:
            # No longer suspended, or the step is done, waiting or held: the gate decides.
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
            self.request.singleton_lease.release()
        return super().on_replace(sig)


def _parent_to_drop(request: Any) -> str:
    # The step before this one, whose kept message this start makes useless. Not for a
    # group's member: its publisher may have died before it published every sibling,
    # and re-sending the step before publishes the group again (same ids; gates dedupe).
    return "" if request.group else (request.parent_id or "")


# -- a run's end, from outside its steps -------------------------------------------
def complete_run(task: Task, result: Any) -> None:
    """Complete the run of `task` (the appended completion task) with `result`."""
    _end(task.app, RunIdentity.from_request(task.request), RuntimeStatus.COMPLETED, dumps(result))


def fail_run(app: Celery, request: Any, exc: BaseException) -> None:
    """Fail the run of a step that failed for good (no-op for tasks outside a run)."""
    output = dumps(f"{type(exc).__name__}: {exc}")
    _end(app, RunIdentity.from_request(request), RuntimeStatus.FAILED, output, request.id or "")


def revoke_run(app: Celery, request: Any) -> None:
    """Terminate the run of a revoked step (no-op for tasks outside a run)."""
    _end(app, RunIdentity.from_request(request), RuntimeStatus.TERMINATED, dumps("revoked"))


def _end(app: Celery, identity: RunIdentity | None, status: RuntimeStatus, output_json: str,
         task_id: str = "") -> None:
    # Fenced in the script: a stale or repeated end writes nothing and signals nothing.
    if identity is None:
        return
    store = runtime(app).store
    if store.end_run(identity.instance_id, run_id=identity.run_id, status=status,
                     output_json=output_json, task_id=task_id):
        run_ended.send(sender=app, store=store, **_ended(identity, status))


def _ended(identity: RunIdentity, status: RuntimeStatus) -> dict[str, str]:
    # The run_ended signal's arguments for a run whose identity is known.
    return {"instance_id": identity.instance_id, "orchestrator": identity.name, "status": status.value}
