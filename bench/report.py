"""Turn the suite's results into the targets' verdicts, BENCHMARKS.md and the PNG plot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import scale_out, script_time
from .end_to_end import CHAINS, ORCHESTRATIONS
from .measure import Ratio, Spread
from .tools import OURS, PLAIN

START_RATIO = 1.25
HTTP_RATIO = 0.95
E2E_RATIO = 1.0
PAGE_GROWTH = 1.5
RECORD_BYTES = 1024
MESSAGE_RATIO = 1.15
REFUSAL_P99_MS = 25.0
PLOT_NAME = "benchmarks.png"


@dataclass(frozen=True)
class Target:
    """One target of the issue, with the figure measured against it."""

    text: str
    measured: str
    met: bool
    noisy: bool = False

    @property
    def verdict(self) -> str:
        """Return 'met', 'not met', or 'noisy' when the figure's spread straddles the target."""
        if self.noisy:
            return "noisy"
        return "met" if self.met else "not met"

    @classmethod
    def of_ratio(cls, text: str, ratio: Ratio, target: float) -> Target:
        """A target read from paired ratios: met only when the lower quartile clears it."""
        verdict = ratio.verdict(target)
        return cls(text, ratio.text(), verdict == "met", noisy=verdict == "noisy")


def _paired(ours: Spread, base: Spread) -> Ratio:
    # Repetition i of ours was measured next to repetition i of the baseline.
    return Ratio.of(a / b for a, b in zip(ours.samples, base.samples, strict=True))


def _ratio(a: Spread, b: Spread) -> float:
    return a.median / b.median


def http_medians(rounds: list[dict[str, float]]) -> dict[str, Spread]:
    """Summarise bench.http_start rounds: requests/s, p50 and p99 (ms)."""
    return {key: Spread.of(r[key] for r in rounds) for key in ("rps", "p50", "p99")}


def targets(results: dict[str, Any]) -> list[Target]:
    """Return every target of the issue with its verdict."""
    found = []
    start = results.get("start")
    pairs = results.get("start_pairs")
    if pairs:
        found.append(Target.of_ratio(
            f"start_new >= {START_RATIO}x plain chain.apply_async throughput (interleaved pairs)",
            pairs["throughput"], START_RATIO))
    elif start:
        ratio = _ratio(start[OURS]["rate"], start[PLAIN]["rate"])
        found.append(Target(f"start_new >= {START_RATIO}x plain chain.apply_async throughput",
                            f"{ratio:.2f}x", ratio >= START_RATIO))
    if start:
        ours, plain = start[OURS]["commands"], start[PLAIN]["commands"]
        found.append(Target(
            "one Redis round trip per start (commands sent, MONITOR; a script counts once)",
            f"{ours['sent_total']:.2f} (plain chain {plain['sent_total']:.2f})",
            abs(ours["sent_total"] - 1) < 0.05,
        ))
        size = ours["message_bytes"] / plain["message_bytes"]
        found.append(Target(
            f"first-message bytes <= {MESSAGE_RATIO}x the plain chain's",
            f"{size:.2f}x ({ours['message_bytes']} B vs {plain['message_bytes']} B)", size <= MESSAGE_RATIO))
    http = results.get("http")
    if http:
        ratio = _paired(http_medians(http["start_new"])["rps"], http_medians(http["bare"])["rps"])
        found.append(Target.of_ratio(
            f"HTTP start endpoint >= {HTTP_RATIO}x the bare endpoint (interleaved rounds)",
            ratio, HTTP_RATIO))
    e2e = results.get("e2e")
    if e2e:
        ratio = _paired(e2e[ORCHESTRATIONS]["rate"], e2e[CHAINS]["rate"])
        found.append(Target.of_ratio(
            f"end-to-end orchestrations >= {E2E_RATIO}x plain chains (interleaved batches)",
            ratio, E2E_RATIO))
    scale = results.get("scale")
    if scale:
        small, large = min(scale), max(scale)
        growth = scale[large]["page_p50"].median / scale[small]["page_p50"].median
        found.append(Target(
            f"a list page at {large:,} records within {PAGE_GROWTH}x of the same page at {small:,}",
            f"{growth:.2f}x", growth <= PAGE_GROWTH))
        filtered = scale[large]["filtered_page_p50"].median / scale[small]["filtered_page_p50"].median
        found.append(Target(
            f"(section 5: must stay flat) a list page filtered by status at {large:,} records within "
            f"{PAGE_GROWTH}x of the same page at {small:,}",
            f"{filtered:.2f}x", filtered <= PAGE_GROWTH))
        per_record = scale[large]["per_record"]
        found.append(Target(f"<= {RECORD_BYTES} B of Redis memory per terminal record (small input)",
                            f"{per_record:.0f} B", per_record <= RECORD_BYTES))
    contention = results.get("contention")
    if contention and contention[OURS]["refused_p99"] is not None:
        p99 = contention[OURS]["refused_p99"]
        # Three bursts: met when every burst's p99 clears the target, noisy when some do.
        found.append(Target(
            f"start_new refusal p99 <= {REFUSAL_P99_MS:g} ms under 100-way contention",
            f"{p99.median:.1f} ms (bursts {p99.low:.1f}-{p99.high:.1f})",
            p99.high <= REFUSAL_P99_MS, noisy=p99.low <= REFUSAL_P99_MS < p99.high))
    if contention:
        enqueued = contention[OURS]["enqueued"]
        found.append(Target("exactly one enqueued run under contention (start_new)",
                            ", ".join(map(str, enqueued)) + " per repetition",
                            all(n == 1 for n in enqueued) and not contention[OURS]["errors"]))
    if "scripts" in results:
        found.append(Target(*script_time.target(results["scripts"])))
    return found


