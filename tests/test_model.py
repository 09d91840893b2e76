"""Model-based tests: random sequences of operations on the store's scripts, checked after
every step against a plain-Python model of the rules; and Hypothesis on instance IDs.

``MODEL_EXAMPLES`` raises the budget (sequences tried) for a longer run.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from singleton import InvalidInstanceId, RuntimeStatus, validate_instance_id
from singleton.status import LIVE_STATUSES
from singleton.store import Store

EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "120"))
IDS = st.sampled_from(["a", "a:i:b", "{b}"])
IF_LIVE = st.sampled_from(["fail", "use_existing", "terminate_existing"])
IF_FINISHED = st.sampled_from(["allow", "allow_failed_only", "reject"])
REQUESTS = st.sampled_from(["", "", "r1", "r2"])
# How a step that holds its lease ends: its result recorded, its lease dropped (a failure
# or a retry), or the run ended with it (the run's last step).
ENDINGS = st.sampled_from(["done", "release", "final"])
MAX_IN_FLIGHT = 8


@dataclass
class Instance:
    """What the model knows of one instance: its current run, and that run's steps."""

    status: RuntimeStatus
    run: str
    request: str = ""
    old_runs: list[str] = field(default_factory=list)
    executing: dict[str, str] = field(default_factory=dict)  # this run's leased steps: task -> token
    done: dict[str, str] = field(default_factory=dict)  # this run's finished steps: task -> result
    parked: set[str] = field(default_factory=set)  # deliveries a suspend parked, by task
    suspend_next: bool = False  # a suspend accepted while continuing: the new run starts Suspended
    continued_by: str = ""  # the task that continued the run as new

    @property
    def held(self) -> bool:
        return self.status is RuntimeStatus.SUSPENDED or self.suspend_next


@dataclass(frozen=True)
class Delivery:
    """One message of a step on its way to a gate: the run it was stamped with and its task."""

    instance_id: str
    run: str
    task: str


