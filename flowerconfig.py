"""Flower's settings, read from the working directory by ``celery -A proj flower``.

The task list shows the kwargs column: each step's run label (instance ID,
orchestrator, run ID) is at the front of it, so a run's steps can be told apart.
"""

tasks_columns = "name,uuid,state,kwargs,received,started,runtime,worker"
