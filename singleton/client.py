"""The client: start singleton orchestrations and manage their instances."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from celery import Celery
from kombu.utils.json import dumps, loads

from .contention import Contention
from .durable import publish_release
from .errors import (
    InstanceAlreadyExists,
    InstanceIsLive,
    InstanceIsTerminal,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    InvalidInput,
    InvalidTransition,
    PayloadTooLarge,
    RunReplaced,
    ServiceUnavailable,
    TooManyEvents,
    WaitTimeout,
)
from .orchestrator import Orchestrator, get_orchestrator
from .policies import IfFinished, IfLive
from .runs import RunIdentity, encode_message, publish_message, run_canvas, run_message
from .runtime import runtime
from .signals import StartDecision, run_ended, send_release_ended
from .status import (
    OrchestrationStatus,
    RuntimeStatus,
    StepHistory,
    new_instance_id,
    validate_event_name,
    validate_instance_id,
)
from .store import (
    SHARDS,
    START_ENTRY,
    ClaimResult,
    ClaimVerdict,
    Recorded,
    Recorders,
    Release,
    Unrecordable,
    Verdict,
)

logger = logging.getLogger(__name__)

# How many index entries a filtered list page may examine per requested result.
SCAN_FACTOR = 10


class StartedRun(NamedTuple):
    """The run a start answers with: the instance ID and that run's ID."""

    instance_id: str
    run_id: str


@dataclass(frozen=True)
class StatusPage:
    """One page of a listing and the token for the next (None at the end)."""

    instances: list[OrchestrationStatus]
    continuation_token: str | None


