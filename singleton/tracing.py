"""OpenTelemetry traces that know runs: one trace per run, from the start that claimed it.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over HTTP) or
``OTEL_TRACES_EXPORTER`` is ``otlp`` or ``console``; read once per process. Off,
``install()`` connects nothing and stamps nothing: a start costs what it did.

On, the Celery instrumentation makes its ``apply_async/<task>`` and ``run/<task>``
spans (context in the message headers) and the WSGI middleware a span per API
request. This module adds what neither knows:

- The first publish of a run opens a ``singleton.run <orchestrator>`` span, a child of
  whatever claimed the ID (the HTTP request, the beat tick's task), and stamps its
  traceparent on every task of the run (``singleton_trace``). Stamps travel with the
  chain, into parked state (events, suspend) and retries, so a step published later
  from elsewhere (``raise_event`` in an API request, ``resume``, a timer) is put back
  into the run's trace, with a link to the span that published it.
- A run made by continue-as-new opens a new trace, linked to the previous run's span.
- Every span of a run carries ``singleton.instance_id``, ``singleton.run_id`` and
  ``singleton.orchestrator``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from celery import Celery, current_task
from celery.signals import after_task_publish, before_task_publish, task_prerun
from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .runs import RunIdentity

logger = logging.getLogger(__name__)

STAMP_TRACE = "singleton_trace"
ATTR_INSTANCE = "singleton.instance_id"
ATTR_RUN = "singleton.run_id"
ATTR_ORCHESTRATOR = "singleton.orchestrator"
EXPORTERS = ("otlp", "console")


def exporter_name(env: Mapping[str, str]) -> str | None:
    """Return the span exporter the environment asks for (None: tracing is off)."""
    chosen = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if chosen in EXPORTERS:
        return chosen
    if not chosen and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None


EXPORTER = exporter_name(os.environ)
ENABLED = EXPORTER is not None

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer(__name__)
# Publishes whose context was switched to their run's, per thread: task id -> (token,
# publisher's span). A publish that raised never reached after_task_publish: the next
# publish of the thread finds its entry and restores the context first.
_local = threading.local()
_installed: list[bool] = []


def install(app: Celery | None = None) -> None:
    """Trace this process when tracing is on (idempotent); do nothing otherwise."""
    if not ENABLED or _installed:
        return
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # only when on

    _installed.append(True)
    provider = _provider()
    trace.set_tracer_provider(provider)
    global _tracer
    _tracer = provider.get_tracer(__name__)
    # Order matters: Celery calls receivers in the order they connected.
    before_task_publish.connect(_enter_run_context, weak=False)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    before_task_publish.connect(_label_publish, weak=False)
    after_task_publish.connect(_leave_run_context, weak=False)
    task_prerun.connect(_label_step, weak=False)


def instrument_wsgi(flask_app: Any) -> None:
    """Give each API request a span when tracing is on; do nothing otherwise."""
    if not ENABLED:
        return
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware  # only when on

    flask_app.wsgi_app = OpenTelemetryMiddleware(flask_app.wsgi_app)


def _provider() -> Any:
    # The SDK reads OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_*
    # and OTEL_BSP_* itself. Its batch processor restarts its thread in forked children.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": _service_name()}))
    if EXPORTER == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or "singleton"


# -- the run's context on every publish --------------------------------------------------
def _stamps(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: _single(v) for k, v in ((headers or {}).get("stamps") or {}).items()}


def _single(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def _attributes(identity: RunIdentity) -> dict[str, str]:
    return {ATTR_INSTANCE: identity.instance_id, ATTR_RUN: identity.run_id, ATTR_ORCHESTRATOR: identity.name}


def _enter_run_context(sender: Any = None, body: Any = None, headers: dict | None = None, **_: Any) -> None:
    _restore_failed_publishes()
    stamps = _stamps(headers)
    identity = RunIdentity.from_stamps(stamps)
    if identity is None:
        return
    carrier = stamps.get(STAMP_TRACE)
    publisher = trace.get_current_span()
    if carrier is None:
        run_context = _open_run(identity, publisher)
        carrier = _traceparent(run_context)
        _stamp(headers, body, carrier)
    else:
        run_context = _propagator.extract({"traceparent": carrier}, context=Context())
    run_trace = trace.get_current_span(run_context).get_span_context().trace_id
    if publisher.get_span_context().trace_id != run_trace:
        token = context.attach(run_context)
        _switched()[headers.get("id") or ""] = (token, publisher.get_span_context())


def _switched() -> dict[str, tuple[object, trace.SpanContext]]:
    switched = getattr(_local, "switched", None)
    if switched is None:
        switched = _local.switched = {}
    return switched


def _restore_failed_publishes() -> None:
    switched = _switched()
    while switched:
        _, (token, _) = switched.popitem()
        context.detach(token)


def _open_run(identity: RunIdentity, publisher: trace.Span) -> Context:
    # The run's own span: a child of what claimed it, or, for a run made by
    # continue-as-new inside a step of the previous run, the root of a new trace.
    attributes = _attributes(identity)
    links = None
    parent = None
    previous = _current_run()
    if previous is not None and previous.run_id != identity.run_id:
        parent = Context()
        links = [trace.Link(publisher.get_span_context(), {ATTR_RUN: previous.run_id})]
    elif publisher.is_recording():
        publisher.set_attributes(attributes)
    span = _tracer.start_span(f"singleton.run {attributes[ATTR_ORCHESTRATOR]}", context=parent,
                              links=links, attributes=attributes, kind=trace.SpanKind.INTERNAL)
    span.end()
    return trace.set_span_in_context(span, Context())


def _current_run() -> RunIdentity | None:
    task = current_task._get_current_object()
    return None if task is None else RunIdentity.from_request(task.request)


def _traceparent(run_context: Context) -> str:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=run_context)
    return carrier["traceparent"]


def _stamp(headers: dict, body: Any, carrier: str) -> None:
    # On this message, and on the rest of its chain, which later publishes copy.
    headers["stamps"] = {**(headers.get("stamps") or {}), STAMP_TRACE: carrier}
    headers["stamped_headers"] = [*(headers.get("stamped_headers") or ()), STAMP_TRACE]
    embed = body[2] if isinstance(body, tuple | list) and len(body) == 3 else None
    for step in (embed or {}).get("chain") or ():
        options = step.setdefault("options", {})
        options[STAMP_TRACE] = carrier
        options["stamped_headers"] = [*(options.get("stamped_headers") or ()), STAMP_TRACE]


def _label_publish(sender: Any = None, headers: dict | None = None, **_: Any) -> None:
    # Runs after the instrumentation opened the apply_async span: label it.
    identity = RunIdentity.from_stamps(_stamps(headers))
    if identity is None:
        return
    span = trace.get_current_span()
    span.set_attributes(_attributes(identity))
    switched = _switched().get((headers or {}).get("id") or "")
    if switched is not None and switched[1].is_valid:
        span.add_link(switched[1], {"singleton.link": "published by"})


def _leave_run_context(sender: Any = None, headers: dict | None = None, **_: Any) -> None:
    switched = _switched().pop((headers or {}).get("id") or "", None)
    if switched is not None:
        context.detach(switched[0])


def _label_step(sender: Any = None, task: Any = None, **_: Any) -> None:
    # Runs after the instrumentation opened the run/<task> span.
    identity = RunIdentity.from_request(getattr(task, "request", None))
    if identity is not None:
        trace.get_current_span().set_attributes(_attributes(identity))
