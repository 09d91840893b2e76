"""``make bench``: this project side by side with plain Celery, celery-singleton and celery-once.

Starts a private Redis server (free port; a local server is never touched), runs
the seven sections in turn, prints each target as met, not met or noisy, profiles what is
missed, and writes BENCHMARKS.md and benchmarks.png (``--quick``: tiny sizes,
written under var/bench/ unless --out is given).

Databases on the private server: 0 the product (proj), 1 the peers' app, 2-4 one
per record-store size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from proj.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("start", "contention", "http", "e2e", "scale", "scale-out", "scripts")
PEER_DB = 1
SCALE_FIRST_DB = 2

FULL = {
    "repetitions": 3, "start_calls": 1000, "count_calls": 200, "threads": 100,
    "http_seconds": 2.0, "http_workers": 4, "http_processes": 2, "http_threads": 4,
    "runs": 500, "concurrency": 2, "e2e_timeout": 300.0,
    "sizes": (1_000, 10_000, 100_000), "scale_calls": 300, "fill_processes": 2, "profile_calls": 500,
    "pairs": 31, "pair_calls": 100, "http_rounds": 15, "e2e_pairs": 15, "e2e_runs": 100,
    "script_runs": 100, "script_alone_runs": 300,
}
QUICK = {
    **FULL, "start_calls": 100, "count_calls": 20, "http_seconds": 0.5, "http_workers": 2,
    "http_processes": 1, "http_threads": 2, "runs": 30, "e2e_timeout": 60.0,
    "sizes": (100, 1_000, 3_000), "scale_calls": 30, "profile_calls": 50,
    "pairs": 15, "pair_calls": 20, "e2e_runs": 20, "script_runs": 20, "script_alone_runs": 50,
}

HEADER = """
# Benchmarks

Singleton orchestrations (`OrchestrationClient.start_new`) side by side with plain Celery and
the two lock libraries users reach for, celery-singleton and celery-once, measured in one run
on one private Redis server. This file and `benchmarks.png` are written by `make bench`; rerun
it to refresh them (about 10 minutes on 2 cores). The machine is shared: read the load line.

