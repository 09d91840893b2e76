"""Acting on live instances: events, suspend and resume, terminate, and purging.

The managing half of ``OrchestrationClient``; each call is one store script whose
verdict ``_check`` turns into the error tree's exceptions.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from celery import Celery
from kombu.utils.json import dumps

from .durable import publish_release
from .errors import (
    InstanceIsLive,
    InstanceIsTerminal,
    InstanceNotFound,
    InvalidInput,
    InvalidTransition,
    PayloadTooLarge,
    TooManyEvents,
)
from .queries import InstanceQueries, micros
from .settings import Settings
from .signals import run_ended, send_release_ended
from .status import RuntimeStatus, validate_event_name, validate_instance_id
from .store import Release, Verdict

logger = logging.getLogger("singleton.client")


class InstanceControls(InstanceQueries):
    """Raise events to instances, suspend, resume, terminate and purge them."""

    _app: Celery
    _settings: Settings

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
                created_from_us=micros(created_time_from, -math.inf),
                created_to_us=micros(created_time_to, math.inf),
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


def _encode_input(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the input is not JSON-serialisable ({exc})") from exc
