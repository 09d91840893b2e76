"""The singleton layer's settings: every default, read once from the Celery app's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidSettings

DAY = 24 * 60 * 60
# Kombu's Redis transport redelivers an unacked message after this many seconds
# unless broker_transport_options["visibility_timeout"] says otherwise.
REDIS_VISIBILITY_TIMEOUT = 3600.0
# RabbitMQ closes a channel whose delivery stays unacked longer than its
# consumer_timeout (rabbitmq.conf; 30 minutes by default), and a worker holds a
# countdown message unacked until it is due.
RABBITMQ_CONSUMER_TIMEOUT = 1800.0
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
# The settings a deployment may set from a SINGLETON_<NAME> environment variable
# (celeryconfig.py reads them; see environ_conf).
FROM_ENVIRONMENT = ("key_prefix", "retention", "step_lease", "max_countdown", "run_lease",
                    "reconcile_interval", "consumer_timeout", "max_events", "max_payload",
                    "store_url", "min_replicas", "replica_timeout")


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
        reconcile_interval: seconds between two passes of the reconciler (beat); it
            sends again a step whose lease ran out (its worker died), so such a step
            runs again within ``step_lease + reconcile_interval``. Unset, it is the
            smaller of 30 s and the step lease.
        max_countdown: the longest countdown a timer message is given, in seconds;
            longer waits hop. Unset, it is half the broker's visibility timeout (Redis
            broker), so a held message is never delivered twice, or half
            ``consumer_timeout`` (RabbitMQ), so a held message never closes the channel.
        consumer_timeout: RabbitMQ's ``consumer_timeout`` in seconds, as the broker is
            configured (server side, which a client cannot read): on an amqp broker,
            countdowns and step leases must stay below it.
        max_events: how many events one instance may buffer (raised with no wait
            taking them); one more is refused (TooManyEvents, HTTP 429).
        max_payload: the largest start input or event data accepted, in bytes of
            JSON; a larger one is refused (PayloadTooLarge, HTTP 413). The HTTP API's
            MAX_CONTENT_LENGTH bounds request bodies before they are read.
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
    max_events: int = 1000
    max_payload: int = 4 * 1024 * 1024
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
        if "reconcile_interval" not in values:
            step_lease = values.get("step_lease", cls.step_lease)
            values["reconcile_interval"] = min(cls.reconcile_interval, step_lease)
        if "max_countdown" not in values:
            held = visibility_timeout(conf)
            if is_amqp(conf):
                held = values.get("consumer_timeout", cls.consumer_timeout)
            values["max_countdown"] = held / 2
        return cls(**values)


def is_amqp(conf: Mapping[str, Any]) -> bool:
    """Return True when the app's broker is RabbitMQ (an AMQP URL)."""
    return broker_kind(conf) == "amqp"


def visibility_timeout(conf: Mapping[str, Any]) -> float:
    """Return the broker's visibility timeout in seconds, as the Redis transport uses it."""
    options = conf.get("broker_transport_options") or {}
    return float(options.get("visibility_timeout", REDIS_VISIBILITY_TIMEOUT))


def broker_kind(conf: Mapping[str, Any]) -> str:
    """Return "redis", "amqp" or "other" for the app's broker URL ("other" when unset)."""
    url = conf.get("broker_url") or ""
    first = (url if isinstance(url, str) else ";".join(url)).split(";")[0]
    scheme = urlsplit(first).scheme.lower()
    return "redis" if scheme in REDIS_SCHEMES else "amqp" if scheme in AMQP_SCHEMES else "other"


def check_timings(settings: Settings, conf: Mapping[str, Any]) -> None:
    """Refuse timing settings that contradict each other or the broker's own timeouts.

    Raises:
        InvalidSettings: one line naming the setting and the contradiction.
    """
    for name in ("step_lease", "run_lease", "reconcile_interval", "max_countdown"):
        if getattr(settings, name) <= 0:
            raise InvalidSettings(name, f"must be above 0 s, not {getattr(settings, name):g} s.")
    if settings.reconcile_interval > settings.step_lease:
        raise InvalidSettings("reconcile_interval", (
            f"{settings.reconcile_interval:g} s is longer than singleton_step_lease "
            f"({settings.step_lease:g} s): a dead worker's step would run again only after more "
            "than two step leases."))
    kind = broker_kind(conf)
    if kind == "other":
        return
    held, what = (visibility_timeout(conf), "the broker's visibility_timeout") if kind == "redis" \
        else (settings.consumer_timeout, "RabbitMQ's consumer_timeout (singleton_consumer_timeout)")
    # Both are countdowns a worker holds unacked: a timer's hop, a busy step's wait.
    for name, why in (("max_countdown", "a timer's countdown"),
                      ("step_lease", "a busy step's wait (up to one step lease)")):
        if getattr(settings, name) >= held:
            raise InvalidSettings(name, (
                f"{getattr(settings, name):g} s is not below {what} ({held:g} s): "
                f"{why} would be delivered twice (Redis) or close its channel (RabbitMQ)."))


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
