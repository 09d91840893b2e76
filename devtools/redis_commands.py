"""Count the Redis commands a call costs: those clients send, and those Redis executes.

Used by ``python -m tests.count_commands`` and the benchmarks. Both counts want an
otherwise idle server: MONITOR and INFO commandstats see every client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def command_calls(client: Any) -> dict[str, int]:
    """Return Redis' cumulative per-command call counts (INFO commandstats)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def executed_per_call(client: Any, fn: Callable[[], Any], calls: int) -> dict[str, float]:
    """Return the commands Redis executed per call of `fn`, script internals included."""
    before = command_calls(client)
    for _ in range(calls):
        fn()
    after = command_calls(client)
    after.pop("info", None)
    delta = {k: (v - before.get(k, 0)) / calls for k, v in after.items()}
    return {k: v for k, v in sorted(delta.items()) if v}


def sent_per_call(client: Any, fn: Callable[[], Any], calls: int) -> dict[str, float]:
    """Return the commands clients sent per call of `fn` (MONITOR; a script counts once)."""

    def all_calls() -> None:
        for _ in range(calls):
            fn()

    return {k: v / calls for k, v in sent_during(client, all_calls).items()}


def sent_during(client: Any, fn: Callable[[], Any], *, by_script: bool = False) -> dict[str, int]:
    """Return the commands every client sent while `fn` ran (MONITOR; a script counts once),
    by lower-case name. Other clients of the server (a live worker's polling) count too.

    With `by_script`, EVALSHA counts under ``evalsha <sha1>``, one entry per script.
    """
    # An ECHO of a unique word marks the end of the calls in the MONITOR stream.
    sentinel = f"count-commands-done-{time.monotonic_ns()}"
    counts: dict[str, int] = {}
    with client.monitor() as monitor:
        fn()
        client.echo(sentinel)
        while True:
            command = monitor.next_command()
            if command["command"] == f"ECHO {sentinel}":
                break
            if command["client_type"] != "lua":
                words = command["command"].split(" ", 2)
                name = words[0].lower()
                if by_script and name == "evalsha" and len(words) > 1:
                    name = f"evalsha {words[1].lower()}"
                counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))