class StoreModel(RuleBasedStateMachine):
    """Drive the real scripts and a plain-Python model side by side; they must never disagree.

    Runs publish steps (several at once, as a group does) whose deliveries reach their
    gates in any order, any number of times (redeliveries), interleaved with suspend,
    resume, terminate, continue-as-new and new starts. The model predicts every verdict;
    a step never holds two leases at once nor starts beside a step of an ended run, a
    step that is done is never run again, and whatever a suspend parks resume hands back.
    """

    client: redis.Redis

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"model-{uuid.uuid4().hex}"
        self.store = Store(self.client, prefix=self.prefix, retention_s=60)
        self.model: dict[str, Instance] = {}
        # Steps of ended runs still executing, by instance: task -> (run, token).
        self.drains: dict[str, dict[str, tuple[str, str]]] = {}
        self.in_flight: list[Delivery] = []  # messages not yet at their gates
        self.gated: list[Delivery] = []  # told to park by their gate, not parked yet
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

    def _end(self, instance_id: str, status: RuntimeStatus, except_task: str = "") -> None:
        known = self.model[instance_id]
        known.status = status
        known.executing.pop(except_task, None)
        self._drain(instance_id, known)
        known.done, known.parked, known.suspend_next = {}, set(), False

    def _drain(self, instance_id: str, known: Instance) -> None:
        drain = self.drains.setdefault(instance_id, {})
        for task, token in known.executing.items():
            assert task not in drain, f"step {task} would execute twice at once"
            drain[task] = (known.run, token)
        known.executing = {}

    def _pick(self, data: st.DataObject) -> str:
        """Draw an instance: mostly one that has a record (so the rule finds something to do)."""
        if self.model and data.draw(st.integers(0, 3)):
            return data.draw(st.sampled_from(sorted(self.model)))
        return data.draw(IDS)

    def _executing(self) -> list[tuple[str, str]]:
        current = [(i, t) for i, m in self.model.items() for t in m.executing]
        return sorted(current + [(i, t) for i, d in self.drains.items() for t in d])

    def _expected_gate(self, d: Delivery) -> str:
        known = self.model.get(d.instance_id)
        if known is None or known.run != d.run or not self._live(d.instance_id):
            if (known is not None and known.status is RuntimeStatus.CONTINUED_AS_NEW
                    and known.continued_by == d.task):
                return "continued"
            return "stale"
        # The step's own marker before the run's status: a redelivery is recognised.
        if d.task in known.done:
            return "done"
        if d.task in known.executing:
            return "busy"
        if known.held:
            return "suspended"
        if self.drains.get(d.instance_id):
            return "busy"  # a step of an ended run still executes
        return "run"

    # -- starting runs -------------------------------------------------------------
    @initialize()
    def a_run_is_live(self) -> None:
        self.start("a", "fail", "allow", "")

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

    # -- steps: published, delivered (again), parked, ended -----------------------------
    def _live_ids(self) -> list[str]:
        return sorted(i for i in self.model if self._live(i))

    def publish(self, data: st.DataObject) -> None:
        """The run sends its next step, or a group of `members` steps at once (the first of
        which may reach its gate at once)."""
        instance_id = data.draw(st.sampled_from(self._live_ids()))
        members, at_once = data.draw(st.integers(1, 3)), data.draw(st.booleans())
        run = self.model[instance_id].run
        sent = [Delivery(instance_id, run, self._next_task()) for _ in range(members)]
        if at_once:
            self._gate(sent.pop(0))
        self.in_flight += sent

    def _seen(self) -> list[Delivery]:
        seen = {(i, m.run, t) for i, m in self.model.items() for t in [*m.executing, *m.done, *m.parked]}
        seen |= {(i, run, t) for i, d in self.drains.items() for t, (run, _) in d.items()}
        # The step that continued the run as new, redelivered with its old run's stamp.
        seen |= {(i, m.old_runs[-1], m.continued_by) for i, m in self.model.items() if m.continued_by}
        # Ordered by task (a counter), not run (random): the same draws replay the same steps.
        return [Delivery(*s) for s in sorted(seen, key=lambda s: (s[0], s[2], s[1]))]

    def redeliver(self, data: st.DataObject) -> None:
        """The broker hands a step out again (a visibility timeout, a lost connection)."""
        d = data.draw(st.sampled_from(self._seen()))
        if data.draw(st.booleans()):  # at once
            self._gate(d)
        else:
            self.in_flight.append(d)

    def deliver(self, data: st.DataObject) -> None:
        """Up to three messages reach their gates, in any order."""
        for _ in range(min(data.draw(st.integers(1, 3)), len(self.in_flight))):
            self._gate(self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1))))

    def _gate(self, d: Delivery) -> None:
        known = self.model.get(d.instance_id)
        expected = self._expected_gate(d)
        token = uuid.uuid4().hex
        gate = self.store.begin_step(d.instance_id, run_id=d.run, task_id=d.task, token=token,
                                     lease_s=30, name="step")
        assert gate.outcome == expected, (d, known, self.drains.get(d.instance_id))
        if expected == "run":
            known.executing[d.task] = token
            if known.status is not RuntimeStatus.RUNNING:
                known.status = RuntimeStatus.RUNNING
        elif expected == "done":
            assert gate.detail == known.done[d.task]
        elif expected == "busy":
            self.in_flight.append(d)  # it comes back later
        elif expected == "suspended":
            self.gated.append(d)

    def park(self, data: st.DataObject) -> None:
        """A delivery told to park parks (the run may have moved on since its gate)."""
        d = self.gated.pop(data.draw(st.integers(0, len(self.gated) - 1)))
        known = self.model.get(d.instance_id)
        park = json.dumps({"kind": "suspend", "run": d.run, "task": d.task, "sig": {}})
        gate = self.store.park(d.instance_id, run_id=d.run, task_id=d.task, park_json=park)
        if known is None or known.run != d.run or not self._live(d.instance_id):
            assert gate.outcome == "stale"
        elif known.held and d.task not in known.done and d.task not in known.executing:
            assert gate.outcome == "parked"
            known.parked.add(d.task)
        else:
            assert gate.outcome == "resumed"
            self.in_flight.append(d)  # back through its gate

    def a_step_ends(self, data: st.DataObject) -> None:
        instance_id, task = data.draw(st.sampled_from(self._executing()))
        ending = data.draw(ENDINGS)
        known = self.model.get(instance_id)
        current = known is not None and task in known.executing
        if current:
            run, token = known.run, known.executing[task]
        else:
            run, token = self.drains[instance_id].pop(task)
        ids = {"run_id": run, "task_id": task, "token": token}
        if ending == "done":
            assert self.store.complete_step(instance_id, result_json=f'"{task}"', **ids) == current
            if current:
                known.done[task] = f'"{task}"'
        elif ending == "release":
            assert self.store.release_step(instance_id, **ids) == current
        else:
            ended = self.store.end_run(instance_id, run_id=run, status=RuntimeStatus.COMPLETED,
                                       output_json="1", task_id=task)
            assert ended == current
            if current:
                self._end(instance_id, RuntimeStatus.COMPLETED, except_task=task)
            else:
                # What the worker does when its run had ended already: drop the lease.
                assert not self.store.release_step(instance_id, **ids)
        if current:
            known.executing.pop(task, None)

    # -- the run's end and management ------------------------------------------------
    def a_run_ends(self, data: st.DataObject) -> None:
        """The run completes or fails (its completion task or errback), or is terminated."""
        instance_id = self._pick(data)
        status = data.draw(st.sampled_from(
            [RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED]))
        if status is RuntimeStatus.TERMINATED:
            self._terminate(instance_id)
            return
        known = self.model.get(instance_id)
        ended = self.store.end_run(
            instance_id, run_id=known.run if known else "none", status=status, output_json="1"
        )
        assert ended == self._live(instance_id)
        if ended:
            self._end(instance_id, status)

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

    def _terminate(self, instance_id: str) -> None:
        outcome, _ = self.store.terminate(instance_id, reason_json='"stop"')
        if instance_id not in self.model:
            assert outcome == "missing"
        elif not self._live(instance_id):
            assert outcome == "terminal"
        else:
            assert outcome == "ok"
            self._end(instance_id, RuntimeStatus.TERMINATED)

    def purge(self, data: st.DataObject) -> None:
        instance_id = self._pick(data)
        outcome, _ = self.store.purge(instance_id)
        if instance_id not in self.model:
            assert outcome == "missing"
        elif self._live(instance_id):
            assert outcome == "live"
        else:
            assert outcome == "ok"
            del self.model[instance_id]  # steps still executing keep draining

    def suspend(self, data: st.DataObject) -> None:
        instance_id = self._pick(data)
        outcome, _ = self.store.suspend(instance_id)
        known = self.model.get(instance_id)
        if known is None:
            assert outcome == "missing"
        elif not self._live(instance_id):
            assert outcome == "terminal"
        elif known.held:
            assert outcome == "conflict"
        else:
            assert outcome == "ok"
            if known.status is RuntimeStatus.CONTINUED_AS_NEW:
                known.suspend_next = True  # held for the new run, once it is published
            else:
                known.status = RuntimeStatus.SUSPENDED

    def resume(self, data: st.DataObject) -> None:
        instance_id = self._pick(data)
        release = self.store.resume(instance_id)
        known = self.model.get(instance_id)
        if known is None:
            assert release.outcome == "missing"
        elif not self._live(instance_id):
            assert release.outcome == "terminal"
        elif known.suspend_next and known.status is RuntimeStatus.CONTINUED_AS_NEW:
            assert release.outcome == "ok"
            known.suspend_next = False
        elif known.status is not RuntimeStatus.SUSPENDED:
            assert release.outcome == "conflict"
        else:
            # Every delivery the suspend parked comes back, each once.
            handed_back = sorted(json.loads(step)["task"] for step in release.steps)
            assert handed_back == sorted(known.parked)
            assert release.outcome == ("release" if known.parked else "ok")
            self.in_flight += [Delivery(instance_id, known.run, task) for task in handed_back]
            known.parked, known.status = set(), RuntimeStatus.RUNNING

    def continue_as_new(self, data: st.DataObject) -> None:
        """The run's leased step (or an unleased caller) continues the run as new."""
        instance_id = self._pick(data)
        known = self.model.get(instance_id)
        task = min(known.executing) if known and known.executing else self._next_task()
        new_run = uuid.uuid4().hex
        moved = self.store.continue_as_new(
            instance_id,
            run_id=known.run if known else "none",
            new_run_id=new_run,
            input_json='{"next": 1}',
            task_id=task,
        )
        assert moved == self._live(instance_id)
        if moved:
            held = known.status is RuntimeStatus.SUSPENDED
            known.executing.pop(task, None)  # the continuing step's lease goes with its run
            self._drain(instance_id, known)
            known.old_runs.append(known.run)
            known.run, known.status = new_run, RuntimeStatus.CONTINUED_AS_NEW
            known.done, known.parked, known.suspend_next = {}, set(), held
            known.continued_by = task

    def continued(self, data: st.DataObject) -> None:
        """The new run's canvas is published: it reads Running, or Suspended if held."""
        instance_id = data.draw(st.sampled_from(sorted(
            i for i, m in self.model.items() if m.status is RuntimeStatus.CONTINUED_AS_NEW)))
        known = self.model[instance_id]
        assert self.store.continued(instance_id, run_id=known.run)
        known.status = RuntimeStatus.SUSPENDED if known.suspend_next else RuntimeStatus.RUNNING
        known.suspend_next = False

    # -- the rules: few, so that Hypothesis' swarm testing (each example disables some
    # rules) still mixes steps and operations in most examples ----------------------
    @rule(data=st.data())
    def a_step_event(self, data: st.DataObject) -> None:
        """A step is published, delivered (again), parked, or ends: whichever can happen."""
        can = {
            "publish": self._live_ids() and len(self.in_flight) < MAX_IN_FLIGHT,
            "redeliver": self._seen() and len(self.in_flight) < MAX_IN_FLIGHT,
            "deliver": self.in_flight,
            "park": self.gated,
            "a_step_ends": self._executing(),
        }
        event = data.draw(st.sampled_from(sorted(name for name, ok in can.items() if ok) or ["publish"]))
        if can[event]:
            getattr(self, event)(data)

    @rule(data=st.data())
    def an_operation(self, data: st.DataObject) -> None:
        """A run ends, or is suspended, resumed, continued as new, purged or written stale."""
        can = {
            "a_run_ends": True, "suspend": True, "resume": True, "continue_as_new": True,
            "purge": True,
            "continued": any(m.status is RuntimeStatus.CONTINUED_AS_NEW for m in self.model.values()),
            "stale_run_writes_nothing": any(m.old_runs for m in self.model.values()),
        }
        getattr(self, data.draw(st.sampled_from(sorted(name for name, ok in can.items() if ok))))(data)

    # -- the invariant -----------------------------------------------------------------
    @invariant()
    def records_match_the_model(self) -> None:
        for instance_id in ("a", "a:i:b", "{b}"):
            record = self.store.read(instance_id)
            known = self.model.get(instance_id)
            keys = self.store.keys(instance_id)
            drain = {k.decode() for k in self.client.hkeys(keys.drain)}
            assert drain == set(self.drains.get(instance_id, {}))
            if known is None:
                assert record is None
                continue
            assert (record["status"], record["run"]) == (known.status.value, known.run)
            assert {k.decode() for k in self.client.hkeys(keys.parked)} == known.parked
            markers = {k.decode(): v.decode() for k, v in self.client.hgetall(keys.steps).items()
                       if not k.startswith(b"t:")}
            expected = {t: f"done:{r}" for t, r in known.done.items()}
            assert {t: m if m.startswith("done:") else m.rsplit(":", 1)[0] for t, m in markers.items()} == {
                **expected, **{t: f"run:{token}" for t, token in known.executing.items()}}


@pytest.fixture
def model_machine(redis_client: redis.Redis) -> type[StoreModel]:
    StoreModel.client = redis_client
    return StoreModel


def test_the_store_scripts_agree_with_the_model_after_every_step(model_machine) -> None:
    budget = settings(
        max_examples=EXAMPLES, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
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
