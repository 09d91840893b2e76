"""The Celery app (``celery -A proj worker``), wired to the singleton layer."""

from celery import Celery

import singleton

app = Celery(
    "proj",
    task_cls=singleton.SingletonTask,
    # Flower shows each step's instance ID and orchestrator (singleton/monitoring.py).
    amqp="singleton.monitoring:RunLabelAMQP",
    include=["proj.tasks", "proj.orchestrators"],
)
app.config_from_object("celeryconfig")
singleton.init_app(app)