What the peers lock differs from what we lock. celery-singleton and celery-once take a
`SET NX` lock on a hash of one task's arguments; here that task is the first step of the same
3-step chain, so their lock is released when the first step finishes while the chain goes on.
start_new claims the instance ID for the whole run in one Lua script, and every step is fenced.
"""

NOTES = [
    "Peers are installed from the registry into `.venv-bench` only (requirements-bench.txt), with "
    "their declared dependencies: neither pins anything that conflicts with celery 5.7 / redis 8.1. "
    "celery-once imports `six` without declaring it, so the bench pins it.",
    "celery-singleton reads `singleton_*` Celery settings, as this project does: an app using both "
    "would share `singleton_key_prefix`. The peers therefore run on their own bench app "
    "(bench/peer_app.py, database 1), with `singleton_raise_on_duplicate=True` so that a refusal "
    "raises, as the other tools' refusals do.",
    "Refusals under contention: the start_new calls that arrive while the first start of their ID "
    "is under way in the process share one probe of the claim script, sent once that start has "
    "finished: it refuses and counts each of them, with no canvas or message built. The peers' lock "
    "sits inside the first task's apply_async, which Celery reaches after preparing the whole chain, "
    "so each refused caller pays "
    "most of a publish; with 100 threads sharing the GIL that shows in their refusal latency.",
    "Under contention with no worker running, every lock refuses all but one caller; the peers' "
    "known failure modes (lock released after the first step, lost on a killed worker, not "
    "owner-checked) need a worker and crashes to show, and are not measured here.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for development")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (of {', '.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, help="directory for BENCHMARKS.md and benchmarks.png")
    args = parser.parse_args(argv)
    args.sections = [s for s in args.only.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.out is None:
        args.out = ROOT / "var" / "bench" if args.quick else ROOT
    return args


def log(line: str) -> None:
    """Print a progress line at once."""
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; return 0 when every call answered (a missed target is reported, not failed)."""
    args = parse_args(argv)
    cfg = {**(QUICK if args.quick else FULL),
           "command": "make bench" + (" BENCH_ARGS=--quick" if args.quick else "")}
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    server = RedisServer(workdir / "redis", appendonly=False).start()
    # Configuration enters here, once: celeryconfig reads REDIS_URL when proj is imported.
    os.environ["REDIS_URL"] = server.url
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(name, None)
    began = time.monotonic()
    load_before = os.getloadavg()
    log(f"bench: private redis-server on port {server.port}; load average {load_before[0]:.2f}")
    try:
        results = run_sections(args.sections, cfg, server.url, workdir)
    finally:
        server.stop()
    problems = errors(results)
    results.update(config=cfg, load_before=load_before, load_after=os.getloadavg(),
                   elapsed=time.monotonic() - began, notes=NOTES + problems)
    write(results, args.out)
    if problems:
        log(f"errors during the run (see Notes); logs kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def errors(results: dict[str, Any]) -> list[str]:
    """Return a note for every failed call the sections saw (none in a clean run)."""
    notes = []
    for name, c in results.get("contention", {}).items():
        if c["errors"]:
            count, first = len(c["errors"]), c["errors"][0]
            notes.append(f"ERROR: {count} contention callers of {name} failed, e.g. {first}")
    for name, rounds in results.get("http", {}).items():
        failed = sum(r["errors"] for r in rounds)
        if failed:
            notes.append(f"ERROR: {failed} HTTP requests to {name} did not answer 202")
    return notes


def run_sections(sections: list[str], cfg: dict[str, Any], url: str, workdir: Path) -> dict[str, Any]:
    """Run the chosen sections in order; return their results and the machine line."""
    from bench import contention, end_to_end, start_cost, store_scale
    from bench.measure import machine
    from bench.peer_app import create_peer_app
    from bench.profile import profile_calls
    from bench.report import targets
    from bench.tools import OURS, PLAIN, build_tools
    from proj import app

    admin = redis.Redis.from_url(url)
    results: dict[str, Any] = {"machine": machine(admin.info("server")["redis_version"]), "profiles": {}}
    tools = build_tools(app, create_peer_app(store_scale.db_url(url, PEER_DB)))
    reps = cfg["repetitions"]

    def missed(prefix: str) -> bool:
        return any(not t.met and t.text.startswith(prefix) for t in targets(results))

    if "start" in sections:
        log("== 1. start cost")
        results["start"] = start_cost.run(
            list(tools.values()), admin, calls=cfg["start_calls"], repetitions=reps,
            count_calls=cfg["count_calls"], log=log)
        results["start_pairs"] = start_cost.paired(
            tools[OURS], tools[PLAIN], pairs=cfg["pairs"], calls=cfg["pair_calls"])
        log(f"start_new / plain chain over {cfg['pairs']} interleaved pairs: throughput "
            f"{results['start_pairs']['throughput'].text()}, CPU per start "
            f"{results['start_pairs']['cpu'].text()}")
        if missed("start_new >="):
            ours = tools[OURS]
            results["profiles"]["start_new (client side, pyinstrument)"] = profile_calls(
                lambda: ours.start(os.urandom(16).hex()), cfg["profile_calls"])
    if "contention" in sections:
        log("== 2. contention")
        results["contention"] = contention.run(
            list(tools.values()), threads=cfg["threads"], repetitions=reps, log=log)
    _flush(url, 0, PEER_DB)
    if "http" in sections:
        log("== 3. HTTP")
        from bench.http_start import compare, profile_endpoint

        shape = {"processes": cfg["http_processes"], "threads": cfg["http_threads"],
                 "workers": cfg["http_workers"]}
        # Many short interleaved rounds: their paired ratios give the figure and its spread.
        results["http"] = compare(url, rounds=cfg["http_rounds"], seconds=cfg["http_seconds"], log=log,
                                  **shape)
        if missed("HTTP"):
            results["profiles"]["HTTP start endpoint (gunicorn workers, py-spy)"] = profile_endpoint(
                url, "start_new", seconds=cfg["http_seconds"], **shape)
        _flush(url, 0)
    if "e2e" in sections:
        log("== 4. end to end")
        options = {"runs": cfg["runs"], "concurrency": cfg["concurrency"], "timeout": cfg["e2e_timeout"]}
        # Many short interleaved batches on one worker: their paired ratios give the figure.
        results["e2e"] = end_to_end.run(app, dict(os.environ), workdir, repetitions=cfg["e2e_pairs"], log=log,
                                        **{**options, "runs": cfg["e2e_runs"]})
        if missed("end-to-end"):
            results["profiles"]["HelloSequence batch (worker processes, py-spy)"] = end_to_end.profile(
                app, dict(os.environ), workdir, **options)
        _flush(url, 0)
    if "scale" in sections:
        log("== 5. record store scale")
        results["scale"] = store_scale.run(
            url, sizes=cfg["sizes"], first_db=SCALE_FIRST_DB, calls=cfg["scale_calls"], repetitions=reps,
            processes=cfg["fill_processes"], log=log)
        largest_db = store_scale.db_url(url, SCALE_FIRST_DB + len(cfg["sizes"]) - 1)
        calls = cfg["profile_calls"] // 10
        if missed("a list page"):
            label = f"list page at {max(cfg['sizes']):,} records (pyinstrument)"
            results["profiles"][label] = store_scale.profile_page(largest_db, calls)
        if missed("(section 5: must stay flat) a list page filtered"):
            label = f"list page filtered by status at {max(cfg['sizes']):,} records (pyinstrument)"
            results["profiles"][label] = store_scale.profile_page(largest_db, calls, filtered=True)
    if "scale-out" in sections:
        log("== 6. scale-out: RabbitMQ broker, replica-confirmed claims")
        from bench import scale_out

        results["scale_out"] = scale_out.run(
            app, dict(os.environ), workdir, calls=cfg["start_calls"], runs=cfg["runs"], repetitions=reps,
            concurrency=cfg["concurrency"], timeout=cfg["e2e_timeout"], log=log)
    if "scripts" in sections:
        log("== 7. script time per 3-step run")
        from bench import script_time

        results["scripts"] = script_time.run(
            app, dict(os.environ), workdir, url=url, runs=cfg["script_runs"],
            micro_runs=cfg["script_alone_runs"], repetitions=reps, timeout=cfg["e2e_timeout"], log=log)
        _flush(url, 0)
    return results


def _flush(url: str, *dbs: int) -> None:
    # Messages nobody consumed and records of started runs: the next section starts clean.
    from bench.store_scale import db_url

    for db in dbs:
        client = redis.Redis.from_url(db_url(url, db))
        client.flushdb()
        client.close()


def write(results: dict[str, Any], out: Path) -> None:
    """Print the targets, write BENCHMARKS.md and the plot into `out`."""
    from bench.report import PLOT_NAME, markdown, plot, targets

    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / PLOT_NAME)
    text = markdown(results, HEADER, PLOT_NAME)
    (out / "BENCHMARKS.md").write_text(text)
    log("")
    log(text[text.index("## Machine"):])
    for t in targets(results):
        log(f"target: {t.text}: {t.measured} -> {t.verdict}")
    log(f"wrote {out / 'BENCHMARKS.md'} and {out / PLOT_NAME}")


if __name__ == "__main__":
    sys.exit(main())
