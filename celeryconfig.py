"""Celery settings for proj: the one place configuration enters a worker or client.

Broker and result backend come from REDIS_URL, or from CELERY_BROKER_URL and
CELERY_RESULT_BACKEND when those are set: ``amqp://`` for RabbitMQ, ``sentinel://``
(with REDIS_SENTINEL_MASTER) for Redis Sentinel. Each SINGLETON_* variable overrides
the matching singleton_* setting (see README, "Configuration" and "Deploying at scale").
"""

import os

from singleton.logs import WORKER_LOG_FORMAT, WORKER_TASK_LOG_FORMAT
from singleton.recovery import reconcile_entry
from singleton.schedules import singleton_entry
from singleton.settings import REDIS_VISIBILITY_TIMEOUT, Settings, environ_conf, is_amqp

_env = os.environ
_redis_url = _env.get("REDIS_URL", "redis://127.0.0.1:6379/0")

broker_url = _env.get("CELERY_BROKER_URL", _redis_url)
result_backend = _env.get("CELERY_RESULT_BACKEND", _redis_url)

# JSON only: a pickled message is refused by workers and clients alike.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# A step whose worker dies is redelivered, not lost. A step must finish within the
# visibility timeout or it is redelivered while still running (the step lease then
# keeps the second delivery from running it twice at once).
task_acks_late = True
worker_prefetch_multiplier = 1
broker_transport_options = {
    "visibility_timeout": int(_env.get("SINGLETON_VISIBILITY_TIMEOUT", REDIS_VISIBILITY_TIMEOUT)),
    # How often a live worker looks for unacked messages past the visibility timeout.
    "unacked_restore_interval": int(_env.get("BROKER_RESTORE_INTERVAL", "10")),
    "unacked_restore_throttle": 1,
}
if is_amqp(globals()):
    # RabbitMQ confirms each publish: a start answers 202 only once the broker has
    # its message (Celery's advice for quorum queues, and cheap on classic ones).
    broker_transport_options = {"confirm_publish": True}
    # CELERY_QUEUE_TYPE=quorum: replicated queues; countdowns then use RabbitMQ's
    # native delayed delivery, which needs a topic exchange.
    task_default_queue_type = _env.get("CELERY_QUEUE_TYPE", "classic")
    if task_default_queue_type == "quorum":
        task_default_exchange_type = "topic"
# Redis Sentinel (sentinel://host:26379;sentinel://host2:26379): the master's name.
if _env.get("REDIS_SENTINEL_MASTER"):
    broker_transport_options["master_name"] = _env["REDIS_SENTINEL_MASTER"]
    result_backend_transport_options = {"master_name": _env["REDIS_SENTINEL_MASTER"]}
result_extended = True
# A failing member of a group inside a chain calls the run's errback (the run fails).
task_allow_error_cb_on_chord_header = True
worker_deduplicate_successful_tasks = True
broker_connection_retry_on_startup = True
enable_utc = True

# Each SINGLETON_<NAME> variable that is set gives singleton_<name> (see
# singleton.settings.FROM_ENVIRONMENT); every default lives in singleton.Settings,
# max_countdown's included: half the visibility timeout above unless set.
globals().update(environ_conf(_env))

# -- Operations -----------------------------------------------------------------
# Flower shows only what task events carry. Workers send theirs (received, started,
# succeeded...: each step's arguments, run label and outcome) unless TASK_EVENTS=0.
# The "sent" event shows a task still queued; it costs every publish (plain Celery's
# too) one Redis PUBLISH. TASK_SENT_EVENTS=0 turns it off where Flower is not used.
_OFF = ("", "0", "false", "no")
worker_send_task_events = _env.get("TASK_EVENTS", "1").lower() not in _OFF
task_send_sent_event = _env.get("TASK_SENT_EVENTS", "1").lower() not in _OFF
# Every line a step logs names its instance and run (singleton/logs.py).
worker_log_format = WORKER_LOG_FORMAT
worker_task_log_format = WORKER_TASK_LOG_FORMAT

# Periodic singleton jobs: each tick starts the orchestrator under a fixed instance ID
# through the worker-side starter task; overlap says what a tick does while the previous
# run is still live (skip, buffer_one or terminate_other; see singleton/schedules.py).
# The stuck-run reconciler (singleton.recovery) also runs from beat.
beat_schedule = {
    "singleton-reconcile": reconcile_entry(Settings.from_conf(globals()).reconcile_interval),
    # Syncs the inventory every 30 s; a sync with many changes takes longer than that,
    # and the ticks that fall inside it are skipped (logged and counted).
    "sync-inventory": singleton_entry(
        "SyncInventory", "inventory-sync", schedule=30.0, input={"max_changes": 400}, overlap="skip"
    ),
}