class OrchestrationClient:
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
            answer, by_me = self._contention.probe(key, first=first, send=lambda n: self._store.claim(
                instance_id, run_id="", probe=n, **options))
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

    # -- reading ----------------------------------------------------------------
    def get_status(
        self,
        instance_id: str,
        *,
        show_input: bool = True,
        show_history: bool = False,
        show_history_output: bool = False,
    ) -> OrchestrationStatus | None:
        """Return the instance's status, or None when no record exists.

        With ``show_history``, ``history`` lists the current run's steps (with their
        results only when ``show_history_output``).
        """
        validate_instance_id(instance_id)
        if not show_history:
            record = self._store.read(instance_id)
            return None if record is None else _to_status(instance_id, record, show_input)
        record, history = self._store.read_with_history(instance_id)
        if record is None:
            return None
        steps = [_step(entry, show_history_output) for entry in history]
        return replace(_to_status(instance_id, record, show_input), history=steps)

    def get_status_by(
        self,
        *,
        runtime_status: Iterable[RuntimeStatus] | None = None,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        page_size: int = 100,
        continuation_token: str | None = None,
        show_input: bool = True,
    ) -> StatusPage:
        """Return one page of instances, newest first, that match every filter given.

        A page examines at most ``page_size`` index entries (``SCAN_FACTOR`` times that
        with a status or prefix filter, asking each shard for a share of it), so its cost
        does not grow with the number of records. A filtered page may hold fewer than
        ``page_size`` instances and still carry a continuation token; follow tokens until
        one is None. ``runtime_status`` None means any status; an empty collection
        matches nothing.

        Raises:
            InvalidContinuationToken: the token was not issued by this library.
            ValueError: page_size is below 1, or a runtime status is unknown.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        statuses = None if runtime_status is None else {RuntimeStatus(s) for s in runtime_status}
        if statuses is not None and not statuses:
            return StatusPage([], None)
        filtered = statuses is not None or bool(instance_id_prefix)
        budget = page_size * (SCAN_FACTOR if filtered else 1)
        cursor = _decode_token(continuation_token) if continuation_token else None
        newest = cursor[0] if cursor else _us(created_time_to, math.inf)
        oldest = _us(created_time_from, -math.inf)
        # A filtered page asks each shard for a share of its budget (twice the even share,
        # so skew costs little), not all of it: its cost then stays flat as records grow.
        per_shard = min(budget, 2 * math.ceil(budget / SHARDS)) if filtered else budget
        candidates, more = self._candidates(newest, oldest, cursor, budget, per_shard)
        records = self._store.read_many(i for i, _ in candidates)
        found: list[OrchestrationStatus] = []
        last = None
        for (instance_id, score), record in zip(candidates, records, strict=True):
            last = (score, instance_id)
            status = _matching(instance_id, record, statuses, instance_id_prefix, show_input)
            if status is not None:
                found.append(status)
            if len(found) == page_size:
                more = more or (instance_id, score) != candidates[-1]
                break
        token = _encode_token(last) if more and last else None
        return StatusPage(found, token)

    def _candidates(
        self, newest: float, oldest: float, cursor: tuple[int, str] | None, budget: int, per_shard: int
    ) -> tuple[list[tuple[str, int]], bool]:
        # One more row per shard than asked for: the cursor's own entry comes back too.
        shards = self._store.index_page(newest, oldest_us=oldest, count=per_shard + 1)
        rows = [(s, i) for shard in shards for i, s in shard if cursor is None or (s, i) < cursor]
        # A full shard may hold more entries above another shard's older rows, so rows
        # below the highest last row of any full shard wait for the next page.
        full = [(shard[-1][1], shard[-1][0]) for shard in shards if len(shard) > per_shard]
        if full:
            floor = max(full)
            rows = [row for row in rows if row >= floor]
        rows.sort(reverse=True)
        return [(i, s) for s, i in rows[:budget]], bool(full) or len(rows) > budget

    def get_status_all(self, *, show_input: bool = True) -> list[OrchestrationStatus]:
        """Return every instance on record, newest first (follows all pages)."""
        return list(self.iter_status_by(show_input=show_input))

    def iter_status_by(self, **filters: Any) -> Iterator[OrchestrationStatus]:
        """Yield every instance that matches, newest first, following continuation tokens.

        Takes ``get_status_by``'s keyword arguments (but ``continuation_token``);
        ``page_size`` sets how many each read fetches, not how many are yielded.
        """
        for page in self._pages(**filters):
            yield from page.instances

    def _pages(self, **filters: Any) -> Iterator[StatusPage]:
        # The one continuation-token loop: listing everything, the CLI and purge by filter.
        token = None
        while True:
            page = self.get_status_by(continuation_token=token, **filters)
            yield page
            token = page.continuation_token
            if token is None:
                return

    def wait_for_completion(
        self,
        instance_id: str,
        timeout: float = 60.0,
        *,
        interval: float | None = None,
        run_id: str | None = None,
    ) -> OrchestrationStatus:
        """Poll until the instance reaches a terminal status and return that status.

        Args:
            instance_id: the instance to wait for.
            timeout: seconds to wait at most.
            interval: seconds between polls; by default 20 ms, doubling up to 0.5 s.
            run_id: wait for this run (and the runs it continued as), not for whatever
                run holds the ID: a later start of the same ID does not answer for it.

        Raises:
            InstanceNotFound: no record exists (or it was purged while waiting).
            RunReplaced: with `run_id`, another run took the ID; that run's end is unknown.
            WaitTimeout: still live after `timeout` seconds; carries the last status.
        """
        deadline = time.monotonic() + timeout
        pause = 0.02 if interval is None else interval
        created = None  # the waited-for run's created time: continued runs keep it
        while True:
            status = self.get_status(instance_id)
            if status is None:
                raise InstanceNotFound(instance_id)
            if run_id is not None and status.run_id != run_id:
                if status.created_time != created:
                    raise RunReplaced(instance_id, run_id, status)
                run_id = status.run_id
            created = status.created_time
            if status.runtime_status.is_terminal:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(instance_id, status)
            time.sleep(min(pause, remaining))
            if interval is None:
                pause = min(pause * 2, 0.5)

    # -- events, suspend, resume --------------------------------------------------
    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        """Send event `event_name` with `data` to the instance.

        The run waiting for it (``wait_for_external_event``) continues with `data` as
        its next step's input; otherwise the event is buffered, in order, per name.

        Raises:
            InstanceNotFound: no record exists.
            InstanceIsTerminal: the instance has finished.
            InvalidEventName, InvalidInput: nothing was sent.
            PayloadTooLarge: `data` is over ``singleton_max_payload`` bytes as JSON.
            TooManyEvents: no run waits for it and the instance already buffers
                ``singleton_max_events`` events; nothing was buffered.
            ServiceUnavailable: the run's next step could not be published; the event
                is applied and the reconciler publishes the step once the broker is back.
        """
        validate_instance_id(instance_id)
        validate_event_name(event_name)
        limit = self._settings.max_events
        release = self._store.raise_event(instance_id, name=event_name,
                                          data_json=self._encode(data, "event data"), max_events=limit)
        if release.outcome is Verdict.FULL:
            raise TooManyEvents(instance_id, limit)
        self._released(instance_id, release, "raise an event to")

    def suspend(self, instance_id: str, reason: str | None = None) -> None:
        """Suspend the instance: no further step starts until ``resume``.

        The step in flight finishes. `reason` is logged only.

        Raises:
            InstanceNotFound, InstanceIsTerminal; InvalidTransition when already suspended.
        """
        outcome, status = self._store.suspend(validate_instance_id(instance_id))
        _check(instance_id, outcome, status, "suspend")
        logger.info("Suspended instance %r (reason: %s).", instance_id, reason)

    def resume(self, instance_id: str, reason: str | None = None) -> None:
        """Resume a suspended instance exactly where it stopped.

        Raises:
            InstanceNotFound, InstanceIsTerminal; InvalidTransition when not suspended.
        """
        release = self._store.resume(validate_instance_id(instance_id))
        self._released(instance_id, release, "resume")
        logger.info("Resumed instance %r (reason: %s).", instance_id, reason)

    def _encode(self, value: Any, what: str) -> str:
        encoded = _encode_input(value)  # ASCII: its length is its size in bytes
        if len(encoded) > self._settings.max_payload:
            raise PayloadTooLarge(what, len(encoded), self._settings.max_payload)
        return encoded

    def _released(self, instance_id: str, release: Release, operation: str) -> None:
        _check(instance_id, release.outcome, release.status, operation)
        send_release_ended(self, self._store, instance_id, release.outcome)
        if release.outcome is Verdict.RELEASE:
            publish_release(self._app, instance_id, release)

    # -- managing ---------------------------------------------------------------
    def terminate(self, instance_id: str, reason: str | None = None) -> None:
        """Terminate the live run of the instance; no further step of it will run.

        Raises:
            InstanceNotFound: no record exists.
            InstanceIsTerminal: the instance has already finished.
        """
        found = self._store.terminate(validate_instance_id(instance_id), reason_json=dumps(reason))
        _check(instance_id, found.outcome, found.status, "terminate")
        run_ended.send(sender=self, store=self._store, instance_id=instance_id, orchestrator="",
                       status=RuntimeStatus.TERMINATED.value)

    def purge_instance_history(self, instance_id: str) -> int:
        """Delete a finished instance's record; return how many were deleted (0 or 1).

        Raises:
            InstanceIsLive: a run is still Pending or Running; nothing was deleted.
        """
        found = self._store.purge(validate_instance_id(instance_id))
        if found.outcome is Verdict.MISSING:
            return 0  # nothing to delete is an answer, not an error
        _check(instance_id, found.outcome, found.status, "purge")
        return 1

    def purge_instance_history_by(
        self,
        *,
        created_time_from: datetime,
        created_time_to: datetime | None = None,
        runtime_status: Iterable[RuntimeStatus] | None = None,
    ) -> int:
        """Delete the finished instances matching the filters; return how many.

        ``runtime_status`` None means every finished status; live statuses in it match
        nothing, since live instances are never purged.
        """
        wanted = RuntimeStatus if runtime_status is None else runtime_status
        finished = [s for s in map(RuntimeStatus, wanted) if s.is_terminal]
        pages = self._pages(runtime_status=finished, created_time_from=created_time_from,
                            created_time_to=created_time_to, show_input=False)
        # The purge script checks the filter again: a record re-run since it was listed stays.
        return sum(
            self._store.purge_many(
                (s.instance_id for s in page.instances),
                created_from_us=_us(created_time_from, -math.inf),
                created_to_us=_us(created_time_to, math.inf),
                statuses=finished,
            )
            for page in pages
        )


def _check(instance_id: str, outcome: Verdict, status: str, operation: str) -> None:
    # The one place a store verdict becomes an error; the others are answers.
    if outcome is Verdict.MISSING:
        raise InstanceNotFound(instance_id)
    if outcome is Verdict.TERMINAL:
        raise InstanceIsTerminal(instance_id, RuntimeStatus(status))
    if outcome is Verdict.CONFLICT:
        raise InvalidTransition(instance_id, RuntimeStatus(status), operation)
    if outcome is Verdict.LIVE:
        raise InstanceIsLive(instance_id, RuntimeStatus(status))


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


def _step(entry: dict[str, str], show_output: bool) -> StepHistory:
    result = loads(entry["result"]) if show_output and entry.get("result") else None
    return StepHistory(
        task_id=entry["taskId"], name=entry["name"], started=_time(entry["start"]),
        ended=_time(entry["end"]), outcome=entry["outcome"], result=result,
    )


def _encode_input(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the input is not JSON-serialisable ({exc})") from exc


def _us(moment: datetime | None, default: float) -> float:
    if moment is None:
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1_000_000


def _time(us: str) -> datetime:
    return datetime.fromtimestamp(int(us) / 1_000_000, tz=UTC)


def _to_status(instance_id: str, record: dict[str, str], show_input: bool) -> OrchestrationStatus:
    def value(field: str) -> Any:
        raw = record.get(field)
        return None if raw is None else loads(raw)

    return OrchestrationStatus(
        name=record["name"],
        instance_id=instance_id,
        runtime_status=RuntimeStatus(record["status"]),
        input=value("input") if show_input else None,
        output=value("output"),
        custom_status=value("custom"),
        created_time=_time(record["created"]),
        last_updated_time=_time(record["updated"]),
        run_id=record["run"],
    )


def _matching(
    instance_id: str,
    record: dict[str, str] | None,
    statuses: set[RuntimeStatus] | None,
    prefix: str | None,
    show_input: bool,
) -> OrchestrationStatus | None:
    # A record may have expired after its index entry was read: skip it.
    if record is None or (prefix and not instance_id.startswith(prefix)):
        return None
    if statuses and RuntimeStatus(record["status"]) not in statuses:
        return None
    return _to_status(instance_id, record, show_input)


def _encode_token(position: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


def _decode_token(token: str) -> tuple[int, str]:
    try:
        score, instance_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        # bool is an int to isinstance; a score is a created time in µs, well inside 64 bits.
        if type(score) is int and abs(score) < 2**63 and isinstance(instance_id, str):
            return score, instance_id
    except (ValueError, TypeError, RecursionError, binascii.Error):
        pass
    raise InvalidContinuationToken(token)
