"""Run identity: how every task of a run knows which instance and run it belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.canvas import Signature, chain

STAMP_INSTANCE = "singleton_instance"
STAMP_RUN = "singleton_run"
STAMP_NAME = "singleton_orchestrator"
COMPLETE_TASK = "singleton.complete"
FAIL_TASK = "singleton.fail"


@dataclass(frozen=True)
class RunIdentity:
    """The instance ID, the run ID and the orchestrator name of one run."""

    instance_id: str
    run_id: str
    name: str

    @classmethod
    def from_request(cls, request: Any) -> RunIdentity | None:
        """Read the identity from a task request's stamps; None if it carries none."""
        stamps = getattr(request, "stamps", None) or {}
        values = [_single(stamps.get(k)) for k in (STAMP_INSTANCE, STAMP_RUN, STAMP_NAME)]
        if not (values[0] and values[1]):
            return None
        return cls(values[0], values[1], values[2] or "")

    def stamps(self) -> dict[str, str]:
        """Return the stamps that mark a task as a step of this run."""
        return {STAMP_INSTANCE: self.instance_id, STAMP_RUN: self.run_id, STAMP_NAME: self.name}


def _single(value: Any) -> Any:
    # Celery may hand a stamp back as a one-element list.
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def run_canvas(app: Celery, canvas: Signature, identity: RunIdentity) -> Signature:
    """Wrap an orchestrator's canvas for one run: completion step, errback, stamps."""
    if not isinstance(canvas, Signature):
        raise TypeError(f"an orchestrator must return a Celery signature, not {canvas!r}")
    wrapped = chain(canvas, app.signature(COMPLETE_TASK), app=app)
    wrapped.link_error(app.signature(FAIL_TASK))
    wrapped.stamp(**identity.stamps())
    return wrapped
