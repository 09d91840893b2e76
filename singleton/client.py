"""The client: start singleton orchestrations and manage their instances.

Starting lives here; reading instances is ``queries.InstanceQueries`` and acting on
them ``controls.InstanceControls``, which ``OrchestrationClient`` inherits.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import replace
from typing import Any, NamedTuple

from celery import Celery
from kombu.utils.json import loads

from .contention import Contention
from .controls import InstanceControls
from .errors import (
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidArgument,
    InvalidInput,
    ServiceUnavailable,
)
from .orchestrator import Orchestrator, get_orchestrator
from .policies import IfFinished, IfLive
from .runs import RunIdentity, encode_message, publish_message, run_canvas, run_message
from .runtime import runtime
from .signals import StartDecision, run_ended
from .status import (
    RuntimeStatus,
    new_instance_id,
    validate_instance_id,
)
from .store import (
    START_ENTRY,
    ClaimResult,
    ClaimVerdict,
    Recorded,
    Recorders,
    Unrecordable,
)

logger = logging.getLogger(__name__)


class StartedRun(NamedTuple):
    """The run a start answers with: the instance ID and that run's ID."""

    instance_id: str
    run_id: str


class OrchestrationClient(InstanceControls):
    """Start orchestrations as singletons and query, terminate and purge instances."""

    def __init__(self, app: Celery) -> None:
        """Bind the client to a Celery app on which ``singleton.init_app`` was called."""
        self._app = app
        self._store = runtime(app).store
        self._settings = runtime(app).settings
        self._run_lease = self._settings.run_lease
        self._recorders = Recorders.of(app, store_kwargs=self._store.connection_kwargs())
        self._contention = Contention.of(app)

    # -- starting ---------------------------------------------------------------
    def start_new(
        self,
        name: str,
        instance_id: str | None = None,
        input: Any = None,
        *,
        if_live: IfLive | str | None = None,
        if_finished: IfFinished | str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Start orchestrator `name` under `instance_id` unless a live run holds that ID.

        As ``start_run``, returning only the instance ID.
        """
        return self.start_run(name, instance_id, input, if_live=if_live, if_finished=if_finished,
                              request_id=request_id).instance_id

    def start_run(
        self,
        name: str,
        instance_id: str | None = None,
        input: Any = None,
        *,
        if_live: IfLive | str | None = None,
        if_finished: IfFinished | str | None = None,
        request_id: str | None = None,
    ) -> StartedRun:
        """Start orchestrator `name` under `instance_id` unless a live run holds that ID.

        Args:
            name: a registered orchestrator's name.
            instance_id: the singleton key; a random 32-hex-character ID when None
                (derived from `request_id` when one is given, so a retry finds it).
            input: any JSON-serialisable value, handed to the orchestrator.
            if_live: policy while a live run holds the ID (default: the orchestrator's,
                normally ``fail``); see ``singleton.policies.IfLive``.
            if_finished: policy when a finished run is on record (default: the
                orchestrator's, normally ``allow``); see ``IfFinished``.
            request_id: an idempotency key: a start repeating the request ID of the
                run on record answers with that run instead of refusing.

        Returns:
            The instance ID and the run ID: of the new run, or of the run on record
            that answers (a repeated request ID, or ``use_existing``).

        Raises:
            OrchestratorNotFound, InvalidInstanceId, InvalidInput, InvalidArgument,
                PayloadTooLarge (input over ``singleton_max_payload``): nothing was claimed.
            InstanceAlreadyExists: the policies keep the ID with the run on record.
            ServiceUnavailable: Redis or the broker failed; the ID is not left claimed.
        """
        decision = StartDecision(name)
        try:
            started = self._start_new(
                decision, name, instance_id, input, if_live, if_finished, request_id
            )
        except BaseException as exc:
            decision.send(self, exc)
            raise
        decision.send(self, None)
        return started

    def _start_new(
        self,
        decision: StartDecision,
        name: str,
        instance_id: str | None,
        input: Any,
        if_live: IfLive | str | None,
        if_finished: IfFinished | str | None,
        request_id: str | None,
    ) -> StartedRun:
        orchestrator = get_orchestrator(name)
        live, finished = _policies(orchestrator, if_live, if_finished)
        request_id = _request_id(request_id)
        instance_id = _instance_id(instance_id, request_id)
        options = {
            "name": orchestrator.name, "input_json": self._encode(input, "start input"),
            "if_live": live, "if_finished": finished, "request_id": request_id,
            "lease_s": orchestrator.lease or self._run_lease, "timeout_s": orchestrator.timeout or 0.0,
        }
        with self._contention.leading(instance_id) as first:
            if first is not None:  # another thread is starting this ID: probe before building
                probe = self._probe(decision, instance_id, first=first, options=options)
                if probe.outcome is not ClaimVerdict.RETRY:
                    return self._answer(instance_id, probe)
            return self._claim_new_run(decision, orchestrator=orchestrator, instance_id=instance_id,
                                       input=input, options=options)

    def _probe(self, decision: StartDecision, instance_id: str, *, first: threading.Event,
               options: dict[str, Any]) -> ClaimResult:
        # The probe this start shares with the others that wait for the first start of its
        # ID; timed as this start's claim (the wait for the first start included).
        key = (instance_id, options["if_live"], options["if_finished"], options["request_id"],
               options["name"])
        sent: list[bool] = []

        def shared() -> ClaimResult:
            # A probe only asks the policies: the input, up to max_payload, stays here.
            answer, by_me = self._contention.probe(key, first=first, send=lambda n: self._store.claim(
                instance_id, run_id="", probe=n, **{**options, "input_json": ""}))
            sent.append(by_me)
            return answer

        probe = decision.claim(shared)
        # Only the start that sent the probe re-sends a still pending first message.
        return probe if sent[0] else replace(probe, message="")

    def _claim_new_run(
        self, decision: StartDecision, *, orchestrator: Orchestrator, instance_id: str, input: Any,
        options: dict[str, Any],
    ) -> StartedRun:
        try:
            canvas = orchestrator.build(input)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(str(exc)) from exc
        identity = RunIdentity(instance_id, uuid.uuid4().hex, orchestrator.name)
        canvas, identity = run_canvas(self._app, canvas, identity)
        message = run_message(canvas)
        # Where the broker is the store's database, the claim pushes the message itself:
        # it reaches its queue exactly when the claim succeeds, in one round trip.
        recorded = self._record(message, instance_id=instance_id)
        # The claim keeps the first message in the instance's outbox: a caller that dies
        # before its publish leaves it to a retried start or the reconciler to send.
        claim = decision.claim(self._store.claim, instance_id, run_id=identity.run_id,
                               message_json=encode_message(message), recorded=recorded, **options)
        if not claim.claimed:
            return self._answer(instance_id, claim)
        if claim.ended:  # terminate_existing ended the live run in the same script
            run_ended.send(sender=self, store=self._store, instance_id=instance_id,
                           orchestrator=claim.ended, status=RuntimeStatus.TERMINATED.value)
        if recorded is None:
            self._publish(instance_id, message=message, claim=claim)
        return StartedRun(instance_id, identity.run_id)

    def _answer(self, instance_id: str, claim: ClaimResult) -> StartedRun:
        # A claim that made no run: the run on record answers, or the start is refused.
        if claim.outcome is not ClaimVerdict.EXISTING:
            raise InstanceAlreadyExists(instance_id, claim.status, claim.run_id)
        if claim.message:
            self._resend(instance_id, claim.message)
        return StartedRun(instance_id, claim.run_id)

    def _record(self, message: dict[str, Any], *, instance_id: str) -> Recorded | None:
        # What publishing the message would send, built by Celery and kombu themselves;
        # None where the claim cannot send it (another broker, a queue with an expiry).
        # A canvas with a group or chord is published as Celery publishes it: chain.run
        # does not hand a producer on, so its messages could not be recorded.
        if "canvas" in message:
            return None
        try:
            recorder = self._recorders.get()
            if recorder is None:
                return None
            return recorder.record(lambda producer: publish_message(
                self._app, message, ignore_result=True, producer=producer))
        except Unrecordable:
            return None
        except Exception as exc:  # the broker did not answer a declaration: nothing is claimed
            raise ServiceUnavailable(
                f"Could not prepare the orchestration's message for the broker: {exc}",
                instance_id=instance_id,
            ) from exc

    def _publish(self, instance_id: str, *, message: dict[str, Any], claim: ClaimResult) -> None:
        try:
            # The client reads status from the record, never from Celery results, so it
            # need not subscribe to the first step's result channel (two commands fewer).
            # The outbox entry is cleared by the run's first step, not here: one round
            # trip fewer for every start.
            publish_message(self._app, message, ignore_result=True)
        except Exception as exc:
            self._give_back(instance_id, claim)
            raise ServiceUnavailable(
                f"Could not publish the orchestration to the broker: {exc}",
                instance_id=instance_id,
            ) from exc

    def restart(self, instance_id: str, *, new_instance_id: bool = True) -> str:
        """Start the instance's orchestrator again with its original input.

        Args:
            instance_id: the instance to restart.
            new_instance_id: start under a new random ID (default); with False, reuse
                this ID, which succeeds only once the instance is terminal.

        Returns:
            The ID of the new run.

        Raises:
            InstanceNotFound: no record exists.
            InstanceAlreadyExists: same ID and the instance is still live.
        """
        record = self._store.read(validate_instance_id(instance_id))
        if record is None:
            raise InstanceNotFound(instance_id)
        target = None if new_instance_id else instance_id
        return self.start_new(
            record["name"], target, loads(record["input"]),
            if_live=IfLive.FAIL, if_finished=IfFinished.ALLOW,
        )

    def _resend(self, instance_id: str, message_json: str) -> None:
        # A repeated start finds its run's first message still unpublished (its first
        # attempt died or lost its publish): send it again, under the same task ids.
        try:
            publish_message(self._app, loads(message_json), ignore_result=True)
        except Exception as exc:
            raise ServiceUnavailable(
                f"Could not publish the orchestration to the broker: {exc}; it stays in the "
                "outbox and is sent again by a retry or the reconciler", instance_id=instance_id,
            ) from exc
        self._store.sent(instance_id, entry=START_ENTRY, message_json=message_json)

    def _give_back(self, instance_id: str, claim: ClaimResult) -> None:
        try:
            self._store.undo_claim(instance_id, run_id=claim.run_id)
        except ServiceUnavailable:
            logger.error("Could not undo the claim of %r after a failed publish", instance_id)
            raise


def _policies(
    orchestrator: Orchestrator, if_live: IfLive | str | None, if_finished: IfFinished | str | None
) -> tuple[str, str]:
    try:
        live = IfLive(orchestrator.if_live if if_live is None else if_live)
        finished = IfFinished(orchestrator.if_finished if if_finished is None else if_finished)
    except ValueError as exc:
        raise InvalidArgument("start policy", str(exc)) from None
    return live.value, finished.value


def _request_id(request_id: str | None) -> str:
    if request_id is None:
        return ""
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 256:
        raise InvalidArgument("request ID", "it must be a string of 1 to 256 characters")
    return request_id


def _instance_id(instance_id: str | None, request_id: str) -> str:
    if instance_id is not None:
        return validate_instance_id(instance_id)
    if request_id:
        # A retried start without an ID must find the ID its first attempt made.
        return uuid.uuid5(uuid.NAMESPACE_URL, f"singleton-request:{request_id}").hex
    return new_instance_id()
