"""Every line a step logs carries its instance ID and run, in a real worker's log."""

from __future__ import annotations


def test_grep_by_instance_id_tells_one_runs_story(client, worker, uid):
    client.start_new("SyncInventory", uid, input={"max_changes": 3})
    status = client.wait_for_completion(uid, timeout=30)

    story = [line for line in worker.log.read_text().splitlines() if uid in line]
    label = f" instance={uid} run={status.run_id}"
    found = next(line for line in story if "changed items" in line)
    applied = next(line for line in story if "Applied all" in line)
    assert label in found and label in applied
    assert f"Applied all {status.output} changes" in applied
    # Lines logged outside a run carry no label.
    assert " instance=" not in worker.log.read_text().splitlines()[0]
