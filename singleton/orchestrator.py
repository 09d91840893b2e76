"""Registering orchestrators: functions that turn an input into a Celery canvas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

from celery.canvas import Signature

from .errors import OrchestratorNotFound
from .policies import IfFinished, IfLive

OrchestratorFn = Callable[[Any], Signature]


@dataclass(frozen=True)
class Orchestrator:
    """A registered orchestrator: its public name and the function building its canvas."""

    name: str
    fn: OrchestratorFn
    if_live: IfLive = IfLive.FAIL
    if_finished: IfFinished = IfFinished.ALLOW
    lease: float | None = None
    timeout: float | None = None

    def build(self, input: Any) -> Signature:
        """Return the canvas for one run of this orchestrator."""
        return self.fn(input)


_registry: dict[str, Orchestrator] = {}


@overload
def orchestrator(fn: OrchestratorFn, /) -> OrchestratorFn: ...
@overload
def orchestrator(
    *,
    name: str | None = None,
    if_live: IfLive | str = IfLive.FAIL,
    if_finished: IfFinished | str = IfFinished.ALLOW,
    lease: float | None = None,
    timeout: float | None = None,
) -> Callable[[OrchestratorFn], OrchestratorFn]: ...


def orchestrator(
    fn: OrchestratorFn | None = None,
    /,
    *,
    name: str | None = None,
    if_live: IfLive | str = IfLive.FAIL,
    if_finished: IfFinished | str = IfFinished.ALLOW,
    lease: float | None = None,
    timeout: float | None = None,
) -> Any:
    """Register ``fn(input) -> canvas`` as an orchestrator (name defaults to fn's name).

    Usable bare (``@orchestrator``) or with options (``@orchestrator(name="Nightly",
    if_live="use_existing")``). ``if_live`` and ``if_finished`` are the default start
    policies of its starts (see ``singleton.policies``); a start may override them.
    ``lease`` (seconds; default the ``singleton_run_lease`` setting) is how long a run
    may go without a sign of life before the reconciler fails it as lost; ``timeout``
    (seconds; default none) is the longest a run may take before it fails as timed out.
    The function should raise ValueError or TypeError for input it cannot accept; a
    start then fails with InvalidInput before anything is claimed.
    """
    live, finished = IfLive(if_live), IfFinished(if_finished)
    for option, value in (("lease", lease), ("timeout", timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{option} must be a positive number of seconds")

    def register(f: OrchestratorFn) -> OrchestratorFn:
        key = name or f.__name__
        _registry[key] = Orchestrator(key, f, live, finished, lease, timeout)
        return f

    return register(fn) if fn is not None else register


def get_orchestrator(name: str) -> Orchestrator:
    """Return the orchestrator registered as `name`.

    Raises:
        OrchestratorNotFound: nothing is registered under that name.
    """
    try:
        return _registry[name]
    except (KeyError, TypeError):
        raise OrchestratorNotFound(str(name)) from None


def orchestrator_names() -> list[str]:
    """Return the names of every registered orchestrator, sorted."""
    return sorted(_registry)
