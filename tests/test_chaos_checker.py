"""The chaos checker's rules on made-up logs: each finds what it must, and no more."""

from __future__ import annotations

import json
import uuid

from chaos.checker import (
    CRASH_LOSS_WINDOW_S,
    beat_ticks,
    double_executions,
    duplicate_202s,
    empty_log,
    executions,
    failed_claims,
    lost_in_crash_window,
    lost_or_timed_out,
    lost_records,
    overlaps,
    restart_losses,
    stuck,
    unfenced,
    unfinished,
    wedged,
)


def step(instance: str, run: str, start: float, end: float | None, pid: int = 1, task: str = "") -> list:
    lines = [{"event": "start", "instance": instance, "run": run, "task": task or f"{run}{start}",
              "name": "s", "t": start, "pid": pid, "exec": uuid.uuid4().hex}]
    if end is not None:
        lines.append({**lines[0], "event": "end", "t": end})
    return lines


def write(tmp_path, *steps: list) -> None:
    lines = [json.dumps(entry) for s in steps for entry in s]
    (tmp_path / "steps-1.jsonl").write_text("\n".join(lines) + "\n")


def record(instance: str, status: str, *, run: str = "r1", updated: float = 0.0, parked: bool = False,
           output: str = "") -> dict:
    return {"instance": instance, "run": run, "status": status, "updated": updated, "parked": parked,
            "output": output}


# -- executions ---------------------------------------------------------------------
def test_two_runs_of_one_id_executing_at_once_are_an_overlap(tmp_path):
    write(tmp_path, step("a", "r1", 0, 5), step("a", "r2", 4, 6), step("b", "r3", 4, 6))
    found = overlaps(executions(tmp_path, [], stopped_at=10))
    assert [(o["a"]["run"], o["b"]["run"]) for o in found] == [("r1", "r2")]


def test_runs_one_after_the_other_and_steps_of_one_run_are_not(tmp_path):
    write(tmp_path, step("a", "r1", 0, 5), step("a", "r1", 1, 2), step("a", "r2", 5, 6))
    assert overlaps(executions(tmp_path, [], stopped_at=10)) == []


def test_one_step_of_one_run_executing_twice_at_once_is_a_double_execution(tmp_path):
    write(tmp_path, step("a", "r1", 0, 5, pid=1, task="t1"), step("a", "r1", 2, 3, pid=2, task="t1"),
          step("a", "r1", 1, 4, task="t2"))  # t2 beside t1: a group's members, allowed
    found = double_executions(executions(tmp_path, [], stopped_at=10))
    assert [(d["a"]["task"], d["b"]["task"]) for d in found] == [("t1", "t1")]
    assert overlaps(executions(tmp_path, [], stopped_at=10)) == []  # same run: not an overlap


def test_one_step_executed_again_after_the_first_ended_is_not(tmp_path):
    write(tmp_path, step("a", "r1", 0, 2, task="t1"), step("a", "r1", 3, 4, task="t1"))
    assert double_executions(executions(tmp_path, [], stopped_at=10)) == []


def test_a_step_cut_by_a_kill_ends_at_the_kill(tmp_path):
    write(tmp_path, step("a", "r1", 0, None, pid=7), step("a", "r2", 3, 4, pid=8))
    killed = [{"fault": "kill-child", "t": 2.5, "pids": [7]}]
    assert overlaps(executions(tmp_path, killed, stopped_at=10)) == []
    assert len(overlaps(executions(tmp_path, [], stopped_at=10))) == 1  # unkilled: runs on


def test_a_pid_reused_after_a_kill_does_not_end_the_new_processs_step(tmp_path):
    # pid 7 is killed at 1; a new process gets pid 7 and its step of run r2 never ends,
    # while run r3 executes: r2's step is not cut by the earlier kill.
    write(tmp_path, step("a", "r1", 0, None, pid=7), step("a", "r2", 2, None, pid=7, task="same"),
          step("a", "r3", 3, 4, pid=8))
    execs = executions(tmp_path, [{"fault": "kill-child", "t": 1, "pids": [7]}], stopped_at=100)
    assert [(o["a"]["run"], o["b"]["run"]) for o in overlaps(execs)] == [("r2", "r3")]
    assert [e["run"] for e in unfinished(execs, now=100)] == ["r2"]


