"""The chaos checker's rules on made-up logs: each finds what it must, and no more."""

from __future__ import annotations

import json

from chaos.checker import duplicate_202s, executions, overlaps


def step(instance: str, run: str, start: float, end: float | None, pid: int = 1, task: str = "") -> list:
    lines = [{"event": "start", "instance": instance, "run": run, "task": task or f"{run}{start}",
              "name": "s", "t": start, "pid": pid}]
    if end is not None:
        lines.append({**lines[0], "event": "end", "t": end})
    return lines


def write(tmp_path, *steps: list) -> None:
    lines = [json.dumps(entry) for s in steps for entry in s]
    (tmp_path / "steps-1.jsonl").write_text("\n".join(lines) + "\n")


def test_two_runs_of_one_id_executing_at_once_are_an_overlap(tmp_path):
    write(tmp_path, step("a", "r1", 0, 5), step("a", "r2", 4, 6), step("b", "r3", 4, 6))
    found = overlaps(executions(tmp_path, [], stopped_at=10))
    assert [(o["a"]["run"], o["b"]["run"]) for o in found] == [("r1", "r2")]


def test_runs_one_after_the_other_and_steps_of_one_run_are_not(tmp_path):
    write(tmp_path, step("a", "r1", 0, 5), step("a", "r1", 1, 2), step("a", "r2", 5, 6))
    assert overlaps(executions(tmp_path, [], stopped_at=10)) == []


def test_a_step_cut_by_a_kill_ends_at_the_kill(tmp_path):
    write(tmp_path, step("a", "r1", 0, None, pid=7), step("a", "r2", 3, 4, pid=8))
    killed = [{"fault": "kill-child", "t": 2.5, "pids": [7]}]
    assert overlaps(executions(tmp_path, killed, stopped_at=10)) == []
    assert len(overlaps(executions(tmp_path, [], stopped_at=10))) == 1  # unkilled: runs on


def test_a_burst_on_a_run_that_stayed_live_allows_no_202():
    held = {"run": "r1", "status": "Running"}
    assert duplicate_202s([{"before": held, "after": held, "codes": {"409": 30}}]) == []
    assert len(duplicate_202s([{"before": held, "after": held, "codes": {"202": 1, "409": 29}}])) == 1


def test_a_burst_on_a_free_id_allows_one_202():
    free = {"before": None, "after": {"run": "r2", "status": "Pending"}}
    assert duplicate_202s([{**free, "codes": {"202": 1, "409": 29}}]) == []
    assert len(duplicate_202s([{**free, "codes": {"202": 2, "409": 28}}])) == 1
