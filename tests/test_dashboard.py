"""The dashboard's pages, sessions and actions through Flask's test client, on the real
Redis and a real worker (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import datetime, timedelta

import pytest
from markupsafe import escape

from api import create_app
from singleton import RuntimeStatus
from singleton.runtime import runtime

KEY = "operator-" + uuid.uuid4().hex
VIEWER = "viewer-" + uuid.uuid4().hex
XSS = '"><img src=x onerror=alert(1)>'


def keyed_app(celery_app, **extra: str):
    return create_app({"API_KEYS": KEY, "DASHBOARD_READONLY_KEYS": VIEWER, **extra}, celery_app=celery_app)


def signed_in(app, key: str):
    browser = app.test_client()
    response = browser.post("/dashboard/login", data={"key": key, "next": "/dashboard/"})
    assert response.status_code == 303, response.data
    return browser


def csrf_of(page: bytes) -> str:
    return re.search(rb'<meta name="csrf-token" content="([^"]+)"', page).group(1).decode()


def act(browser, action: str, body: dict, *, token: str | None):
    headers = {} if token is None else {"X-CSRF-Token": token}
    return browser.post(f"/dashboard/actions/{action}", json=body, headers=headers)


@pytest.fixture(scope="module")
def open_app(app):
    return create_app({"API_AUTH": "anonymous"}, celery_app=app)


# -- sessions ---------------------------------------------------------------------------
def test_a_key_entered_once_opens_a_signed_httponly_strict_cookie_that_holds_no_key(app):
    response = keyed_app(app).test_client().post("/dashboard/login", data={"key": KEY})
    cookie = response.headers["Set-Cookie"]
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/"
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    payload = cookie.split("=", 1)[1].split(".", 1)[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert KEY.encode() not in decoded and KEY not in cookie and KEY not in response.headers["Location"]


def test_the_cookie_is_secure_over_https_or_when_configured(app):
    over_https = keyed_app(app).test_client().post("/dashboard/login", data={"key": KEY},
                                                base_url="https://dash.example")
    assert "Secure" in over_https.headers["Set-Cookie"]
    configured = keyed_app(app, DASHBOARD_SECURE_COOKIE="true").test_client().post("/dashboard/login",
                                                                              data={"key": KEY})
    assert "Secure" in configured.headers["Set-Cookie"]
    plain = keyed_app(app).test_client().post("/dashboard/login", data={"key": KEY})
    assert "Secure" not in plain.headers["Set-Cookie"]


def test_without_a_session_pages_send_to_sign_in_and_actions_answer_401(app):
    browser = keyed_app(app).test_client()
    page = browser.get("/dashboard/instances/some-id")
    assert page.status_code == 302 and page.headers["Location"].startswith("/dashboard/login?next=")
    assert act(browser, "terminate", {"ids": ["x"]}, token="anything").status_code == 401
    assert browser.get("/dashboard/login").status_code == 200


def test_a_wrong_key_or_a_tampered_cookie_opens_nothing(app):
    dash = keyed_app(app)
    browser = dash.test_client()
    wrong = browser.post("/dashboard/login", data={"key": KEY + "x"})
    assert wrong.status_code == 401 and b"not valid" in wrong.data and "Set-Cookie" not in wrong.headers
    browser.set_cookie("singleton_dashboard", "eyJrIjoiIiwiYyI6IngifQ.forged.signature", path="/dashboard")
    assert browser.get("/dashboard/").status_code == 302


def test_removing_a_key_from_the_configuration_ends_its_sessions(app):
    before = signed_in(keyed_app(app, DASHBOARD_SECRET="fixed"), KEY)
    cookie = before.get_cookie("singleton_dashboard", path="/dashboard").value
    after = create_app({"API_KEYS": "another-key", "DASHBOARD_SECRET": "fixed"}, celery_app=app).test_client()
    after.set_cookie("singleton_dashboard", cookie, path="/dashboard")
    assert after.get("/dashboard/").status_code == 302


def test_sign_in_only_redirects_inside_the_dashboard(app):
    browser = keyed_app(app).test_client()
    for target in ("https://evil.example/", "//evil.example/", "/api/orchestrators/x"):
        response = browser.post("/dashboard/login", data={"key": KEY, "next": target})
        assert response.headers["Location"] == "/dashboard/"


def test_the_api_still_wants_its_key_while_the_dashboard_has_its_session(app):
    browser = signed_in(keyed_app(app), KEY)
    assert browser.get("/runtime/webhooks/durabletask/instances").status_code == 401
    assert browser.get("/dashboard/").status_code == 200


# -- actions are checked on the server ------------------------------------------------------
@pytest.mark.usefixtures("worker")
def test_an_action_without_the_sessions_csrf_token_is_refused_and_changes_nothing(app, client, uid):
    client.start_new("ApprovalWorkflow", uid)
    browser = signed_in(keyed_app(app), KEY)
    token = csrf_of(browser.get("/dashboard/").data)
    for forged in (None, "", token[:-1] + "x"):
        response = act(browser, "terminate", {"ids": [uid]}, token=forged)
        assert response.status_code == 403 and response.get_json()["code"] == "csrf"
    cross = browser.post("/dashboard/actions/terminate", json={"ids": [uid]},
                         headers={"X-CSRF-Token": token, "Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert client.get_status(uid).runtime_status.is_live
    done = act(browser, "terminate", {"ids": [uid], "reason": "test over"}, token=token)
    assert done.get_json()["succeeded"] == 1
    assert client.get_status(uid).output == "test over"


@pytest.mark.usefixtures("worker")
def test_a_viewer_key_shows_pages_without_actions_and_the_server_refuses_its_actions(app, client, uid):
    client.start_new("ApprovalWorkflow", uid)
    viewer = signed_in(keyed_app(app), VIEWER)
    listing, detail = viewer.get(f"/dashboard/?prefix={uid}"), viewer.get(f"/dashboard/instances/{uid}")
    assert uid.encode() in listing.data and b"read-only" in listing.data
    for page in (listing.data, detail.data):
        assert b'class="action"' not in page and b"data-batch" not in page and b"row-select" not in page
    refused = act(viewer, "terminate", {"ids": [uid]}, token=csrf_of(detail.data))
    assert refused.status_code == 403 and refused.get_json()["code"] == "read_only"
    assert client.get_status(uid).runtime_status.is_live
    client.terminate(uid)


# -- escaping --------------------------------------------------------------------------------
@pytest.mark.usefixtures("worker")
def test_instance_ids_custom_status_and_outputs_are_escaped_everywhere(app, client, open_app, uid):
    instance_id = f"{uid}{XSS}"
    client.start_new("Delay", instance_id, {"seconds": 0, "value": f"<script>alert('{uid}')</script>"})
    done = client.wait_for_completion(instance_id, 30)
    # A custom status as a step's set_custom_status writes it, on a live run.
    live_id = f"{uid}-live{XSS}"
    client.start_new("ApprovalWorkflow", live_id)
    store = runtime(app).store
    assert store.set_custom_status(live_id, run_id=client.get_status(live_id).run_id,
                                  value_json=json.dumps({"note": XSS}))
    browser = open_app.test_client()
    pages = [browser.get(f"/dashboard/?prefix={uid}").data.decode(),
             browser.get(f"/dashboard/instances/{instance_id}").data.decode(),
             browser.get(f"/dashboard/instances/{live_id}").data.decode()]
    for page in pages:
        assert "<img src=x" not in page and "<script>alert" not in page
    assert str(escape(instance_id)) in pages[0] and str(escape(live_id)) in pages[0]
    assert "&lt;script&gt;alert(" in pages[1] and done.output.startswith("<script>")
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2]
    client.terminate(live_id)


# -- pages -------------------------------------------------------------------------------------
@pytest.mark.usefixtures("worker")
def test_the_list_shows_newest_first_filters_by_orchestrator_and_pages_by_token(app, client, open_app, uid):
    ids = [f"{uid}-{n}" for n in range(3)]
    for instance_id in ids:
        client.start_new("HelloSequence", instance_id)
    client.start_new("Delay", f"{uid}-delay", {"seconds": 0})
    for instance_id in [*ids, f"{uid}-delay"]:
        client.wait_for_completion(instance_id, 30)
    browser = open_app.test_client()
    page = browser.get(f"/dashboard/?prefix={uid}&name=HelloSequence&top=10").data.decode()
    shown = re.findall(r'<tr data-id="([^"]+)"', page)
    assert shown == ids[::-1]
    first = browser.get(f"/dashboard/?prefix={uid}&top=10&status=Completed").data.decode()
    assert len(re.findall(r'<tr data-id="', first)) == 4 and 'id="next-page"' not in first


@pytest.mark.usefixtures("worker")
def test_large_json_starts_collapsed_and_small_json_open(client, open_app, uid):
    client.start_new("ApprovalWorkflow", uid, {"timeout": 3600, "default": list(range(2000))})
    page = open_app.test_client().get(f"/dashboard/instances/{uid}").data.decode()
    assert re.search(r'<details class="json" id="input"\s*>', page)
    assert re.search(r'<details class="json" id="output"\s+open>', page)
    client.terminate(uid)


@pytest.mark.usefixtures("worker")
def test_a_custom_created_range_in_utc_selects_by_creation_time(client, open_app, uid):
    client.start_new("ApprovalWorkflow", uid)
    created = client.get_status(uid).created_time
    browser = open_app.test_client()

    def shown(start: datetime, end: datetime) -> list[str]:
        query = f"range=custom&from={start:%Y-%m-%dT%H:%M:%S}&to={end:%Y-%m-%dT%H:%M:%S}&prefix={uid}"
        return re.findall(r'<tr data-id="([^"]+)"', browser.get(f"/dashboard/?{query}").data.decode())

    minute = timedelta(minutes=1)
    assert shown(created - minute, created + minute) == [uid]
    assert shown(created + minute, created + 2 * minute) == []
    client.terminate(uid)


def test_a_bad_filter_or_token_is_an_html_error_page_not_a_traceback(open_app):
    browser = open_app.test_client()
    for query in ("status=Sleeping", "range=forever", "top=7", "range=custom&from=yesterday"):
        response = browser.get(f"/dashboard/?{query}")
        assert response.status_code == 400 and b'role="alert"' in response.data, query
    token = browser.get("/dashboard/?page=not-a-token")
    assert token.status_code == 400 and b"continuation token" in token.data
    assert browser.get("/dashboard/instances/nobody-has-this-id").status_code == 404


def test_every_page_carries_a_strict_content_security_policy(open_app):
    response = open_app.test_client().get("/dashboard/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("worker")
def test_actions_over_the_filter_aim_at_the_statuses_they_apply_to(app, client, open_app, uid):
    for n in range(2):
        client.start_new("HelloSequence", f"{uid}-{n}")
        client.wait_for_completion(f"{uid}-{n}", 30)
    client.start_new("ApprovalWorkflow", f"{uid}-live")
    browser = open_app.test_client()
    token = csrf_of(browser.get("/dashboard/").data)
    purged = act(browser, "purge", {"filter": f"?prefix={uid}"}, token=token).get_json()
    assert (purged["succeeded"], purged["failed"], purged["moreRemain"]) == (2, [], False)
    assert client.get_status(f"{uid}-0") is None and client.get_status(f"{uid}-live").runtime_status.is_live
    none_live = act(browser, "terminate", {"filter": f"?prefix={uid}&status=Completed"}, token=token)
    assert none_live.get_json()["succeeded"] == 0
    terminated = act(browser, "terminate", {"filter": f"?prefix={uid}", "reason": "all"}, token=token)
    assert terminated.get_json()["succeeded"] == 1 and client.get_status(f"{uid}-live").output == "all"


@pytest.mark.usefixtures("worker")
def test_a_batch_over_selected_ids_reports_why_each_failure_failed(app, client, open_app, uid):
    client.start_new("HelloSequence", f"{uid}-done")
    client.wait_for_completion(f"{uid}-done", 30)
    client.start_new("ApprovalWorkflow", f"{uid}-live")
    browser = open_app.test_client()
    token = csrf_of(browser.get("/dashboard/").data)
    ids = [f"{uid}-done", f"{uid}-live", f"{uid}-unknown"]
    report = act(browser, "purge", {"ids": ids}, token=token).get_json()
    assert report["succeeded"] == 1
    assert report["failedByReason"] == {"instance_is_live": 1, "instance_not_found": 1}
    assert [f["instanceId"] for f in report["failed"]] == ids[1:]
    client.terminate(f"{uid}-live")


def test_the_summary_counts_live_runs_by_status_recent_starts_and_refusals(store):
    for n in range(3):
        store.claim(f"sum-{n}", name="HelloSequence", run_id=f"run-{n}", input_json="null")
    store.end_run("sum-0", run_id="run-0", status=RuntimeStatus.COMPLETED, output_json="null")
    # One start refused by a live run, one kept out by the finished run's policy.
    assert not store.claim("sum-1", name="HelloSequence", run_id="again", input_json="null").claimed
    assert not store.claim("sum-0", name="HelloSequence", run_id="again", input_json="null",
                           if_finished="reject").claimed
    hour_ago = int((time.time() - 3600) * 1_000_000)
    summary = store.summary(hour_ago, sample=25)
    assert summary == {"live": 2, "records": 3, "created_since": 3, "refused_since": 2,
                       "live_by_status": {"Pending": 2}, "sampled": False}
    later = store.summary(2**62, sample=1)
    assert (later["created_since"], later["refused_since"]) == (0, 0)


@pytest.mark.usefixtures("worker")
def test_suspend_resume_and_restart_go_through_the_client_as_the_status_allows(app, client, open_app, uid):
    client.start_new("ApprovalWorkflow", uid)
    browser = open_app.test_client()
    token = csrf_of(browser.get(f"/dashboard/instances/{uid}").data)
    assert act(browser, "suspend", {"ids": [uid], "reason": "r"}, token=token).get_json()["succeeded"] == 1
    assert client.get_status(uid).runtime_status is RuntimeStatus.SUSPENDED
    page = browser.get(f"/dashboard/instances/{uid}").data.decode()
    assert re.search(r'id="do-suspend"\s+disabled title="Already suspended."', page)
    twice = act(browser, "suspend", {"ids": [uid]}, token=token).get_json()
    assert twice["succeeded"] == 0 and twice["failedByReason"] == {"invalid_transition": 1}
    assert act(browser, "resume", {"ids": [uid]}, token=token).get_json()["succeeded"] == 1
    same_while_live = act(browser, "restart", {"ids": [uid], "sameId": True}, token=token).get_json()
    assert same_while_live["failedByReason"] == {"instance_already_exists": 1}
    assert act(browser, "raise-event", {"ids": [uid], "eventName": "Approval", "data": "true"},
               token=token).get_json()["succeeded"] == 1
    assert client.wait_for_completion(uid, 30).output == {"approved": True}
    again = act(browser, "restart", {"ids": [uid], "sameId": True}, token=token).get_json()
    assert again["started"] == [uid] and client.get_status(uid).runtime_status.is_live
    fresh = act(browser, "restart", {"ids": [uid]}, token=token).get_json()["started"][0]
    assert fresh != uid and client.get_status(fresh).name == "ApprovalWorkflow"
    for instance_id in (uid, fresh):
        client.terminate(instance_id)


def test_an_event_with_data_that_is_not_json_is_refused_before_anything_is_sent(open_app):
    browser = open_app.test_client()
    token = csrf_of(browser.get("/dashboard/").data)
    bad = act(browser, "raise-event", {"ids": ["x"], "eventName": "Approval", "data": "{nope"}, token=token)
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_event"
    nameless = act(browser, "raise-event", {"ids": ["x"], "eventName": "", "data": "1"}, token=token)
    assert nameless.status_code == 400
    assert act(browser, "explode", {"ids": ["x"]}, token=token).status_code == 404
