"""``make bench-http``: the singleton start endpoint vs a bare Flask chain.apply_async endpoint.

Both run under the same gunicorn settings (4 sync workers) against one private Redis
server, with no Celery worker (the published messages just queue up). A loopback
load generator (processes x threads, a new connection per request, as gunicorn's
sync workers close them) drives each endpoint for a few seconds, interleaved over
several rounds. Prints requests/s, p50 and p99 per round, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from proj.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.85
ENDPOINTS = {
    "start_new": ("proj.web:app", "/api/orchestrators/HelloSequence"),
    "bare": ("bench.bare_app:create_app()", "/bare/HelloSequence"),
}


def start_gunicorn(app_spec: str, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "--log-level", "warning", app_spec]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"gunicorn {app_spec} did not come up")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _load_process(port: int, path: str, threads: int, seconds: float, out) -> None:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def loop() -> None:
        nonlocal errors
        mine, bad = [], 0
        while time.monotonic() < end:
            began = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("POST", path, body=b"", headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.status != 202:
                    bad += 1
            except OSError:
                bad += 1
            finally:
                conn.close()
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)
            errors += bad

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors))


def drive(port: int, path: str, seconds: float, processes: int, threads: int) -> dict[str, float]:
    """Load one endpoint for `seconds`; return requests/s, p50 and p99 (ms), errors."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_load_process, args=(port, path, threads, seconds, out))
             for _ in range(processes)]
    began = time.monotonic()
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        got, bad = out.get(timeout=seconds + 60)
        latencies.extend(got)
        errors += bad
    elapsed = time.monotonic() - began
    for p in procs:
        p.join(30)
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": 1000 * latencies[len(latencies) // 2],
        "p99": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": errors,
    }


def compare(
    redis_url: str, *, rounds: int, seconds: float, processes: int, threads: int, workers: int,
    log=print,
) -> dict[str, list[dict[str, float]]]:
    """Drive both endpoints, interleaved, against the Redis server at `redis_url`.

    Args:
        redis_url: the Redis server both apps publish to (a private one; nothing consumes).
        rounds: interleaved rounds; each round measures every endpoint once.
        seconds: measured seconds per endpoint and round (after a 1 s warm-up).
        processes, threads: the load generator's shape.
        workers: gunicorn sync workers per app.
        log: where progress lines go.

    Returns:
        Per endpoint name, one dict per round: rps, p50 and p99 (ms), errors.
    """
    env = _env(redis_url)
    running = {}
    try:
        for name, (spec, _) in ENDPOINTS.items():
            running[name] = start_gunicorn(spec, env, workers)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in ENDPOINTS}
        log(f"{os.cpu_count()} cores; gunicorn -w {workers}; load {processes} processes x "
            f"{threads} threads; {rounds} interleaved rounds of {seconds:g} s")
        for n in range(rounds):
            order = list(ENDPOINTS) if n % 2 == 0 else list(reversed(ENDPOINTS))
            for name in order:
                drive(running[name][1], ENDPOINTS[name][1], 1.0, processes, threads)  # warm
                r = drive(running[name][1], ENDPOINTS[name][1], seconds, processes, threads)
                results[name].append(r)
                log(f"round {n + 1} {name:9s} {r['rps']:8.1f} req/s  p50 {r['p50']:6.2f} ms  "
                    f"p99 {r['p99']:6.2f} ms  errors {r['errors']}")
        return results
    finally:
        for proc, _ in running.values():
            stop(proc)


def profile_endpoint(
    redis_url: str, name: str, *, seconds: float, processes: int, threads: int, workers: int
) -> dict:
    """Sample endpoint `name`'s gunicorn workers with py-spy while it is driven for `seconds`."""
    from bench.profile import profile_process

    env = _env(redis_url)
    proc, port = start_gunicorn(ENDPOINTS[name][0], env, workers)
    try:
        path = ENDPOINTS[name][1]
        drive(port, path, 1.0, processes, threads)  # warm
        return profile_process(proc.pid, lambda: drive(port, path, seconds, processes, threads))
    finally:
        stop(proc)


def _env(redis_url: str) -> dict[str, str]:
    env = {**os.environ, "REDIS_URL": redis_url, "API_AUTH": "anonymous"}
    env.pop("API_KEYS", None)
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-http-")), appendonly=False).start()
    try:
        results = compare(
            server.url, rounds=args.rounds, seconds=args.seconds, processes=args.processes,
            threads=args.threads, workers=args.workers, log=lambda line: print(line, flush=True),
        )
        return report(results)
    finally:
        server.stop()


def report(results: dict[str, list[dict[str, float]]]) -> int:
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99")}
           for name, rs in results.items()}
    for name, m in med.items():
        spread = [r["rps"] for r in results[name]]
        print(f"median {name:9s} {m['rps']:8.1f} req/s (min {min(spread):.1f}, max {max(spread):.1f})  "
              f"p50 {m['p50']:6.2f} ms  p99 {m['p99']:6.2f} ms")
    ratio = med["start_new"]["rps"] / med["bare"]["rps"]
    verdict = "met" if ratio >= TARGET_RATIO else "not met"
    print(f"ratio start_new / bare = {ratio:.3f} (target >= {TARGET_RATIO}: {verdict})")
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
