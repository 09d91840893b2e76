"""Reading instances: one status, filtered pages of them, and waiting for an end.

The read half of ``OrchestrationClient``: every method here only reads the store.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kombu.utils.json import loads

from .errors import InstanceNotFound, InvalidContinuationToken, RunReplaced, WaitTimeout
from .status import OrchestrationStatus, RuntimeStatus, StepHistory, validate_instance_id
from .store import SHARDS, Store

# How many index entries a filtered list page may examine per requested result.
SCAN_FACTOR = 10


@dataclass(frozen=True)
class StatusPage:
    """One page of a listing and the token for the next (None at the end)."""

    instances: list[OrchestrationStatus]
    continuation_token: str | None


class InstanceQueries:
    """Query instances: status, history, listings and waiting for completion."""

    _store: Store

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
        newest = cursor[0] if cursor else micros(created_time_to, math.inf)
        oldest = micros(created_time_from, -math.inf)
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


def _step(entry: dict[str, str], show_output: bool) -> StepHistory:
    result = loads(entry["result"]) if show_output and entry.get("result") else None
    return StepHistory(
        task_id=entry["taskId"], name=entry["name"], started=_time(entry["start"]),
        ended=_time(entry["end"]), outcome=entry["outcome"], result=result,
    )


def micros(moment: datetime | None, default: float) -> float:
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
