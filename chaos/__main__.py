"""``python -m chaos [--seconds S] [--seed N] [--out DIR] [--broker URL]``: run, check, report.

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

from .stack import SETTINGS, Stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="load and faults (default 300)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: a temp dir)")
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL", ""),
                        help="broker URL (default: CELERY_BROKER_URL, else the run's own Redis)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="chaos-"))
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(out, broker_url=args.broker)
    # The driver and checker read records through the library: point it at the stack.
    os.environ.update({k: v for k, v in stack.env.items()
                       if k in (*SETTINGS, "REDIS_URL", "CELERY_BROKER_URL")})
    print(f"chaos: {args.seconds:.0f} s of load and faults, seed {args.seed}, logs in {out}", flush=True)
    stack.start()
    try:
        from .checker import check
        from .driver import Driver

        driver = Driver(stack, args.seconds, args.seed)
        driver.run()
        # Quiet period: the run lease, two reconciler passes and a visibility timeout.
        quiet = float(SETTINGS["SINGLETON_RUN_LEASE"]) + 2 * float(SETTINGS["SINGLETON_RECONCILE_INTERVAL"]) \
            + float(SETTINGS["SINGLETON_VISIBILITY_TIMEOUT"]) + 5
        print(f"chaos: load stopped; quiet for {quiet:.0f} s", flush=True)
        time.sleep(quiet)
        report = check(driver, stack.log_dir, time.time(), grace=quiet)
    finally:
        stack.stop()
    report["seed"], report["seconds"] = args.seed, args.seconds
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    summary = {k: v for k, v in report.items() if k != "details"}
    print(json.dumps(summary, indent=2, default=str))
    failed = sum(report["violations"].values())
    verdict = "FAILED" if failed else "passed"
    print(f"chaos: {verdict}: {failed} violation(s); report in {out / 'report.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