def test_ends_are_paired_by_execution_not_by_pid_and_task(tmp_path):
    # Two executions of one task in one pid (the first killed, the pid reused): the second's
    # end does not close the first.
    first, second = step("a", "r1", 0, None, pid=7, task="t"), step("a", "r1", 5, 6, pid=7, task="t")
    write(tmp_path, first, second)
    execs = executions(tmp_path, [{"fault": "kill-worker", "t": 1, "pids": [7]}], stopped_at=10)
    assert sorted((e["t"], e["end"]) for e in execs) == [(0, 1), (5, 6)]


def test_a_step_hung_past_the_longest_step_is_unfinished(tmp_path):
    write(tmp_path, step("a", "r1", 0, None), step("b", "r2", 590, None), step("c", "r3", 0, 3))
    execs = executions(tmp_path, [], stopped_at=600)
    assert [e["run"] for e in unfinished(execs, now=600)] == ["r1"]  # r2 may still be running


def test_an_empty_step_log_fails_the_check(tmp_path):
    write(tmp_path)
    assert empty_log(executions(tmp_path, [], stopped_at=10), runs_started=40) != []
    write(tmp_path, step("a", "r1", 0, 1))
    assert empty_log(executions(tmp_path, [], stopped_at=10), runs_started=0) != []
    assert empty_log(executions(tmp_path, [], stopped_at=10), runs_started=1) == []


# -- records ------------------------------------------------------------------------------
def test_a_silent_running_run_is_stuck_and_a_recent_one_is_not():
    found = stuck([record("a", "Running", updated=0), record("b", "Running", run="r2", updated=95),
                   record("c", "Completed", run="r3", updated=0)], [], now=100, grace=30)
    assert [s["instance"] for s in found] == ["a"]


def test_a_step_still_executing_is_a_sign_of_life_until_it_outlasts_the_longest_step(tmp_path):
    write(tmp_path, step("a", "r1", 90, None), step("b", "r2", 20, None))
    execs = executions(tmp_path, [], stopped_at=100)
    running = [record("a", "Running", run="r1"), record("b", "Running", run="r2")]
    assert [s["instance"] for s in stuck(running, execs, now=100, grace=30, longest=60)] == ["b"]


def test_a_run_left_suspended_or_parked_is_wedged():
    found = wedged([record("a", "Suspended"), record("b", "Running", parked=True),
                    record("c", "Running"), record("d", "Completed", parked=False)])
    assert [w["instance"] for w in found] == ["a", "b"]


def test_runs_failed_as_lost_or_timed_out_are_found_on_record_and_in_the_reconcilers_log():
    on_record = [record("a", "Failed", output="Lost: the run gave no sign of life"),
                 record("b", "Failed", output="TimedOut: the run did not finish"),
                 record("c", "Failed", output="ValueError: boom"), record("d", "Completed")]
    log = "[...: WARNING/ForkPoolWorker-1] Failed instance 'e': lost.\nFailed instance 'a': lost.\n"
    found = lost_or_timed_out(on_record, [log])
    assert [f["instance"] for f in found] == ["a", "b", "e"]


def test_a_lost_run_is_reported_with_its_lifetime_and_the_steps_it_began():
    lost = {**record("a", "Failed", run="r7", updated=19.5, output="Lost: no sign of life"), "created": 11.0}
    execs = [{"run": "r7", "t": 12.0, "end": 13.0}, {"run": "r8", "t": 12.0, "end": 13.0}]
    (found,) = lost_or_timed_out([lost], [], execs)
    assert (found["created"], found["failed"], found["steps_began"]) == (11.0, 19.5, 1)


def test_a_record_lost_in_the_restart_and_claimed_again_is_lost_despite_a_higher_fence():
    before = {"a": {"run": "r1", "fence": "5", "status": "Running"},
              "b": {"run": "r2", "fence": "7", "status": "Completed"},
              "c": {"run": "r3", "fence": "9", "status": "Running"},
              "d": {"run": "r4", "fence": "3", "status": "Completed"}}
    after = {"a": {"run": "r9", "fence": "99", "status": "Pending"},  # lost, then re-claimed
             "b": dict(before["b"]),  # c: gone
             "d": {"run": "r4", "fence": "3", "status": "Running"}}  # gone back
    assert [lost["instance"] for lost in lost_records(before, after)] == ["a", "c", "d"]
    assert lost_records(before, {k: dict(v) for k, v in before.items()}) == []


def test_a_record_that_moved_on_in_the_moment_before_the_pause_is_not_lost():
    before = {"a": {"run": "r1", "fence": "5", "status": "Running"},
              "b": {"run": "r2", "fence": "7", "status": "Completed"}}
    after = {"a": {"run": "r1", "fence": "5", "status": "Completed"},  # its step ended
             "b": {"run": "r8", "fence": "80", "status": "Pending"}}  # a free ID claimed
    assert lost_records(before, after) == []


