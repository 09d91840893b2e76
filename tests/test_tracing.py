"""Traces end to end: gunicorn and a prefork worker export OTLP/HTTP to a receiver that
keeps every span in memory; each run is one trace, across an external event, and a run
made by continue-as-new is a new trace linked to the previous run's.

The module has its own Redis server, so only its own runs make spans.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from celery import Celery
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from proj.redis_server import RedisServer, free_port
from singleton.schedules import START_TASK
from singleton.store import Store
from singleton.tracing import ATTR_INSTANCE, ATTR_ORCHESTRATOR, ATTR_RUN, exporter_name
from tests.probe import release
from tests.test_api_http import Gunicorn, request
from tests.workers import Worker, wait_until

WEBHOOK = "/runtime/webhooks/durabletask"
SERVER_KIND = 2
# The spans of an ApprovalWorkflow run besides the request that started it.
RUN_SPANS = {"singleton.run ApprovalWorkflow", "apply_async/singleton.wait_for_external_event",
             "run/singleton.wait_for_external_event", "apply_async/proj.tasks.approved",
             "run/proj.tasks.approved"}  # opentelemetry.proto.trace.v1.Span.SpanKind SPAN_KIND_SERVER


@dataclass(frozen=True)
class Span:
    """One exported span, as the receiver decoded it."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...]


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class Receiver:
    """An OTLP/HTTP trace endpoint on a free port that keeps what it receives."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.add(ExportTraceServiceRequest.FromString(payload))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, export: ExportTraceServiceRequest) -> None:
        decoded = []
        for resource_spans in export.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    links = tuple((link.trace_id.hex(), link.span_id.hex(),
                                   tuple(sorted(_attributes(link.attributes).items()))) for link in s.links)
                    decoded.append(Span(service, s.name, s.kind, s.trace_id.hex(), s.span_id.hex(),
                                        s.parent_span_id.hex(), _attributes(s.attributes), links))
        with self.lock:
            self.spans.extend(decoded)

    def of_instance(self, instance_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.attributes.get(ATTR_INSTANCE) == instance_id]

    def in_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver):
    base = tmp_path_factory.mktemp("tracing")
    server = RedisServer(base / "redis", appendonly=False).start()
    # The batch processor waits 5 s between exports by default: 100 ms lets the test see
    # a step's span while the run is still waiting.
    env = {"REDIS_URL": server.url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    worker = Worker(base / "worker.log", env={**env, "OTEL_SERVICE_NAME": "worker"}).start()
    # The API imports the probe tasks too, as the worker does (-I tests.probe): the Celery
    # instrumentation labels a publish only of tasks its process knows.
    conf = base / "gunicorn_probe.py"
    conf.write_text("import tests.probe  # noqa: F401\n")
    web_env = {**env, "OTEL_SERVICE_NAME": "api", "GUNICORN_CMD_ARGS": f"-c {conf}"}
    web = Gunicorn(base / "gunicorn.log", workers=2, env=web_env).start()
    web.redis_url = server.url
    yield web
    web.stop()
    worker.stop()
    server.stop()


def status_of(port: int, instance_id: str) -> dict[str, Any]:
    code, _, body = request("GET", port, f"{WEBHOOK}/instances/{instance_id}")
    assert code in (200, 202), body
    return json.loads(body)


def named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]


def test_a_run_is_one_trace_from_the_request_that_started_it_across_an_external_event(stack, receiver):
    port, instance_id = stack.port, f"approval-{uuid.uuid4().hex[:8]}"
    assert request("POST", port, f"/api/orchestrators/ApprovalWorkflow/{instance_id}")[0] == 202
    # The wait step has run (and parked the rest of the chain) once its span is exported.
    wait_until(lambda: named(receiver.of_instance(instance_id), "run/singleton.wait_for_external_event"),
               30, "the wait step's span")
    assert status_of(port, instance_id)["runtimeStatus"] == "Running"
    path = f"{WEBHOOK}/instances/{instance_id}/raiseEvent/Approval"
    assert request("POST", port, path, {"by": "ops"})[0] == 202
    wait_until(lambda: status_of(port, instance_id)["runtimeStatus"] == "Completed", 30, "completion")
    # Each process exports in its own batches: wait until every span of the run arrived,
    # the request that started it included.
    wait_until(lambda: RUN_SPANS | {"server"} <= {
        "server" if s.kind == SERVER_KIND else s.name for s in receiver.of_instance(instance_id)
    }, 30, "every span of the run")

    spans = receiver.of_instance(instance_id)
    assert len({s.trace_id for s in spans}) == 1, "every span of the run is in one trace"
    run_trace = spans[0].trace_id
    trace = receiver.in_trace(run_trace)
    run_id = spans[0].attributes[ATTR_RUN]
    for span in trace:
        assert span.attributes[ATTR_INSTANCE] == instance_id, span
        assert span.attributes[ATTR_RUN] == run_id
        assert span.attributes[ATTR_ORCHESTRATOR] == "ApprovalWorkflow"
    roots = [s for s in trace if not s.parent_id]
    assert len(roots) == 1 and roots[0].kind == SERVER_KIND and roots[0].service == "api"
    assert roots[0].name.startswith("POST /api/orchestrators/ApprovalWorkflow/"), "the start request"
    ids = {s.span_id for s in trace}
    assert all(s.parent_id in ids for s in trace if s.parent_id), "one tree, no orphans"
    assert sorted(s.name for s in trace) == sorted(RUN_SPANS | {roots[0].name})
    # The approved step was published by the raiseEvent request: a link leads there.
    (published,) = named(trace, "apply_async/proj.tasks.approved")
    assert published.service == "api"
    (link,) = published.links
    (publisher,) = wait_until(lambda: [s for s in receiver.in_trace(link[0]) if s.span_id == link[1]],
                              30, "the raiseEvent request's span")
    assert publisher.kind == SERVER_KIND and publisher.name.endswith("/raiseEvent/Approval")
    assert link[0] != run_trace


def test_continue_as_new_starts_a_new_trace_linked_to_the_previous_runs(stack, receiver):
    port, instance_id = stack.port, f"counter-{uuid.uuid4().hex[:8]}"
    body = {"count": 0, "interval": 0.2}
    assert request("POST", port, f"/api/orchestrators/Counter/{instance_id}", body)[0] == 202

    def runs() -> dict[str, set[str]]:
        traces: dict[str, set[str]] = defaultdict(set)
        for span in named(receiver.of_instance(instance_id), "run/proj.tasks.count"):
            traces[span.attributes[ATTR_RUN]].add(span.trace_id)
        return traces

    wait_until(lambda: len(runs()) >= 3, 30, "three runs of the counter")
    assert request("POST", port, f"{WEBHOOK}/instances/{instance_id}/terminate")[0] == 202
    traces = runs()
    assert all(len(t) == 1 for t in traces.values()), "each run is one trace"
    trace_of = {run: next(iter(t)) for run, t in traces.items()}
    assert len(set(trace_of.values())) == len(trace_of), "each run has its own trace"

    def links_to_previous_runs() -> int:
        linked = 0
        for span in named(receiver.of_instance(instance_id), "singleton.run Counter"):
            if not span.links:
                assert span.parent_id, "only the first run's span has a parent (the request)"
                continue
            ((trace_id, _, attributes),) = span.links
            assert not span.parent_id, "a continued run's span is the root of its trace"
            previous = dict(attributes)[ATTR_RUN]
            if previous in trace_of and span.attributes[ATTR_RUN] in trace_of:
                assert trace_id == trace_of[previous], "the link leads to the previous run's trace"
                assert span.trace_id == trace_of[span.attributes[ATTR_RUN]]
                linked += 1
        return linked

    # Each process exports in its own batches: the runs' own spans may come later.
    wait_until(lambda: links_to_previous_runs() >= 2, 30, "two runs linked to their previous runs")


def test_a_run_started_by_a_tick_is_a_trace_started_by_the_tick(stack, receiver):
    instance_id = f"tick-{uuid.uuid4().hex[:8]}"
    # What beat does when it cannot import the starter task: send_task, no span here.
    sender = Celery("tick-sender", broker=stack.redis_url)
    try:
        sender.send_task(START_TASK, args=("HelloSequence", instance_id))
    finally:
        sender.close()
    expected = {f"run/{START_TASK}", "singleton.run HelloSequence", "run/proj.tasks.say_hello"}
    wait_until(lambda: len(named(receiver.of_instance(instance_id), "run/proj.tasks.say_hello")) == 3
               and expected <= {s.name for s in receiver.of_instance(instance_id)}, 30, "the run's spans")
    (trace_id,) = {s.trace_id for s in receiver.of_instance(instance_id)}
    trace = receiver.in_trace(trace_id)
    (root,) = [s for s in trace if not s.parent_id]
    assert root.name == f"run/{START_TASK}" and root.service == "worker"
    (run_span,) = named(trace, "singleton.run HelloSequence")
    assert run_span.parent_id == root.span_id


def test_a_run_suspended_between_steps_stays_one_trace_when_resumed(stack, receiver):
    instance_id = f"suspend-{uuid.uuid4().hex[:8]}"
    probe_redis = redis.Redis.from_url(stack.redis_url)
    store = Store(probe_redis, prefix=os.environ["SINGLETON_KEY_PREFIX"], retention_s=60)
    sender = Celery("tick-sender", broker=stack.redis_url)
    try:
        # A worker-side start: the probe orchestrators are registered in the worker only.
        sender.send_task(START_TASK, args=("HeldThenStep", instance_id),
                         kwargs={"input": {"key": instance_id}})
        wait_until(lambda: probe_redis.llen(f"probe:{instance_id}"), 30, "the held step to start")
        actions = f"{WEBHOOK}/instances/{instance_id}"
        assert request("POST", stack.port, f"{actions}/suspend")[0] == 202
        release(probe_redis, instance_id)
        # A suspend parks each delivery under its own task id, in the instance's parked hash.
        wait_until(lambda: probe_redis.hlen(store.keys(instance_id).parked), 30, "the next step to park")
        assert request("POST", stack.port, f"{actions}/resume")[0] == 202
        wait_until(lambda: status_of(stack.port, instance_id)["runtimeStatus"] == "Completed", 30,
                   "completion")
    finally:
        sender.close()
        probe_redis.close()
    wait_until(lambda: any(s.links for s in named(receiver.of_instance(instance_id),
                                                  "apply_async/tests.probe.probe_step"))
               and named(receiver.of_instance(instance_id), "run/tests.probe.probe_step"), 30,
               "the resumed step's spans")
    spans = receiver.of_instance(instance_id)
    assert len({s.trace_id for s in spans}) == 1, "every span of the run is in one trace"
    (resumed,) = [s for s in named(spans, "apply_async/tests.probe.probe_step") if s.links]
    assert resumed.service == "api"
    ((trace_id, span_id, _),) = resumed.links
    (publisher,) = wait_until(lambda: [s for s in receiver.in_trace(trace_id) if s.span_id == span_id],
                              30, "the resume request's span")
    assert publisher.kind == SERVER_KIND and publisher.name.endswith("/resume")


def test_tracing_is_off_unless_an_exporter_is_configured():
    assert exporter_name({}) is None
    assert exporter_name({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}) is None
    assert exporter_name({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == "otlp"
    assert exporter_name({"OTEL_TRACES_EXPORTER": "console"}) == "console"