# -- Markdown ------------------------------------------------------------------------
def _spread(s: Spread | None, fmt: str = "{:.1f}") -> str:
    if s is None:
        return "n/a"
    return f"{fmt.format(s.median)} ({fmt.format(s.low)}-{fmt.format(s.high)})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _commands(counts: dict[str, float]) -> str:
    return ", ".join(f"{name} {n:g}" for name, n in counts.items() if n >= 0.05) or "none"


def start_section(start: dict[str, Any]) -> list[str]:
    """Return the start-cost table."""
    plain = start[PLAIN]["rate"].median
    rows = []
    for name, r in start.items():
        c = r["commands"]
        rows.append([name, _spread(r["rate"], "{:.0f}"), _spread(r["us"], "{:.0f}"),
                     f"{r['rate'].median / plain:.2f}x", f"{c['sent_total']:.2f}",
                     f"{c['executed_total']:.2f}", _commands(c["sent"]), str(c["message_bytes"])])
    return _table(["tool", "starts/s", "µs per start", "vs plain", "commands sent",
                   "commands executed", "sent per start", "message bytes"], rows)


def start_pairs_section(pairs: dict[str, Any]) -> list[str]:
    """Return the paired start figures: throughput and CPU ratios, wall and CPU µs per start."""
    n, calls = len(pairs["throughput"].samples), pairs["calls"]
    return [
        f"start_new against the plain chain in {n} interleaved pairs of {calls} starts each "
        "(the order alternates from pair to pair): the median ratio with its interquartile range.", "",
        *_table(["figure", "start_new / plain", "start_new µs", "plain µs"], [
            ["throughput (wall clock)", pairs["throughput"].text(),
             _spread(pairs["ours_wall_us"], "{:.0f}"), _spread(pairs["base_wall_us"], "{:.0f}")],
            ["CPU time per start (process time, lower is cheaper)", pairs["cpu"].text(),
             _spread(pairs["ours_cpu_us"], "{:.0f}"), _spread(pairs["base_cpu_us"], "{:.0f}")],
        ]),
    ]


def contention_section(contention: dict[str, Any]) -> list[str]:
    """Return the contention table."""
    rows = []
    for name, c in contention.items():
        rows.append([name, ", ".join(map(str, c["enqueued"])), ", ".join(map(str, c["accepted"])),
                     ", ".join(map(str, c["refused"])), _spread(c["refused_p50"]),
                     _spread(c["refused_p99"]), str(len(c["errors"]))])
    return _table(["tool", "runs enqueued", "accepted", "refused", "refusal p50 ms",
                   "refusal p99 ms", "errors"], rows)


def http_section(http: dict[str, Any]) -> list[str]:
    """Return the HTTP table."""
    rows = []
    for name, rounds in http.items():
        m = http_medians(rounds)
        rows.append([name, _spread(m["rps"]), _spread(m["p50"], "{:.2f}"), _spread(m["p99"], "{:.2f}"),
                     str(sum(r["errors"] for r in rounds))])
    return _table(["endpoint", "requests/s", "p50 ms", "p99 ms", "errors"], rows)


def e2e_section(e2e: dict[str, Any], runs: int) -> list[str]:
    """Return the end-to-end table."""
    chains = e2e[CHAINS]["rate"].median
    rows = [[name, _spread(r["rate"]), _spread(r["seconds"], "{:.2f}"),
             f"{r['rate'].median / chains:.2f}x"] for name, r in e2e.items()]
    return _table([f"{runs} runs of", "runs completed/s", "seconds", "vs chains"], rows)