def test_a_crash_may_lose_only_records_written_inside_its_loss_window():
    crashed_at = 1000.0
    before = {"recent": {"run": "r1", "fence": "5", "status": "Completed",
                         "updated": crashed_at - CRASH_LOSS_WINDOW_S / 2},
              "old": {"run": "r2", "fence": "6", "status": "Completed",
                      "updated": crashed_at - CRASH_LOSS_WINDOW_S - 1}}
    after = {"recent": {"run": "r1", "fence": "5", "status": "Running", "updated": 990.0}}
    inside, outside = lost_in_crash_window(before, after, crashed_at)
    assert [lost["instance"] for lost in inside] == ["recent"]  # its Completed was not yet on disk
    assert [lost["instance"] for lost in outside] == ["old"]  # gone, though written long before


def test_only_a_crash_has_a_loss_window_and_the_allowed_losses_are_counted_apart():
    before = {"a": {"run": "r1", "fence": "5", "status": "Completed", "updated": 999.5}}
    snapshots = [{"kind": "warm", "at": 1000.0, "before": before, "after": {}},
                 {"kind": "crash", "at": 1000.0, "before": before, "after": {}}]
    allowed, violations = restart_losses(snapshots)
    assert [(lost["instance"], lost["restart"]) for lost in violations] == [("a", "warm")]
    assert [(lost["instance"], lost["restart"]) for lost in allowed] == [("a", "crash")]
    assert restart_losses([{"kind": "crash", "at": 1000.0, "before": before, "after": before}]) == ([], [])


# -- answers --------------------------------------------------------------------------------
def test_a_burst_on_a_run_that_stayed_live_allows_no_202():
    held = {"run": "r1", "status": "Running"}
    assert duplicate_202s([{"before": held, "after": held, "codes": {"409": 30}}]) == []
    assert len(duplicate_202s([{"before": held, "after": held, "codes": {"202": 1, "409": 29}}])) == 1


def test_a_burst_on_a_free_id_allows_one_202():
    free = {"before": None, "after": {"run": "r2", "status": "Pending"}}
    assert duplicate_202s([{**free, "codes": {"202": 1, "409": 29}}]) == []
    assert len(duplicate_202s([{**free, "codes": {"202": 2, "409": 28}}])) == 1


def test_a_single_start_answered_202_on_a_live_run_that_stayed_is_a_duplicate():
    suspended = {"run": "r1", "status": "Suspended"}
    start = {"op": "start", "before": suspended, "after": suspended, "codes": {"202": 1}}
    assert len(duplicate_202s([start])) == 1
    assert duplicate_202s([{**start, "after": {"run": "r2", "status": "Pending"}}]) == []


def test_a_start_answered_500_or_not_at_all_is_a_failed_claim_outside_the_restart():
    def start(t: float, code: str) -> dict:
        return {"instance": "a", "t0": t, "t": t + 0.1, "codes": {code: 1}}

    starts = [start(10, "500"), start(11, "0"), start(12, "202"), start(13, "409"),
              start(50, "503"), start(54, "0"), start(60, "0")]
    found = failed_claims(starts, windows=[(49, 51)])  # clients reconnect within 5 s of it
    assert [f["t"] for f in found] == [10.1, 11.1, 60.1]


def test_beat_ticks_are_counted_by_outcome_and_are_not_executions(tmp_path):
    tick = {"event": "tick", "instance": "inventory-sync", "task": "k", "t": 1, "pid": 3}
    write(tmp_path, [{**tick, "outcome": "started"}, {**tick, "outcome": "skipped"},
                     {**tick, "outcome": "started"}], step("a", "r1", 0, 1))
    assert beat_ticks(tmp_path) == {"started": 2, "skipped": 1}
    assert [e["run"] for e in executions(tmp_path, [], stopped_at=10)] == ["r1"]


def test_a_user_task_that_ran_without_a_runs_stamps_is_unfenced(tmp_path):
    write(tmp_path, step("a", "r1", 0, 1), [{"event": "unfenced", "name": "proj.tasks.total",
                                             "task": "t9", "t": 2.0, "pid": 1}])
    assert [u["task"] for u in unfenced(tmp_path)] == ["t9"]
    write(tmp_path, step("a", "r1", 0, 1))
    assert unfenced(tmp_path) == []
