"""Where the time goes when a target is missed: pyinstrument in-process, py-spy for a worker.

Both return the functions with the largest shares of the samples, inclusive (the
function and what it calls; each function counted once per stack) and self (the
function's own code), labelled ``function (file:line)``.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TOP = 10


def _shares(counter: Counter, total: float, top: int) -> list[tuple[str, float]]:
    return [(label, 100 * amount / total) for label, amount in counter.most_common(top)] if total else []


def profile_calls(fn: Callable[[], Any], calls: int, *, top: int = TOP) -> dict[str, list[tuple[str, float]]]:
    """Profile `calls` calls of `fn` with pyinstrument; return the top inclusive and self shares."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002)
    profiler.start()
    for _ in range(calls):
        fn()
    profiler.stop()
    root = profiler.last_session.root_frame()
    inclusive: Counter = Counter()
    own: Counter = Counter()

    def walk(frame: Any, above: frozenset[str]) -> None:
        label = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        real = [c for c in frame.children if not c.is_synthetic]
        own[label] += frame.time - sum(c.time for c in real)
        if label not in above:
            inclusive[label] += frame.time
        for child in real:
            walk(child, above | {label})

    for child in (c for c in root.children if not c.is_synthetic):
        walk(child, frozenset())
    total = root.time
    # The benchmark's own loop frames hold 100%: drop what merely contains fn.
    return {
        "per_call_us": 1e6 * total / calls,
        "breakdown": _breakdown(root, total),
        "inclusive": [(lbl, s) for lbl, s in _shares(inclusive, total, top + 4) if s < 99.5][:top],
        "self": _shares(own, total, top),
        "ours": _ours(inclusive, total, top),
    }


def _ours(inclusive: Counter, total: float, top: int) -> list[tuple[str, float]]:
    # The singleton layer's own functions, inclusive: how much of the time is ours.
    return _shares(Counter({k: v for k, v in inclusive.items() if "singleton/" in k}), total, top)


def _label(frame: Any) -> str:
    return f"{frame.function} ({frame.file_path_short}:{frame.line_no})"


def _breakdown(root: Any, total: float) -> list[tuple[str, float]]:
    # Walk down through the frames that merely wrap the call (one callee holding nearly
    # all the time) to the first level whose time splits, and share out its callees.
    # A loop's calls may sit in several sibling frames: a level is a list of frames.
    level, label = [root], _label(root)
    while True:
        parts: dict[str, list[Any]] = {}
        for frame in level:
            for child in frame.children:
                parts.setdefault("(own code)" if child.is_synthetic else _label(child), []).append(child)
        if not parts:
            return []
        times = Counter({name: sum(c.time for c in frames) for name, frames in parts.items()})
        (top, top_time), = times.most_common(1)
        if top == "(own code)" or top_time < 0.95 * sum(f.time for f in level):
            break
        level, label = parts[top], top
    return [(f"{label} -> {part}", 100 * t / total) for part, t in times.most_common(8)] if total else []


def parse_collapsed(lines: Iterable[str], *, top: int = TOP) -> dict[str, Any]:
    """Aggregate py-spy's raw (collapsed) stacks: ``frame;frame;... count`` per line.

    Frames are merged per function (py-spy puts the current line in each frame).
    The trunk (frames in nearly every sample: the server's loops) is left out of the
    inclusive list; the breakdown shares out the callees where the trunk ends.
    """
    inclusive: Counter = Counter()
    own: Counter = Counter()
    trie: dict[str, Any] = {"n": 0, "kids": {}}
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for label in set(frames):
            inclusive[label] += n
        node = trie
        node["n"] += n
        for label in frames:
            node = node["kids"].setdefault(label, {"n": 0, "kids": {}})
            node["n"] += n
    trunk = {label for label, n in inclusive.items() if n >= 0.95 * total}
    for label in trunk:
        del inclusive[label]
    return {"breakdown": _trie_breakdown(trie, total), "inclusive": _shares(inclusive, total, top),
            "self": _shares(own, total, top), "ours": _ours(inclusive, total, top), "samples": total}


_LINE = re.compile(r":\d+\)$")


def _trie_breakdown(trie: dict[str, Any], total: int) -> list[tuple[str, float]]:
    node, label = trie, "(all samples)"
    while node["kids"]:
        name, kid = max(node["kids"].items(), key=lambda item: item[1]["n"])
        if kid["n"] < 0.95 * node["n"]:
            break
        node, label = kid, name
    kids = sorted(node["kids"].items(), key=lambda item: -item[1]["n"])[:8]
    return [(f"{label} -> {name}", 100 * kid["n"] / total) for name, kid in kids] if total else []


def profile_process(pid: int, run: Callable[[], Any], *, rate: int = 250) -> dict[str, Any]:
    """Sample process `pid` and its children with py-spy while `run()` runs.

    Returns the top inclusive and self shares; idle samples are left out, so the
    shares are of the time the processes were on a CPU.
    """
    with tempfile.TemporaryDirectory(prefix="bench-pyspy-") as directory:
        out = Path(directory) / "stacks.txt"
        spy = Path(sys.executable).with_name("py-spy")
        args = [str(spy), "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
                "--rate", str(rate), "--output", str(out), "--nonblocking"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            run()
        finally:
            proc.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        if not out.exists():
            return {"error": (err or "py-spy wrote nothing").strip()[-300:]}
        return parse_collapsed(out.read_text().splitlines())
