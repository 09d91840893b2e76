"""Periodic singleton starts: the worker-side starter task and beat schedule entries.

Beat only publishes messages; it imports the starter task when it can (then calls
``apply_async``) and falls back to ``send_task`` when it cannot. Either way the
decision happens here, in the worker, through the core's atomic claim, so neither a
missing import nor two beat processes started by mistake can start two live runs.

Overlap policies, when a tick finds the instance's previous run still live:

- ``skip`` (default): the tick does nothing but log (INFO) and count that it skipped.
- ``buffer_one``: the first such tick takes the instance's one buffer slot and comes
  back every ``poll`` seconds (a retry of itself) until the live run has ended, then
  starts; ticks that find the slot taken are skipped. At most one tick is ever
  buffered, and a buffered tick gives up after ``max_wait`` seconds.
- ``terminate_other``: the live run is terminated and the new run claimed in one step.

Every tick carries its schedule slot: the schedule's name and the due time it stands
for, computed by beat as it sends the tick (``kwargs["slot"]``). Intervals are aligned
to the epoch (``Every``) and crontabs to the wall clock, so beat processes started at
different times send ticks of the same slots. The worker takes each slot once, for
whichever tick comes first: a second tick of a slot (another beat, a backlog) and a
tick older than the latest slot taken are skipped, whatever the policy; a redelivered
tick (same task id) finds the outcome it reached and does nothing again.

Flower's ``async-apply`` and ``send-task`` of ``singleton.start`` are starts of the
same kind: a duplicate is refused (skipped), never run twice.
"""

from __future__ import annotations

import enum
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery, Task
from celery.beat import BeatLazyFunc
from celery.exceptions import Retry
from celery.schedules import crontab, schedstate, schedule

from .client import OrchestrationClient
from .errors import InstanceAlreadyExists
from .orchestrator import get_orchestrator
from .policies import IfLive
from .runtime import runtime
from .signals import tick_decided
from .status import validate_instance_id
from .store import TickVerdict

logger = logging.getLogger(__name__)

START_TASK = "singleton.start"


class Overlap(enum.StrEnum):
    """What a tick does when it finds the instance's previous run still live."""

    SKIP = "skip"  # log and count the skipped tick
    BUFFER_ONE = "buffer_one"  # wait in the instance's one buffer slot, then start
    TERMINATE_OTHER = "terminate_other"  # terminate the live run and start, in one claim


class TickOutcome(enum.StrEnum):
    """How a tick ended; counted per instance (``Store.tick_counts``)."""

    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"  # entered the buffer; it ends as started or skipped later
    FAILED = "failed"  # raised (an unknown orchestrator, the store unreachable...)


# The outcomes that end a tick: a redelivery of a tick that reached one does nothing.
FINAL = frozenset({TickOutcome.STARTED, TickOutcome.SKIPPED, TickOutcome.FAILED})


# A buffered tick looks again this often, and gives up after this long.
BUFFER_POLL_S = 1.0
BUFFER_MAX_WAIT_S = 3600.0


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A crontab tick sent late (beat was down) looks this far back for the due time it
# stands for, a step at a time, and walks forward from there at most this often.
CRON_LOOKBACKS = (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=367),
                  timedelta(days=4 * 366))
CRON_MAX_STEPS = 10_000
# A slot name longer than this (a hand-made message) is ignored: the tick has no slot.
MAX_SLOT_NAME = 200


def _epoch_us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


