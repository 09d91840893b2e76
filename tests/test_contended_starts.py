"""Many starts of one ID at once: one run, and refusals that cost a probe, not a message."""

from __future__ import annotations

import threading
import time

import pytest

from singleton import InstanceAlreadyExists, RuntimeStatus
from singleton.contention import Contention
from singleton.store import ClaimResult, ClaimVerdict
from tests.workers import wait_until

CALLERS = 40
JOIN_TIMEOUT_S = 60


def _a_minute_ago() -> int:
    return int((time.time() - 60) * 1_000_000)


def test_a_probe_of_a_free_id_answers_retry_and_claims_nothing(store, uid):
    probe = store.claim(uid, name="HelloSequence", run_id="", input_json="null", probe=1)
    assert probe.outcome is ClaimVerdict.RETRY
    assert store.read(uid) is None


def test_a_probe_of_a_live_id_is_refused_and_counted_as_a_refusal(store, uid):
    run = store.claim(uid, name="HelloSequence", run_id="run-1", input_json="null")
    before = store.summary(_a_minute_ago(), 10)["refused_since"]
    probe = store.claim(uid, name="HelloSequence", run_id="", input_json="null", probe=1)
    assert probe.outcome is ClaimVerdict.REFUSED
    assert (probe.status, probe.run_id) == (RuntimeStatus.PENDING, "run-1")
    assert store.summary(_a_minute_ago(), 10)["refused_since"] == before + 1
    assert store.read(uid)["fence"] == str(run.fence)


def test_a_probe_for_several_starts_counts_each_of_their_refusals(store, uid):
    store.claim(uid, name="HelloSequence", run_id="run-1", input_json="null")
    before = store.summary(_a_minute_ago(), 10)["refused_since"]
    probe = store.claim(uid, name="HelloSequence", run_id="", input_json="null", probe=7)
    assert probe.outcome is ClaimVerdict.REFUSED
    assert store.summary(_a_minute_ago(), 10)["refused_since"] == before + 7


def test_starts_that_wait_for_the_first_share_one_probe_sent_after_it():
    contention, sent, answers = Contention(), [], []
    first = threading.Event()
    answer = ClaimResult(ClaimVerdict.REFUSED, RuntimeStatus.PENDING, "run-1")

    def send(n: int) -> ClaimResult:
        assert first.is_set()  # not before the first start has finished
        sent.append(n)
        return answer

    def waiter() -> None:
        answers.append(contention.probe(("id",), first=first, send=send))

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(5)]
    for t in threads:
        t.start()
    wait_until(lambda: contention._probes and contention._probes[("id",)].waiting == 5, timeout=10,
               what="five starts waiting for one probe")
    first.set()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert sent == [5]
    assert sorted(by_me for _, by_me in answers) == [False] * 4 + [True]
    assert {result for result, _ in answers} == {answer}


@pytest.mark.parametrize("if_live, answer", [("terminate_existing", ClaimVerdict.RETRY),
                                             ("use_existing", ClaimVerdict.EXISTING)])
def test_a_probe_follows_the_live_policy_without_ending_the_live_run(store, uid, if_live, answer):
    store.claim(uid, name="HelloSequence", run_id="run-1", input_json="null")
    probe = store.claim(uid, name="HelloSequence", run_id="", input_json="null", probe=1, if_live=if_live)
    assert probe.outcome is answer and probe.run_id == "run-1"
    assert store.read(uid)["status"] == RuntimeStatus.PENDING


def test_a_burst_of_starts_of_one_id_makes_one_run_and_refuses_the_rest_with_it(client, redis_client, uid):
    barrier = threading.Barrier(CALLERS)
    started, refused, errors = [], [], []

    def caller() -> None:
        barrier.wait()
        try:
            started.append(client.start_run("HelloSequence", uid))
        except InstanceAlreadyExists as exc:
            refused.append(exc)
        except Exception as exc:  # reported below, never hidden
            errors.append(exc)

    before = redis_client.llen("celery")
    threads = [threading.Thread(target=caller, daemon=True) for _ in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads) and errors == []
    (run,) = started
    assert len(refused) == CALLERS - 1
    assert {str(exc.run_id) for exc in refused} == {run.run_id}
    assert redis_client.llen("celery") == before + 1
