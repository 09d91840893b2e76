"""What a start costs in Redis commands, next to a plain chain.apply_async."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.workers import REPO


def test_start_sends_at_most_one_command_more_than_a_plain_chain():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # a private, idle server
    out = subprocess.run(
        [sys.executable, "-m", "tests.count_commands"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    counts = json.loads(out)
    plain, ours = counts["plain"]["sent"], counts["start_new"]["sent"]
    print(f"commands sent per call: plain {plain} / start_new {ours}")
    assert ours.get("evalsha") == 1.0  # the claim: one script, one round trip
    assert plain.get("lpush") == ours.get("lpush") == 1.0  # one message published
    assert counts["start_new"]["sent_total"] <= counts["plain"]["sent_total"] + 1