class Every(schedule):
    """An interval schedule aligned to the epoch: due at each multiple of ``run_every``
    since 1970-01-01 UTC, whenever beat started.

    Plain interval schedules count from beat's own start, so two beat processes (or
    one restarted) tick at different times; aligned ones agree on every due time.
    """

    def due_us(self, moment: datetime) -> int:
        """Return the latest due time at or before `moment`, in µs since the epoch."""
        period = self._period_us()
        return _epoch_us(self.maybe_make_aware(moment)) // period * period

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Return the time from now to the first due time after `last_run_at`."""
        after = self.due_us(last_run_at) + self._period_us()
        return timedelta(microseconds=after - _epoch_us(self.maybe_make_aware(self.now())))

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due once a due time passed since `last_run_at`; next check at the next one."""
        remaining = self.remaining_estimate(last_run_at).total_seconds()
        if remaining > 0:
            return schedstate(False, remaining)
        now = self.maybe_make_aware(self.now())
        next_due = self.due_us(now) + self._period_us()
        return schedstate(True, (next_due - _epoch_us(now)) / 1e6)

    def _period_us(self) -> int:
        period = self.run_every // timedelta(microseconds=1)
        if period <= 0:
            raise ValueError("an interval schedule must be longer than 0 s")
        return period

    def __repr__(self) -> str:
        return f"<every {self.run_every.total_seconds():g} s, aligned to the epoch>"


def aligned(when: Any) -> Any:
    """Return `when` with plain intervals (seconds, timedelta, ``schedule``) as ``Every``.

    Crontabs are aligned to the wall clock already; other schedules are kept as given.
    """
    if isinstance(when, int | float | timedelta):
        return Every(when)
    if type(when) is schedule:
        return Every(when.run_every, nowfun=when.nowfun)
    return when


def slot_name(when: Any) -> str:
    """Return the name of `when`'s slots ('' when its due times cannot be told)."""
    if isinstance(when, Every):
        return f"every {when.run_every.total_seconds():g}s"
    if isinstance(when, crontab):
        fields = (when._orig_minute, when._orig_hour, when._orig_day_of_month, when._orig_month_of_year,
                  when._orig_day_of_week)
        return "cron " + " ".join(str(field) for field in fields)
    return ""


def due_now(when: Any) -> dict[str, str] | None:
    """Return the slot beat's tick stands for as it is sent: name and due time (ISO).

    Beat calls this (a ``BeatLazyFunc``) when it sends a tick; None when `when` is
    neither ``Every`` nor a crontab.
    """
    if isinstance(when, Every):
        due = EPOCH + timedelta(microseconds=when.due_us(when.now()))
    elif isinstance(when, crontab):
        due = _cron_due(when, when.maybe_make_aware(when.now()))
    else:
        due = None
    if due is None:
        return None
    return {"schedule": slot_name(when), "due": due.astimezone(UTC).isoformat().replace("+00:00", "Z")}


def _cron_due(cron: crontab, now: datetime) -> datetime | None:
    # The latest occurrence at or before now: this minute when beat is on time, else
    # walk forward from a lookback (crontab's own arithmetic, in its time zone).
    minute = now.astimezone(cron.tz).replace(second=0, microsecond=0)
    if _cron_matches(cron, minute):
        return minute
    for lookback in CRON_LOOKBACKS:
        due = _cron_next(cron, minute - lookback)
        if due > minute:
            continue
        for _ in range(CRON_MAX_STEPS):
            later = _cron_next(cron, due)
            if later > minute:
                return due
            due = later
        return None
    return None


def _cron_matches(cron: crontab, moment: datetime) -> bool:
    return (moment.month in cron.month_of_year and moment.day in cron.day_of_month
            and moment.isoweekday() % 7 in cron.day_of_week and moment.hour in cron.hour
            and moment.minute in cron.minute)


def _cron_next(cron: crontab, after: datetime) -> datetime:
    start, delta, _ = cron.remaining_delta(after)
    return start + delta