def scale_section(scale: dict[int, Any]) -> list[str]:
    """Return the record-store table."""
    rows = []
    for size, s in scale.items():
        rows.append([f"{size:,}", _spread(s["status_p50"], "{:.3f}"), _spread(s["status_p99"], "{:.3f}"),
                     _spread(s["page_p50"], "{:.2f}"), _spread(s["page_p99"], "{:.2f}"),
                     _spread(s["filtered_page_p50"], "{:.2f}"), f"{s['per_record']:.0f}",
                     f"{s['keys_per_record']:.0f}", f"{s['hash']:.0f}", f"{s['fill_seconds']:.1f}"])
    return _table(["records", "get_status p50 ms", "p99 ms", "list page p50 ms", "p99 ms",
                   "page filtered by status p50 ms", "used_memory growth per record B",
                   "MEMORY USAGE of all keys per record B", "one record hash B", "fill s"], rows)


def profile_section(profiles: dict[str, Any]) -> list[str]:
    """Return the profiles taken for missed targets."""
    lines: list[str] = []
    for what, p in profiles.items():
        per_call = f" ({p['per_call_us']:.0f} µs per call under the profiler)" if "per_call_us" in p else ""
        lines += [f"**{what}**{per_call}", ""]
        if "error" in p:
            lines += [f"Profiling failed: {p['error']}", ""]
            continue
        for kind in ("breakdown", "inclusive", "self", "ours"):
            if not p.get(kind):
                continue
            top = "; ".join(f"`{label}` {share:.0f}%" for label, share in p[kind][:8])
            name = "singleton/ functions, inclusive" if kind == "ours" else kind
            lines += [f"- {name}: {top}"]
        lines.append("")
    return lines


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def markdown(results: dict[str, Any], header: str, plot_name: str) -> str:
    """Return BENCHMARKS.md: header, machine, targets, sections, profiles, plot."""
    m = results["machine"]
    cfg = results["config"]
    lines = [header.strip(), ""]
    lines += [
        "## Machine and versions", "",
        f"- Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}; {m['os']}; "
        f"redis-server {m['redis-server']} (private, on a free port).",
        "- Versions: " + ", ".join(f"{k} {m[k]}" for k in
                                   ("celery", "kombu", "redis", "celery-singleton", "celery-once",
                                    "flask", "gunicorn")) + ".",
        f"- Load average (1/5/15 min) at the start: {_load(results['load_before'])}; at the end: "
        f"{_load(results['load_after'])}. The run took {results['elapsed']:.0f} s.",
        f"- Command: `{cfg['command']}`; {cfg['repetitions']} interleaved repetitions per figure; "
        "each figure is the median, with the min-max spread in parentheses. A ratio target is read "
        "from many short interleaved pairs (ours, baseline, ours, ...): the median ratio with its "
        "interquartile range, met only when the lower quartile clears the target, noisy when the "
        "range straddles it.",
        "",
        "## Targets", "",
    ]
    lines += _table(["target", "measured", "verdict"],
                    [[t.text, t.measured, t.verdict] for t in targets(results)])
    lines += [f"![benchmark plot]({plot_name})", ""]
    if "start" in results:
        lines += [f"## 1. Start cost, unique IDs ({cfg['start_calls']} starts per tool and repetition, "
                  "one thread, no worker)", ""]
        lines += start_section(results["start"])
        if "start_pairs" in results:
            lines += start_pairs_section(results["start_pairs"])
        lines += [
            "Commands sent are the round trips a start costs (MONITOR; a Lua script counts once); "
            "commands executed are INFO commandstats deltas, a script's inner commands included. "
            "`plain, ignore_result` is the same chain published without subscribing to its result "
            "channel. start_new's one command is the claim script, which also pushes the run's first "
            "message (LPUSH) and publishes its task-sent event (PUBLISH): the message is recorded from "
            "Celery's own publish on a kombu channel that keeps those two commands instead of sending "
            "them, so it is the message kombu would send (but for kombu's per-publish delivery tag).", "",
        ]
    if "contention" in results:
        lines += [f"## 2. Contention ({cfg['threads']} threads start one ID at once, released by a "
                  "barrier; no worker)", ""]
        lines += contention_section(results["contention"])
        lines += [
            "Runs enqueued counts the messages added to the tool's broker queue, one per repetition "
            "(a chain is one message). The peers lock only the chain's first task; see the notes.", "",
        ]
    if "http" in results:
        lines += [f"## 3. HTTP start (gunicorn -w {cfg['http_workers']}, load {cfg['http_processes']} "
                  f"processes x {cfg['http_threads']} threads on loopback, {cfg['http_seconds']:g} s per "
                  "endpoint and round)", ""]
        lines += http_section(results["http"])
        lines += ["Measured by `bench.http_start` (also `make bench-http`) on the suite's Redis server: "
                  "`start_new` is `POST /api/orchestrators/HelloSequence`, `bare` a Flask route doing "
                  "the same chain's plain `apply_async`.", ""]
    if "e2e" in results:
        lines += [f"## 4. End to end (a live `celery -A proj worker -c {cfg['concurrency']}`)", ""]
        lines += e2e_section(results["e2e"], cfg.get("e2e_runs", cfg["runs"]))
        lines += ["From the first start to the last completion; runs are started back to back, then "
                  "polled (one pipelined read of at most 50 of the oldest unfinished runs; a 50 ms "
                  "pause when none of them had finished).", ""]
    if "scale" in results:
        lines += ["## 5. Record store scale (terminal records, small input)", ""]
        lines += scale_section(results["scale"])
        lines += [
            "Each size lives in its own Redis database, filled through the Store API (claim, then "
            "end_run). Pages are `get_status_by(page_size=100)`, newest first; the filtered page asks "
            "for `runtime_status=[Completed]`. The used_memory growth (settled before and after the "
            "fill) divided by the records holds everything a record costs: its hash, its TTL and its "
            "two index entries; the smaller fills also carry fixed costs (a new database, the first fill "
            "loads the scripts), so the largest fill gives the target's figure. The MEMORY USAGE sum "
            "covers every key of the database (no TTL bookkeeping).", "",
        ]
    if "scale_out" in results:
        lines += scale_out.section(results["scale_out"], _spread, _table)
    if "scripts" in results:
        lines += script_time.section(results["scripts"], _spread, _table)
    remains = analysis(results)
    if remains:
        lines += ["## What remains, and why", ""]
        lines += [f"- {text}" for text in remains]
        lines.append("")
    if results.get("profiles"):
        lines += ["## Profiles of missed targets", ""]
        lines += profile_section(results["profiles"])
    if results.get("notes"):
        lines += ["## Notes", ""]
        lines += [f"- {note}" for note in results["notes"]]
        lines.append("")
    return "\n".join(lines)


