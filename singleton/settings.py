"""The singleton layer's settings: every default, read once from the Celery app's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

DAY = 24 * 60 * 60
# Kombu's Redis transport redelivers an unacked message after this many seconds
# unless broker_transport_options["visibility_timeout"] says otherwise.
REDIS_VISIBILITY_TIMEOUT = 3600.0
# RabbitMQ closes a channel whose delivery stays unacked longer than its
# consumer_timeout (rabbitmq.conf; 30 minutes by default), and a worker holds a
# countdown message unacked until it is due.
RABBITMQ_CONSUMER_TIMEOUT = 1800.0
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
# The settings a deployment may set from a SINGLETON_<NAME> environment variable
# (celeryconfig.py reads them; see environ_conf).
FROM_ENVIRONMENT = ("key_prefix", "retention", "step_lease", "max_countdown", "run_lease",
                    "reconcile_interval", "store_url", "min_replicas", "replica_timeout",
                    "consumer_timeout")


@dataclass(frozen=True)
class Settings:
    """Tunables of the singleton layer; each is a ``singleton_<name>`` Celery setting.

    The defaults below are the only ones: a setting the app's configuration leaves
    out gets its default here, and ``max_countdown`` is derived from the broker's
    visibility timeout when it is not set.

    Attributes:
        key_prefix: prefix of every Redis key the layer writes.
        retention: seconds a terminal record is kept before it expires.
        step_lease: seconds a running step's lease lasts without renewal; a worker
            renews it every third of that while the step runs.
        max_connections: size of the per-process Redis connection pool.
        connection_wait: seconds a call waits for a free pooled connection.
        run_lease: seconds a live run may go without a sign of life (a step starting
            or ending, a running step's heartbeat) before the reconciler fails it as
            lost; the default of orchestrators that set no ``lease``.
        reconcile_interval: seconds between two passes of the reconciler (beat).
        max_countdown: the longest countdown a timer message is given, in seconds;
            longer waits hop. Unset, it is half the broker's visibility timeout (Redis
            broker), so a held message is never delivered twice, or half
            ``consumer_timeout`` (RabbitMQ), so a held message never closes the channel.
        consumer_timeout: RabbitMQ's ``consumer_timeout`` in seconds, as the broker
            is configured (the layer cannot read it); only ``max_countdown``'s
            default uses it.
        store_url: the Redis the records live in: ``redis://``, ``rediss://`` or a
            Redis Cluster as ``redis+cluster://host:port[,host:port...]`` (or
            ``rediss+cluster://``). Empty: the result backend's server and options,
            Sentinel included.
        min_replicas: replicas that must confirm a claim (Redis ``WAIT``) before a
            start is accepted; 0 does not wait. A claim they do not confirm within
            ``replica_timeout`` is given back and the start answers 503.
        replica_timeout: seconds a claim waits for ``min_replicas``.
    """

    key_prefix: str = "singleton"
    retention: float = 7 * DAY
    step_lease: float = 60.0
    max_connections: int = 50
    connection_wait: float = 10.0
    max_countdown: float = REDIS_VISIBILITY_TIMEOUT / 2
    run_lease: float = 300.0
    reconcile_interval: float = 30.0
    consumer_timeout: float = RABBITMQ_CONSUMER_TIMEOUT
    store_url: str = ""
    min_replicas: int = 0
    replica_timeout: float = 1.0

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> Settings:
        """Build settings from a Celery ``app.conf`` (or any mapping of settings).

        A setting missing (or None) there takes its default; values given as text,
        as environment variables are, are converted to the setting's type.
        """
        values = {}
        for field in fields(cls):
            value = conf.get(f"singleton_{field.name}")
            if value is not None:
                values[field.name] = type(field.default)(value)
        if "max_countdown" not in values:
            held = values.get("consumer_timeout", RABBITMQ_CONSUMER_TIMEOUT) if is_amqp(conf) \
                else visibility_timeout(conf)
            values["max_countdown"] = held / 2
        return cls(**values)


def is_amqp(conf: Mapping[str, Any]) -> bool:
    """Return True when the app's broker is RabbitMQ (an AMQP URL)."""
    url = conf.get("broker_url") or ""
    return str(url).split(";")[0].split("://")[0] in AMQP_SCHEMES


def visibility_timeout(conf: Mapping[str, Any]) -> float:
    """Return the broker's visibility timeout in seconds, as the Redis transport uses it."""
    options = conf.get("broker_transport_options") or {}
    return float(options.get("visibility_timeout", REDIS_VISIBILITY_TIMEOUT))


def environ_conf(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the ``singleton_<name>`` settings that SINGLETON_<NAME> variables set.

    Only variables that are set appear: the others leave their setting to the
    defaults of ``Settings``.
    """
    return {
        f"singleton_{name}": environ[f"SINGLETON_{name.upper()}"]
        for name in FROM_ENVIRONMENT
        if f"SINGLETON_{name.upper()}" in environ
    }
