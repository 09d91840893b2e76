"""gunicorn settings for the API: ``gunicorn -c api/gunicorn_conf.py proj.web:app``.

With ``PROMETHEUS_MULTIPROC_DIR`` set (make run sets it to an emptied directory),
every gunicorn worker writes its metrics there and each scrape adds them up; a
worker that exits has its live gauges dropped (its counters stay counted).
"""

import os

from prometheus_client import multiprocess


def child_exit(server, worker):
    """Drop the exited worker's live gauge files (prometheus_client multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