def _share(profile: dict[str, Any] | None, needle: str) -> float | None:
    # The share of the breakdown entries whose callee names `needle`.
    if not profile or not profile.get("breakdown"):
        return None
    found = [share for label, share in profile["breakdown"] if needle in label.rsplit("->", 1)[-1]]
    return sum(found) if found else None


def analysis(results: dict[str, Any]) -> list[str]:
    """Return, for each missed target, what the figures and profiles say about why."""
    missed = [t for t in targets(results) if not t.met]
    texts = []
    profiles = results.get("profiles", {})
    if any(t.text.startswith("start_new >=") for t in missed):
        start = results["start"]
        ours, plain = start[OURS], start[PLAIN]
        prof = next((p for k, p in profiles.items() if k.startswith("start_new")), None)
        publish, claim = _share(prof, "apply_async"), _share(prof, "singleton/store/")
        split = (f" In the profile, {publish:.0f}% of a start is Celery's apply_async of the run's canvas "
                 f"and {claim:.0f}% the claim's round trip." if publish and claim else "")
        texts.append(
            "Start throughput: where the broker is the store's Redis database, a start is one round "
            "trip (the claim script pushes the first message and publishes its task-sent event), "
            "against four for a plain chain, so the gap is Python, not round trips." + split)
    if any(t.text.startswith("first-message bytes") for t in missed):
        ours, plain = results["start"][OURS], results["start"][PLAIN]
        texts.append(
            f"Message size: the run's message is {ours['commands']['message_bytes']} B against "
            f"{plain['commands']['message_bytes']} B for the plain chain: every task of the chain "
            "carries the run's one compact stamp (and the later steps ignore_result), inside the "
            "base64 body; the first task's kwargsrepr labels the run for Flower.")
    if any(t.text.startswith("start_new refusal p99") for t in missed):
        texts.append(
            "Refusals under contention: the starts that arrive while the first start of their ID "
            "is under way share one probe of the claim script (no canvas, no message), sent once "
            "that start has finished; what the slowest refusal still waits for is the first start "
            "and 99 threads waking on one GIL, on two cores shared with the other processes of "
            "the machine.")
    scale = results.get("scale")
    if scale and any(t.text.startswith(("a list page", "(section 5")) for t in missed):
        import singleton.client
        import singleton.store

        factor = getattr(singleton.client, "SCAN_FACTOR", None)
        shards = getattr(singleton.store, "SHARDS", None)
        small, large = min(scale), max(scale)
        per_shard = 2 * -(-factor * 100 // shards) + 1 if factor and shards else 0
        shape = (f" An unfiltered page asks every one of the {shards} index shards for page_size + 1 "
                 f"entries, a filtered page each shard for {per_shard} (twice its even share of "
                 f"{factor} x page_size), so a page fetches at most {shards * 101:,} or "
                 f"{shards * per_shard:,} index entries at any size and reads at most "
                 f"{factor * 100:,} records; from {small:,} to {large:,} records what grows is the "
                 "depth of each shard's sorted set, not the work of a page."
                 if factor and shards else "")
        texts.append(
            "List pages: get_status stays flat, and a page's work is bounded." + shape + " On this "
            "shared 2-core machine the page latencies move by more than the 1.5x margin from one "
            "run to the next (see the min-max spreads), so a single run can miss the target by "
            "noise; the profiles below show where a page's time goes.")
    for prefix, what in (("HTTP", "HTTP start"), ("end-to-end", "End to end")):
        if any(t.text.startswith(prefix) for t in missed):
            texts.append(f"{what}: see the profile below for where the worker processes spend the time.")
    return texts


# -- the plot ---------------------------------------------------------------------
def _bars(ax: Any, labels: list[str], spreads: list[Spread], title: str, ylabel: str) -> None:
    medians = [s.median for s in spreads]
    errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
    colours = ["#d62728" if label in (OURS, "start_new", ORCHESTRATIONS) else "#7f7f7f" for label in labels]
    ax.bar(range(len(labels)), medians, yerr=errors, capsize=4, color=colours)
    ax.set_xticks(range(len(labels)), [label.replace(" ", "\n", 1) for label in labels], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)


def plot(results: dict[str, Any], path: Path) -> None:
    """Write the figures as one PNG: a panel per section (medians, min-max bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    ax = iter(axes.flat)
    if "start" in results:
        s = results["start"]
        _bars(next(ax), list(s), [r["rate"] for r in s.values()], "1. Start cost (unique IDs)", "starts/s")
    if "contention" in results:
        c = {k: v for k, v in results["contention"].items() if v["refused_p50"] is not None}
        a = next(ax)
        _bars(a, list(c), [v["refused_p50"] for v in c.values()], "2. Contention: refusal p50",
              "ms (100 threads, one ID)")
        for i, v in enumerate(c.values()):
            a.annotate(f"enqueued {statistics.median(v['enqueued']):g}", (i, 0), ha="center",
                       va="bottom", fontsize=8, color="white")
    if "http" in results:
        h = {k: http_medians(v)["rps"] for k, v in results["http"].items()}
        _bars(next(ax), list(h), list(h.values()), "3. HTTP start", "requests/s")
    if "e2e" in results:
        e = results["e2e"]
        _bars(next(ax), list(e), [r["rate"] for r in e.values()], "4. End to end (live worker)",
              "runs completed/s")
    if "scale" in results:
        a = next(ax)
        sizes = list(results["scale"])
        for key, label in (("status_p50", "get_status"), ("page_p50", "list page (100)"),
                           ("filtered_page_p50", "page filtered by status")):
            spreads = [results["scale"][n][key] for n in sizes]
            a.errorbar(sizes, [s.median for s in spreads], capsize=3, marker="o", label=label,
                       yerr=[[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]])
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_title("5. Record store: p50 latency vs records", fontsize=10)
        a.set_xlabel("terminal records", fontsize=9)
        a.set_ylabel("ms", fontsize=9)
        a.legend(fontsize=8)
    if "start" in results:
        a = next(ax)
        s = results["start"]
        names = list(s)
        x = range(len(names))
        a.bar([i - 0.2 for i in x], [s[n]["commands"]["sent_total"] for n in names], 0.4, label="sent")
        a.bar([i + 0.2 for i in x], [s[n]["commands"]["executed_total"] for n in names], 0.4,
              label="executed (script internals too)")
        a.set_xticks(list(x), [n.replace(" ", "\n", 1) for n in names], fontsize=8)
        a.set_title("Redis commands per start", fontsize=10)
        a.legend(fontsize=8)
    for a in ax:
        a.axis("off")
    fig.suptitle(f"Singleton orchestrations vs plain Celery and peers — {results['machine']['cpu']}, "
                 f"{results['machine']['cores']} cores", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
