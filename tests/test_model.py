"""Model-based tests: random sequences of operations on the store's scripts, checked after
every step against a plain-Python model of the rules; and Hypothesis on instance IDs.

``MODEL_EXAMPLES`` raises the budget (sequences tried) for a longer run.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from singleton import InvalidInstanceId, RuntimeStatus, validate_instance_id
from singleton.status import LIVE_STATUSES
from singleton.store import Store

EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "150"))
IDS = st.sampled_from(["a", "a:i:b", "{b}"])
IF_LIVE = st.sampled_from(["fail", "use_existing", "terminate_existing"])
IF_FINISHED = st.sampled_from(["allow", "allow_failed_only", "reject"])
REQUESTS = st.sampled_from(["", "", "r1", "r2"])


@dataclass
class Instance:
    """What the model knows of one instance: its status, current run, and old runs."""

    status: RuntimeStatus
    run: str
    request: str = ""
    old_runs: list[str] = field(default_factory=list)
    executing: dict[str, str] = field(default_factory=dict)  # this run's steps: task -> token


class StoreModel(RuleBasedStateMachine):
    """Drive the real scripts and a dictionary side by side; they must never disagree."""

    client: redis.Redis

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"model-{uuid.uuid4().hex}"
        self.store = Store(self.client, prefix=self.prefix, retention_s=60)
        self.model: dict[str, Instance] = {}
        # Steps of ended runs still executing, by instance: task -> (run, token).
        self.drains: dict[str, dict[str, tuple[str, str]]] = {}
        self.task = 0

    def teardown(self) -> None:
        keys = self.client.keys(f"{self.prefix}*")
        if keys:
            self.client.delete(*keys)

    # -- helpers -------------------------------------------------------------------
    def _live(self, instance_id: str) -> bool:
        known = self.model.get(instance_id)
        return known is not None and known.status in LIVE_STATUSES

    def _next_task(self) -> str:
        self.task += 1
        return f"task-{self.task}"

    def _end(self, instance_id: str, status: RuntimeStatus) -> None:
        known = self.model[instance_id]
        known.status = status
        self._drain(instance_id, known)

    def _drain(self, instance_id: str, known: Instance) -> None:
        drain = self.drains.setdefault(instance_id, {})
        drain.update({task: (known.run, token) for task, token in known.executing.items()})
        known.executing = {}

    # -- rules ---------------------------------------------------------------------
    @rule(instance_id=IDS, if_live=IF_LIVE, if_finished=IF_FINISHED, request=REQUESTS)
    def start(self, instance_id: str, if_live: str, if_finished: str, request: str) -> None:
        run = uuid.uuid4().hex
        result = self.store.claim(
            instance_id,
            name="Model",
            run_id=run,
            input_json="null",
            if_live=if_live,
            if_finished=if_finished,
            request_id=request,
        )
        known = self.model.get(instance_id)
        expected = self._expected_claim(known, if_live, if_finished, request)
        assert result.outcome == expected, (known, if_live, if_finished, request)
        if expected == "claimed":
            if known is not None and known.status in LIVE_STATUSES:  # terminate_existing
                self._end(instance_id, RuntimeStatus.TERMINATED)
            old = [*known.old_runs, known.run] if known else []
            self.model[instance_id] = Instance(RuntimeStatus.PENDING, run, request, old)
        else:
            assert result.run_id == known.run

    @staticmethod
    def _expected_claim(known: Instance | None, if_live: str, if_finished: str, request: str) -> str:
        if known is None:
            return "claimed"
        if request and known.request == request:
            return "existing"
        if known.status in LIVE_STATUSES:
            return {"fail": "refused", "use_existing": "existing"}.get(if_live, "claimed")
        if if_finished == "reject" or (
            if_finished == "allow_failed_only" and known.status is RuntimeStatus.COMPLETED
        ):
            return "rejected"
        return "claimed"

    @rule(instance_id=IDS)
    def begin_step(self, instance_id: str) -> None:
        known = self.model.get(instance_id)
        run = known.run if known else "none"
        task, token = self._next_task(), uuid.uuid4().hex
        gate = self.store.begin_step(
            instance_id, run_id=run, task_id=task, token=token, lease_s=30, name="step"
        )
        if not self._live(instance_id):
            assert gate.outcome == "stale"
        elif known.status is RuntimeStatus.SUSPENDED:
            assert gate.outcome == "suspended"
        elif self.drains.get(instance_id):
            assert gate.outcome == "busy"  # a step of an ended run still executes
        else:
            assert gate.outcome == "run"
            known.status = RuntimeStatus.RUNNING
            known.executing[task] = token

    def _executing(self) -> list[tuple[str, str]]:
        current = [(i, t) for i, m in self.model.items() for t in m.executing]
        return sorted(current + [(i, t) for i, d in self.drains.items() for t in d])

    @precondition(lambda self: self._executing())
    @rule(data=st.data())
    def a_step_ends(self, data: st.DataObject) -> None:
        instance_id, task = data.draw(st.sampled_from(self._executing()))
        known = self.model.get(instance_id)
        if known is not None and task in known.executing:
            token = known.executing.pop(task)
            assert self.store.complete_step(
                instance_id, run_id=known.run, task_id=task, token=token, result_json="1"
            )
        else:
            run, token = self.drains[instance_id].pop(task)
            assert not self.store.complete_step(
                instance_id, run_id=run, task_id=task, token=token, result_json="1"
            )

    @rule(instance_id=IDS, status=st.sampled_from([RuntimeStatus.COMPLETED, RuntimeStatus.FAILED]))
    def end_run(self, instance_id: str, status: RuntimeStatus) -> None:
        known = self.model.get(instance_id)
        ended = self.store.end_run(
            instance_id, run_id=known.run if known else "none", status=status, output_json="1"
        )
        assert ended == self._live(instance_id)
        if ended:
            self._end(instance_id, status)

    @precondition(lambda self: any(m.old_runs for m in self.model.values()))
    @rule(data=st.data())
    def stale_run_writes_nothing(self, data: st.DataObject) -> None:
        instance_id = data.draw(st.sampled_from(sorted(i for i, m in self.model.items() if m.old_runs)))
        old_run = data.draw(st.sampled_from(self.model[instance_id].old_runs))
        assert not self.store.end_run(
            instance_id, run_id=old_run, status=RuntimeStatus.COMPLETED, output_json="1"
        )
        assert not self.store.set_custom_status(instance_id, run_id=old_run, value_json='"stale"')
        assert not self.store.continue_as_new(
            instance_id, run_id=old_run, new_run_id=uuid.uuid4().hex, input_json="null", task_id="t"
        )
        assert (
            self.store.begin_step(
                instance_id, run_id=old_run, task_id=self._next_task(), token="t", lease_s=30
            ).outcome
            == "stale"
        )

    @rule(instance_id=IDS)
    def terminate(self, instance_id: str) -> None:
        outcome, _ = self.store.terminate(instance_id, reason_json='"stop"')
        if instance_id not in self.model:
            assert outcome == "missing"
        elif not self._live(instance_id):
            assert outcome == "terminal"
        else:
            assert outcome == "ok"
            self._end(instance_id, RuntimeStatus.TERMINATED)

    @rule(instance_id=IDS)
    def purge(self, instance_id: str) -> None:
        outcome, _ = self.store.purge(instance_id)
        if instance_id not in self.model:
            assert outcome == "missing"
        elif self._live(instance_id):
            assert outcome == "live"
        else:
            assert outcome == "ok"
            del self.model[instance_id]  # steps still executing keep draining

    @rule(instance_id=IDS)
    def suspend(self, instance_id: str) -> None:
        outcome, _ = self.store.suspend(instance_id)
        known = self.model.get(instance_id)
        if known is None:
            assert outcome == "missing"
        elif not self._live(instance_id):
            assert outcome == "terminal"
        elif known.status is RuntimeStatus.SUSPENDED:
            assert outcome == "conflict"
        else:
            assert outcome == "ok"
            known.status = RuntimeStatus.SUSPENDED

    @rule(instance_id=IDS)
    def resume(self, instance_id: str) -> None:
        release = self.store.resume(instance_id)
        known = self.model.get(instance_id)
        if known is None:
            assert release.outcome == "missing"
        elif not self._live(instance_id):
            assert release.outcome == "terminal"
        elif known.status is not RuntimeStatus.SUSPENDED:
            assert release.outcome == "conflict"
        else:
            assert release.outcome == "ok"  # nothing was parked in this model
            known.status = RuntimeStatus.RUNNING

    @rule(instance_id=IDS)
    def continue_as_new(self, instance_id: str) -> None:
        known = self.model.get(instance_id)
        new_run = uuid.uuid4().hex
        moved = self.store.continue_as_new(
            instance_id,
            run_id=known.run if known else "none",
            new_run_id=new_run,
            input_json='{"next": 1}',
            task_id=self._next_task(),
        )
        assert moved == self._live(instance_id)
        if moved:
            self._drain(instance_id, known)
            known.old_runs.append(known.run)
            known.run, known.status = new_run, RuntimeStatus.CONTINUED_AS_NEW
            assert self.store.continued(instance_id, run_id=new_run)
            known.status = RuntimeStatus.RUNNING

    # -- the invariant -----------------------------------------------------------------
    @invariant()
    def records_match_the_model(self) -> None:
        for instance_id in ("a", "a:i:b", "{b}"):
            record = self.store.read(instance_id)
            known = self.model.get(instance_id)
            if known is None:
                assert record is None
            else:
                assert (record["status"], record["run"]) == (known.status.value, known.run)


@pytest.fixture
def model_machine(redis_client: redis.Redis) -> type[StoreModel]:
    StoreModel.client = redis_client
    return StoreModel


def test_the_store_scripts_agree_with_the_model_after_every_step(model_machine) -> None:
    budget = settings(
        max_examples=EXAMPLES, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
    )
    run_state_machine_as_test(model_machine, settings=budget)


# -- instance IDs ---------------------------------------------------------------------------
FORBIDDEN = set("/\\?#") | {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]}


@given(st.text(min_size=1, max_size=300))
@settings(max_examples=300, deadline=None)
def test_an_instance_id_is_accepted_exactly_when_it_follows_the_contract(instance_id: str) -> None:
    allowed = (
        len(instance_id) <= 256
        and not instance_id.startswith("@")
        and not FORBIDDEN & set(instance_id)
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in instance_id)
    )
    if allowed:
        assert validate_instance_id(instance_id) == instance_id
    else:
        with pytest.raises(InvalidInstanceId):
            validate_instance_id(instance_id)