def singleton_entry(
    name: str,
    instance_id: str,
    *,
    schedule: Any,
    input: Any = None,
    overlap: str = "skip",
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a ``beat_schedule`` entry that starts `name` as instance `instance_id`.

    Args:
        name: a registered orchestrator's name.
        instance_id: the fixed instance ID every tick starts.
        schedule: seconds, a ``timedelta`` or a ``crontab``, as for any beat entry;
            intervals are aligned to the epoch (``Every``): a 30 s entry is due at :00
            and :30 of every minute, whenever beat started.
        input: the JSON-serialisable input of every run.
        overlap: what a tick does while the previous run is live: ``skip``,
            ``buffer_one`` or ``terminate_other``.
        options: extra ``apply_async`` options of the tick message (queue, expires...).

    Raises:
        ValueError: the overlap policy is unknown.
        InvalidInstanceId: the instance ID breaks the rules.
    """
    _check_policy(overlap)
    validate_instance_id(instance_id)
    when = aligned(schedule)
    kwargs: dict[str, Any] = {"input": input, "overlap": overlap}
    if slot_name(when):
        kwargs["slot"] = BeatLazyFunc(due_now, when)  # beat stamps the slot as it sends
    return {
        "task": START_TASK,
        "schedule": when,
        "args": (name, instance_id),
        "kwargs": kwargs,
        "options": dict(options or {}),
    }


def _check_policy(overlap: str) -> Overlap:
    try:
        return Overlap(overlap)
    except ValueError:
        raise ValueError(f"overlap must be one of {', '.join(Overlap)}, not {overlap!r}") from None


class Tick:
    """One execution of the starter task: one attempt to start an instance's next run."""

    def __init__(
        self, task: Task, name: str, instance_id: str, input: Any, overlap: str, slot: Any = None
    ) -> None:
        self.task, self.name, self.input = task, name, input
        self.overlap = _check_policy(overlap)
        self.instance_id = validate_instance_id(instance_id)
        self.slot, self.due_us = _slot(name, slot)
        self.client = OrchestrationClient(task.app)
        self.store = runtime(task.app).store
        # The buffered tick is the task holding the slot; its retries keep its id.
        self.token = task.request.id or ""

    def run(self, poll: float, max_wait: float) -> dict[str, Any]:
        """Start the run or apply the overlap policy; return what happened.

        A tick that raises is counted as failed, then raises.
        """
        try:
            return self._run(poll, max_wait)
        except Retry:
            raise
        except Exception as exc:
            self._outcome(TickOutcome.FAILED, f"{type(exc).__name__}: {exc}")
            raise

    def _run(self, poll: float, max_wait: float) -> dict[str, Any]:
        get_orchestrator(self.name)  # an unknown name fails the tick, whatever the policy
        begin = self.store.begin_tick(self.instance_id, token=self.token, duplicate=TickOutcome.SKIPPED,
                                      slot=self.slot, due_us=self.due_us)
        if begin.outcome is TickVerdict.DUPLICATE:  # counted by the store
            return self._said(TickOutcome.SKIPPED, f"its slot was taken by the tick due {_iso(begin.detail)}")
        counted = begin.detail.split()
        decided = next((TickOutcome(o) for o in counted if o in FINAL), None)
        buffered = self.overlap is Overlap.BUFFER_ONE and self.task.request.retries > 0
        if decided or (TickOutcome.BUFFERED in counted and not buffered):
            # A redelivery: the tick's outcome stands (a buffered tick's retry waits on).
            logger.info("Tick %s of instance %r was %s already: redelivery ignored.",
                        self.token, self.instance_id, decided or TickOutcome.BUFFERED)
            return {"instance_id": self.instance_id, "outcome": decided or TickOutcome.BUFFERED}
        if buffered and not self.store.hold_buffer(self.instance_id, token=self.token, ttl_s=_slot_ttl(poll)):
            return self._outcome(TickOutcome.SKIPPED, "its buffer slot expired")
        try:
            self._start()
        except InstanceAlreadyExists as exc:
            return self._refused(exc, poll, max_wait)
        if buffered:
            self.store.release_buffer(self.instance_id, token=self.token)
        return self._outcome(TickOutcome.STARTED, "buffered tick" if buffered else "")

    def _start(self) -> None:
        # The tick's task id is the request ID: a redelivered tick finds the run it started.
        live = IfLive.TERMINATE_EXISTING if self.overlap is Overlap.TERMINATE_OTHER else IfLive.FAIL
        self.client.start_new(self.name, self.instance_id, self.input, if_live=live, request_id=self.token)

    def _refused(self, exc: InstanceAlreadyExists, poll: float, max_wait: float) -> dict[str, Any]:
        live = f"run {exc.run_id} is still {exc.runtime_status}"
        if self.overlap is not Overlap.BUFFER_ONE:
            return self._outcome(TickOutcome.SKIPPED, live)
        waited = self.task.request.retries * poll
        if waited >= max_wait:
            self.store.release_buffer(self.instance_id, token=self.token)
            return self._outcome(TickOutcome.SKIPPED, f"{live} after {waited:.0f} s in the buffer")
        if self.task.request.retries == 0:
            if not self.store.hold_buffer(self.instance_id, token=self.token, ttl_s=_slot_ttl(poll)):
                return self._outcome(TickOutcome.SKIPPED, f"{live} and a tick is already buffered")
            self._outcome(TickOutcome.BUFFERED, live)
        # Retry keeps the task id, which is the slot's token. The tick's own expiry
        # (options={"expires": ...}) is for the tick beat sent, not for its waiting: a
        # retry that carried it would be discarded, the buffered run lost.
        raise self.task.retry(countdown=poll, expires=None)

    def _outcome(self, outcome: TickOutcome, detail: str) -> dict[str, Any]:
        self.store.count_tick(self.instance_id, token=self.token, outcome=outcome)
        tick_decided.send(sender=self.task, orchestrator=self.name, outcome=outcome)
        return self._said(outcome, detail)

    def _said(self, outcome: TickOutcome, detail: str) -> dict[str, Any]:
        due = [f"due {_iso(str(self.due_us))}"] if self.slot else []
        details = "; ".join(due + ([detail] if detail else []))
        logger.info(
            "Tick of %s for instance %r %s%s.",
            self.name, self.instance_id, outcome, f" ({details})" if details else "",
        )
        return {"instance_id": self.instance_id, "outcome": outcome}


def _slot(name: str, slot: Any) -> tuple[str, int]:
    # The entry's slot line is its orchestrator and its schedule; a tick without a
    # slot (Flower, send_task by hand, a schedule of no known due times) has none.
    if not isinstance(slot, dict) or not isinstance(slot.get("due"), str):
        return "", 0
    if not isinstance(slot.get("schedule"), str) or not 0 < len(slot["schedule"]) <= MAX_SLOT_NAME:
        return "", 0
    try:
        due = datetime.fromisoformat(slot["due"])
    except ValueError:
        return "", 0
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return f"{name} {slot['schedule']}", _epoch_us(due)


def _iso(us: str) -> str:
    moment = EPOCH + timedelta(microseconds=int(us or 0))
    return moment.isoformat().replace("+00:00", "Z")


def _slot_ttl(poll: float) -> float:
    # Long enough to survive a late retry, short enough that a lost one frees the slot.
    return 3 * poll + 10


def register_starter(app: Celery) -> None:
    """Register the ``singleton.start`` task (the beat and Flower starter) on `app`."""

    # No retry limit: a buffered tick bounds its own wait (max_wait).
    @app.task(name=START_TASK, bind=True, base=Task, max_retries=None)
    def start(
        self: Task,
        name: str,
        instance_id: str,
        input: Any = None,
        overlap: str = "skip",
        poll: float = BUFFER_POLL_S,
        max_wait: float = BUFFER_MAX_WAIT_S,
        slot: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Start `name` as `instance_id` unless its run is live; then apply `overlap`.

        `slot` (beat sets it) names the tick's schedule and due time: one tick per slot.
        """
        return Tick(self, name, instance_id, input, overlap, slot).run(poll, max_wait)
