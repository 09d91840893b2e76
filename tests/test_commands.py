"""What a start costs in Redis commands, next to a plain chain.apply_async."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.workers import REPO

# Sent once per new connection (a pool that grows), not per call.
CONNECTION_SETUP = {"hello", "client", "auth", "select", "ping"}


def test_start_sends_the_claim_and_the_message_and_nothing_else():
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # a private, idle server
    out = subprocess.run(
        [sys.executable, "-m", "tests.count_commands"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    counts = json.loads(out)
    plain, ours = counts["plain"]["sent"], counts["start_new"]["sent"]
    print(f"commands sent per call: plain {plain} / start_new {ours}")
    # What publishing the message costs (LPUSH, and PUBLISH of the task-sent event when
    # those are on), plus exactly one command: the claim. No result-channel
    # subscription, so a start sends fewer commands than the plain chain.
    skip = {"subscribe", "unsubscribe", *CONNECTION_SETUP}
    message = {name: n for name, n in plain.items() if name not in skip}
    assert {name: n for name, n in ours.items() if name not in CONNECTION_SETUP} == {
        **message, "evalsha": 1.0
    }
    assert plain.get("lpush") == 1.0 and plain.get("subscribe") == 1.0
    assert counts["start_new"]["sent_total"] < counts["plain"]["sent_total"]
