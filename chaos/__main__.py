"""``python -m chaos [--seconds S] [--seed N] [--out DIR] [--broker URL] [--timings T]``: run, check, report.

Prints a summary, writes ``report.json`` in the run's directory, and exits 1 when
any invariant was violated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from singleton.settings import Settings

from .stack import TIMINGS, VARIABLES, Stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="load and faults (default 300)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: a temp dir)")
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL", ""),
                        help="broker URL (default: CELERY_BROKER_URL, else the run's own Redis)")
    parser.add_argument("--timings", choices=sorted(TIMINGS),
                        default=os.environ.get("CHAOS_TIMINGS", "defaults"),
                        help="the library's shipped defaults (default: CHAOS_TIMINGS, else defaults), "
                             "or short leases for a short run")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="chaos-"))
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(out, broker_url=args.broker, timings=args.timings)
    # The driver and checker read records through the library: point it at the stack.
    for name in VARIABLES:
        os.environ.pop(name, None)
    os.environ.update({k: v for k, v in stack.env.items()
                       if k in (*VARIABLES, "REDIS_URL", "CELERY_BROKER_URL")})
    settings = stack.settings()
    print(f"chaos: {args.seconds:.0f} s of load and faults, seed {args.seed}, {args.timings} timings "
          f"(step lease {settings.step_lease:g} s, run lease {settings.run_lease:g} s, reconciler every "
          f"{settings.reconcile_interval:g} s), logs in {out}", flush=True)
    stack.start()
    try:
        from .checker import check
        from .driver import Driver

        driver = Driver(stack, args.seconds, args.seed)
        driver.run()
        quiet = quiet_period(settings, stack.visibility_timeout() if args.timings == "short" else 0.0)
        print(f"chaos: load stopped; quiet for {quiet:.0f} s", flush=True)
        time.sleep(quiet)
        report = check(driver, stack.log_dir, time.time(), grace=quiet)
    finally:
        stack.stop()
    report["seed"], report["seconds"], report["timings"] = args.seed, args.seconds, args.timings
    report["settings"] = {"step_lease": settings.step_lease, "run_lease": settings.run_lease,
                          "reconcile_interval": settings.reconcile_interval, "quiet": quiet}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    summary = {k: v for k, v in report.items() if k != "details"}
    print(json.dumps(summary, indent=2, default=str))
    failed = sum(report["violations"].values())
    verdict = "FAILED" if failed else "passed"
    print(f"chaos: {verdict}: {failed} violation(s); report in {out / 'report.json'}")
    return 1 if failed else 0


def quiet_period(settings: Settings, redelivery: float) -> float:
    """Return how long the stack stays quiet after the load before the checker looks.

    Long enough for every recovery the layer makes: a dead worker's step (or a kept
    group member) is sent again a step lease after its last sign of life and may then
    take up to another; a step whose successor was lost is handed on once its run was
    silent for the run lease; two reconciler passes on top, and `redelivery` when
    the broker's own redelivery is part of the test (the short timings' 10 s
    visibility timeout; under the defaults the layer must not need it).
    """
    return max(2 * settings.step_lease, settings.run_lease, redelivery) + 2 * settings.reconcile_interval + 5


if __name__ == "__main__":
    sys.exit(main())
