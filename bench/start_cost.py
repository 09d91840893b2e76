"""Section 1, start cost: how fast each tool starts runs under unique keys, and at what
cost in Redis commands.

One thread starts `calls` runs in a row per tool and repetition; tools take turns
(rotated order) so that drift of the machine's load spreads over all of them. No
worker runs: the queue is emptied after each measurement, outside the timing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from devtools.redis_commands import executed_per_call, sent_per_call

from .measure import Spread, cpu_ratio, interleaved_pairs, rotated, throughput_ratio, time_calls
from .tools import Tool

WARM_UP_CALLS = 50


def _unique(tool: Tool) -> Callable[[], Any]:
    return lambda: tool.start(uuid.uuid4().hex)


def measure_rates(
    tools: Sequence[Tool], *, calls: int, repetitions: int, log: Callable[[str], None]
) -> dict[str, dict[str, Spread]]:
    """Return, per tool, calls/s and µs per call over interleaved repetitions."""
    for tool in tools:
        time_calls(_unique(tool), WARM_UP_CALLS)  # connections, scripts, imports
        tool.purge()
    seconds: dict[str, list[float]] = {tool.name: [] for tool in tools}
    by_name = {tool.name: tool for tool in tools}
    for rep in range(repetitions):
        for name in rotated(list(by_name), rep):
            tool = by_name[name]
            elapsed = time_calls(_unique(tool), calls)
            tool.purge()
            seconds[name].append(elapsed)
            log(f"start cost rep {rep + 1} {name:22s} {calls / elapsed:9.1f} calls/s "
                f"{1e6 * elapsed / calls:8.1f} µs/call")
    return {
        name: {
            "rate": Spread.of(calls / s for s in spent),
            "us": Spread.of(1e6 * s / calls for s in spent),
        }
        for name, spent in seconds.items()
    }


def count_commands(
    tools: Sequence[Tool], redis_client: Any, *, calls: int
) -> dict[str, dict[str, Any]]:
    """Return, per tool, the Redis commands sent and executed per start.

    Sent commands are round trips as a client issues them (a Lua script counts once);
    executed commands come from INFO commandstats and include each script's inner
    commands. The server must be otherwise idle.
    """
    counts = {}
    for tool in tools:
        sent = sent_per_call(redis_client, _unique(tool), calls)
        executed = executed_per_call(redis_client, _unique(tool), calls)
        tool.purge()
        counts[tool.name] = {
            "sent": sent,
            "executed": executed,
            "sent_total": sum(sent.values()),
            "executed_total": sum(executed.values()),
            "message_bytes": message_bytes(tool),
        }
    return counts


def message_bytes(tool: Tool) -> int:
    """Return the size of the broker message one start publishes (the whole chain)."""
    tool.purge()
    _unique(tool)()
    size = len(tool.broker.lindex(tool.queue, 0) or b"")
    tool.purge()
    return size


def paired(ours: Tool, base: Tool, *, pairs: int, calls: int) -> dict[str, Any]:
    """Return ours' throughput and CPU time over the baseline's from interleaved short pairs.

    Both tools publish to the same queue, so it is emptied after each run, untimed.
    """
    found = interleaved_pairs(_unique(ours), _unique(base), pairs=pairs, calls=calls,
                              between=lambda: (ours.purge(), base.purge()))
    return {
        "throughput": throughput_ratio(found),
        "cpu": cpu_ratio(found),
        "ours_cpu_us": Spread.of(1e6 * p.ours_cpu / calls for p in found),
        "base_cpu_us": Spread.of(1e6 * p.base_cpu / calls for p in found),
        "ours_wall_us": Spread.of(1e6 * p.ours_wall / calls for p in found),
        "base_wall_us": Spread.of(1e6 * p.base_wall / calls for p in found),
        "calls": calls,
    }


def run(
    tools: Sequence[Tool],
    redis_client: Any,
    *,
    calls: int,
    repetitions: int,
    count_calls: int,
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Measure rates and command counts; return both per tool name."""
    rates = measure_rates(tools, calls=calls, repetitions=repetitions, log=log)
    commands = count_commands(tools, redis_client, calls=count_calls)
    return {name: {**rates[name], "commands": commands[name]} for name in rates}
