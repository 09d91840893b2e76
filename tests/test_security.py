"""Security defaults, each shown on the real thing: JSON-only messages, keys compared in
constant time and never logged, and Redis password and TLS URLs working end to end."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import api.auth
from api import create_app
from proj.redis_server import RedisServer, free_port
from tests.probe import events, release_all
from tests.workers import REPO, Worker, wait_until

SECRET = "s3cret-key-" + uuid.uuid4().hex


# -- serialisation --------------------------------------------------------------------------
def test_a_pickled_message_is_refused_by_the_worker(app, worker, redis_client, uid):
    app.send_task("tests.probe.probe_step", args=(0, uid), serializer="pickle")
    wait_until(lambda: "pickle" in worker.log.read_text() and "untrusted" in worker.log.read_text(),
               20, "the worker to refuse the pickled message")
    # A JSON message sent after it runs, so the pickled one had its chance and was dropped.
    app.send_task("tests.probe.probe_step", args=(0, f"{uid}-json"))
    wait_until(lambda: events(redis_client, f"{uid}-json"), 20, "the JSON message to run")
    assert events(redis_client, uid) == []


# -- function keys ---------------------------------------------------------------------------
def test_keys_are_compared_in_constant_time_against_every_key(app, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = api.auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api.auth.hmac, "compare_digest", spy)
    http = create_app({"API_KEYS": f"first,{SECRET}"}, celery_app=app).test_client()
    assert http.get("/api/openapi.json", headers={"x-functions-key": SECRET}).status_code == 200
    # Every configured key is compared, even after the match was the first one.
    assert [b for _, b in compared] == [b"first", SECRET.encode()]
    compared.clear()
    assert http.get("/api/openapi.json?code=first").status_code == 200
    assert [b for _, b in compared] == [b"first", SECRET.encode()]


def test_keys_never_reach_the_log(app, caplog, uid, redis_client):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="singleton")
    http = create_app({"API_KEYS": SECRET}, celery_app=app).test_client()
    wrong = "wrong-" + SECRET
    assert http.get(f"/runtime/webhooks/durabletask/instances/{uid}?code={wrong}").status_code == 401
    assert http.post(f"/api/orchestrators/Nope/{uid}?code={SECRET}").status_code == 404
    body = http.post(f"/api/orchestrators/Held/{uid}?code={SECRET}",
                     json={"key": uid}).get_json()
    assert SECRET in body["statusQueryGetUri"]  # the caller gets its own code= key back...
    for operation in ("suspend", "resume"):  # these log their reason at INFO
        path = f"/runtime/webhooks/durabletask/instances/{uid}/{operation}?reason=why&code={SECRET}"
        assert http.post(path).status_code == 202
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # something was logged (requests, the start)...
    assert SECRET not in logged  # ...but never a key
    http.post(f"/runtime/webhooks/durabletask/instances/{uid}/terminate?code={SECRET}")
    release_all(redis_client, uid)


# -- Redis URLs with a password and with TLS --------------------------------------------------
def start_and_wait(url: str, instance_id: str, worker_log: Path, prefix: str) -> dict:
    env = {"REDIS_URL": url, "SINGLETON_KEY_PREFIX": prefix}
    worker = Worker(worker_log, concurrency=1, env=env).start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.remote_start", "HelloSequence", instance_id],
            cwd=REPO, env={**worker.env}, capture_output=True, text=True, timeout=60,
        )
    finally:
        worker.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_password_protected_redis_url_works_end_to_end(tmp_path, uid):
    password = "pw/with:odd@chars " + uuid.uuid4().hex
    server = RedisServer(tmp_path / "redis", appendonly=False, password=password).start()
    try:
        status = start_and_wait(server.url, uid, tmp_path / "worker.log", "pw-test")
    finally:
        server.stop()
    assert status == {"runtimeStatus": "Completed",
                      "output": ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]}
    assert password not in (tmp_path / "worker.log").read_text()


def tls_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if not found or not shutil.which("openssl"):
        return None
    probe = subprocess.run([found, "--tls-port", "0", "--port", "0", "--test-memory", "1"],
                           capture_output=True, text=True, timeout=10)
    return None if "tls-port" in probe.stdout + probe.stderr else found


def test_a_tls_rediss_url_works_end_to_end_and_checks_the_certificate(tmp_path, uid):
    binary = tls_redis_server()
    if binary is None:
        pytest.skip("needs openssl and a redis-server built with TLS on PATH")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
           "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    server = RedisServer(tmp_path / "redis", appendonly=False, binary=binary, extra_args=tls).start()
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    try:
        status = start_and_wait(url, uid, tmp_path / "worker.log", "tls-test")
        assert status["runtimeStatus"] == "Completed"
        # The certificate is checked: a CA that did not sign it is refused.
        wrong_ca = tmp_path / "other.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", str(tmp_path / "other.key"), "-out", str(wrong_ca),
                        "-subj", "/CN=other"], check=True, capture_output=True, timeout=60)
        refused = subprocess.run(
            [sys.executable, "-m", "tests.remote_start", "HelloSequence", f"{uid}-2"], cwd=REPO,
            env={**Worker(tmp_path / "unused.log").env,
                 "REDIS_URL": url.replace(str(cert), str(wrong_ca))},
            capture_output=True, text=True, timeout=60,
        )
        assert refused.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    finally:
        server.stop()
