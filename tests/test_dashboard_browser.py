"""The dashboard in a real browser: Debian's Chromium (headless, through its chromedriver)
against gunicorn serving the app and a real Celery worker.

The browser comes from Debian's packages: when they are missing and the tests run as
root, collecting this module installs them (apt-get); elsewhere it skips with one line,
and REQUIRE_BROWSER=1 (set by CI) turns that skip into a failure. Screenshots of the
list and detail pages go to docs/ with DASHBOARD_SCREENSHOTS=docs, else to a temporary
directory.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from singleton.runtime import runtime
from tests.browser import BROWSER_REQUIRED, CHROMEDRIVER, CHROMIUM, browser_missing
from tests.probe import events, release
from tests.test_api_http import Gunicorn, request
from tests.workers import REPO, wait_until

KEY = "browser-operator-" + uuid.uuid4().hex
VIEWER = "browser-viewer-" + uuid.uuid4().hex
XSS = '"><img src=x onerror=alert(1)>'
WAIT_S = 30  # for the page to show what the worker did
pytestmark = pytest.mark.slow


# At collection, so a missing browser is one skip line for the module (or, with
# REQUIRE_BROWSER=1, one collection error), and the install has no test's timeout.
_MISSING = browser_missing()
if _MISSING and BROWSER_REQUIRED:
    pytest.fail(f"REQUIRE_BROWSER=1 but {_MISSING}", pytrace=False)
if _MISSING:
    pytest.skip(f"dashboard browser tests skipped: {_MISSING}", allow_module_level=True)


class DashboardServer(Gunicorn):
    """gunicorn serving the app with an operator key and a read-only dashboard key."""

    def __init__(self, log: Path) -> None:
        super().__init__(log, workers=2)
        self.env.pop("API_AUTH", None)
        self.env.update(API_KEYS=KEY, DASHBOARD_READONLY_KEYS=VIEWER)

    def _answers(self) -> bool:
        try:
            return request("GET", self.port, "/dashboard/login")[0] == 200
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    g = DashboardServer(tmp_path_factory.mktemp("dashboard") / "gunicorn.log").start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1400,1000", "--lang=en-US"):
        options.add_argument(flag)
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(log)), options=options)
    browser.set_page_load_timeout(WAIT_S)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("DASHBOARD_SCREENSHOTS") == "docs":
        return REPO / "docs"
    return tmp_path_factory.mktemp("screenshots")


def sign_in(driver: webdriver.Chrome, server: DashboardServer, key: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{server.url}/dashboard/")
    assert "/dashboard/login" in driver.current_url
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.ID, "filters"))


def until(driver: webdriver.Chrome, predicate, what: str):
    def safe(d):
        try:
            return predicate(d)
        except StaleElementReferenceException:  # the page replaced the element meanwhile
            return False

    return WebDriverWait(driver, WAIT_S).until(safe, message=f"waiting for {what}")


def status_text(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.ID, "runtime-status").text


def rows(driver: webdriver.Chrome) -> list[str]:
    found = driver.find_elements(By.CSS_SELECTOR, "#instances tbody tr[data-id]")
    return [r.get_attribute("data-id") for r in found]


def confirm(driver: webdriver.Chrome, reason: str | None = None) -> None:
    until(driver, lambda d: d.find_element(By.ID, "confirm").is_displayed(), "the confirmation dialog")
    if reason is not None:
        driver.find_element(By.ID, "confirm-reason").send_keys(reason)
    driver.find_element(By.ID, "confirm-ok").click()


def detail_url(server: DashboardServer, instance_id: str) -> str:
    return f"{server.url}/dashboard/instances/{quote(instance_id, safe='')}"


# -- the tests, in the order an operator meets the pages ------------------------------------
def test_a_key_typed_once_opens_a_session_and_no_url_holds_the_key(driver, server):
    sign_in(driver, server, KEY)
    cookie = driver.get_cookie("singleton_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert KEY not in driver.current_url and KEY not in cookie["value"]
    assert driver.find_element(By.CSS_SELECTOR, ".who").text == "operator"


@pytest.mark.usefixtures("worker")
def test_the_list_filters_by_prefix_and_status_and_pages_and_back_works(driver, server, client, uid):
    ids = [f"{uid}-{n:02d}" for n in range(12)]
    for instance_id in ids:
        client.start_new("HelloSequence", instance_id)
    for instance_id in ids:
        client.wait_for_completion(instance_id, WAIT_S)
    driver.get(f"{server.url}/dashboard/")
    driver.find_element(By.ID, "prefix").send_keys(uid)
    driver.find_element(By.CSS_SELECTOR, 'input[name=status][value="Completed"]').click()
    Select(driver.find_element(By.ID, "top")).select_by_value("10")
    driver.find_element(By.ID, "apply").click()
    until(driver, lambda d: "prefix=" in d.current_url, "the filters to reach the URL")
    assert "status=Completed" in driver.current_url and "top=10" in driver.current_url
    assert rows(driver) == ids[::-1][:10]
    driver.find_element(By.ID, "next-page").click()
    until(driver, lambda d: rows(d) == ids[::-1][10:], "the second page")
    driver.back()
    until(driver, lambda d: rows(d) == ids[::-1][:10], "the first page again after Back")
    Select(driver.find_element(By.ID, "range")).select_by_value("15m")
    assert driver.find_element(By.ID, "from").is_displayed() is False
    driver.find_element(By.ID, "apply").click()
    until(driver, lambda d: "range=15m" in d.current_url and len(rows(d)) == 10, "the preset range")


@pytest.mark.usefixtures("worker")
def test_a_detail_page_follows_a_run_from_running_to_completed(driver, server, client, redis_client, uid):
    client.start_new("Held", uid, {"key": uid})
    wait_until(lambda: events(redis_client, uid), WAIT_S, "the held step to start")
    driver.get(f"{server.url}/dashboard/")
    driver.find_element(By.ID, "goto-id").send_keys(uid + "\n")
    until(driver, lambda d: d.find_elements(By.ID, "runtime-status"), "the detail page")
    assert status_text(driver) == "Running"
    assert driver.find_elements(By.CSS_SELECTOR, "#gantt .bar.o-Live")  # the step in progress
    release(redis_client, uid)
    until(driver, lambda d: status_text(d) == "Completed", "the page to show Completed")
    assert driver.find_elements(By.CSS_SELECTOR, "#gantt .bar.o-Completed")
    assert driver.find_element(By.ID, "do-terminate").get_attribute("disabled")
    assert "finished" in driver.find_element(By.ID, "do-terminate").get_attribute("title")


@pytest.mark.usefixtures("worker")
def test_the_approval_event_is_validated_then_raised_from_the_form(driver, server, client, uid):
    client.start_new("ApprovalWorkflow", uid)
    driver.get(detail_url(server, uid))
    driver.find_element(By.ID, "event-name").send_keys("Approval")
    driver.find_element(By.ID, "event-data").send_keys('{"by": ')
    driver.find_element(By.ID, "do-raise-event").click()
    until(driver, lambda d: "not JSON" in d.find_element(By.ID, "action-result").text, "the JSON error")
    assert client.get_status(uid).runtime_status.is_live  # nothing was sent
    driver.find_element(By.ID, "event-data").send_keys('"ops"}')
    driver.find_element(By.ID, "do-raise-event").click()
    until(driver, lambda d: status_text(d) == "Completed", "the workflow to complete")
    assert json.loads(driver.find_element(By.CSS_SELECTOR, "#output pre").text) == {"approved": {"by": "ops"}}


@pytest.mark.usefixtures("worker")
def test_a_batch_purge_of_the_selected_rows_reports_why_the_live_one_stayed(driver, server, client, uid):
    for n in range(2):
        client.start_new("HelloSequence", f"{uid}-done-{n}")
        client.wait_for_completion(f"{uid}-done-{n}", WAIT_S)
    client.start_new("ApprovalWorkflow", f"{uid}-live")
    driver.get(f"{server.url}/dashboard/?prefix={uid}")
    driver.find_element(By.ID, "select-all").click()
    assert driver.find_element(By.ID, "selected-count").text == "3 selected"
    driver.find_element(By.CSS_SELECTOR, '[data-batch=purge][data-scope=selected]').click()
    confirm(driver)
    until(driver, lambda d: d.find_element(By.ID, "batch-result").text, "the batch report")
    report = driver.find_element(By.ID, "batch-result").text
    assert report.startswith("Purged 2. 1 failed (instance_is_live \u00d71)") and "still Running" in report
    until(driver, lambda d: rows(d) == [f"{uid}-live"], "the purged rows to go")
    client.terminate(f"{uid}-live")


@pytest.mark.usefixtures("worker")
def test_auto_refresh_shows_new_instances_and_keeps_the_selection(driver, server, client, uid):
    client.start_new("ApprovalWorkflow", f"{uid}-a")
    driver.get(f"{server.url}/dashboard/?prefix={uid}&refresh=2")
    driver.find_element(By.CSS_SELECTOR, ".row-select").click()
    client.start_new("ApprovalWorkflow", f"{uid}-b")
    until(driver, lambda d: rows(d) == [f"{uid}-b", f"{uid}-a"], "the refresh to show the new instance")
    checked = driver.find_elements(By.CSS_SELECTOR, ".row-select:checked")
    assert [c.get_attribute("value") for c in checked] == [f"{uid}-a"]
    assert driver.find_element(By.ID, "selected-count").text == "1 selected"
    for suffix in "ab":
        client.terminate(f"{uid}-{suffix}")


@pytest.mark.usefixtures("worker")
def test_user_data_shows_as_text_and_never_as_markup(driver, server, client, app, uid):
    instance_id = f"{uid}{XSS}"
    client.start_new("ApprovalWorkflow", instance_id)
    run_id = client.get_status(instance_id).run_id
    assert runtime(app).store.set_custom_status(instance_id, run_id=run_id,
                                                value_json=json.dumps({"note": XSS}))
    driver.get(f"{server.url}/dashboard/?prefix={uid}")
    assert rows(driver) == [instance_id]
    assert XSS in driver.find_element(By.CSS_SELECTOR, "td.custom").text
    driver.find_element(By.CSS_SELECTOR, "td.id a").click()
    until(driver, lambda d: d.find_elements(By.ID, "instance-id"), "the detail page")
    assert driver.find_element(By.ID, "instance-id").text == instance_id
    driver.find_element(By.ID, "event-name").send_keys(XSS)
    driver.find_element(By.ID, "do-raise-event").click()
    until(driver, lambda d: "Event raised on 1" in d.find_element(By.ID, "action-result").text, "the event")
    assert driver.find_elements(By.TAG_NAME, "img") == []  # the dashboard has none of its own
    client.terminate(instance_id)


def test_a_read_only_key_sees_no_action_and_the_server_refuses_a_forged_one(driver, server, client, uid):
    client.start_new("ApprovalWorkflow", uid)
    sign_in(driver, server, VIEWER)
    assert driver.find_element(By.CSS_SELECTOR, ".who").text == "read-only"
    driver.get(f"{server.url}/dashboard/?prefix={uid}")
    assert rows(driver) == [uid]
    assert not driver.find_elements(By.CSS_SELECTOR, "#batch, .row-select, button.action")
    driver.get(detail_url(server, uid))
    assert status_text(driver) and not driver.find_elements(By.CSS_SELECTOR, "#actions, button.action")
    forged = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/dashboard/actions/terminate', {method: 'POST', credentials: 'same-origin',
          headers: {'Content-Type': 'application/json',
                    'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content},
          body: JSON.stringify({ids: [arguments[0]]})})
          .then(r => r.json().then(body => done([r.status, body.code])));
    """, uid)
    assert forged == [403, "read_only"]
    assert client.get_status(uid).runtime_status.is_live
    client.terminate(uid)


@pytest.mark.usefixtures("worker")
def test_screenshots_of_the_list_and_detail_pages(driver, server, client, redis_client, shots, uid):
    demo = f"demo-{uuid.uuid4().hex[:6]}"
    for city in ("tokyo", "seattle"):
        client.start_new("HelloSequence", f"{demo}-hello-{city}")
        client.wait_for_completion(f"{demo}-hello-{city}", WAIT_S)
    client.start_new("AlwaysFails", f"{demo}-fails", {"order": 7})
    client.wait_for_completion(f"{demo}-fails", WAIT_S)
    client.start_new("ApprovalWorkflow", f"{demo}-approval")
    client.start_new("ApprovalWorkflow", f"{demo}-suspended")
    client.suspend(f"{demo}-suspended", "maintenance")
    client.start_new("ApprovalWorkflow", f"{demo}-cancelled")
    client.terminate(f"{demo}-cancelled", "no longer needed")
    client.start_new("Counter", f"{demo}-counter", {"count": 0, "interval": 1})
    client.start_new("Held", f"{demo}-held", {"key": uid})
    wait_until(lambda: events(redis_client, uid), WAIT_S, "the held step to start")
    wait_until(lambda: client.get_status(f"{demo}-counter").custom_status, WAIT_S, "a custom status")
    sign_in(driver, server, KEY)
    driver.get(f"{server.url}/dashboard/?prefix={demo}")
    until(driver, lambda d: len(rows(d)) == 8, "the demo rows")
    driver.save_screenshot(str(shots / "dashboard-list.png"))
    driver.get(detail_url(server, f"{demo}-hello-tokyo"))
    until(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gantt .bar")) == 3, "the timeline")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, height + 140)  # the whole page, actions included
    driver.save_screenshot(str(shots / "dashboard-detail.png"))
    driver.set_window_size(1400, 1000)
    for name in ("dashboard-list.png", "dashboard-detail.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    release(redis_client, uid)
    for suffix in ("approval", "suspended", "counter"):
        client.terminate(f"{demo}-{suffix}")


@pytest.mark.usefixtures("worker")
def test_terminating_a_delay_from_its_page_is_confirmed_and_keeps_the_reason(driver, server, client, uid):
    client.start_new("Delay", uid, {"seconds": 20, "value": 1})
    driver.get(detail_url(server, uid))
    driver.find_element(By.ID, "reason").send_keys("stopped from the dashboard")
    driver.find_element(By.ID, "do-terminate").click()
    driver.find_element(By.ID, "confirm-cancel").click()
    assert client.get_status(uid).runtime_status.is_live
    driver.find_element(By.ID, "do-terminate").click()
    confirm(driver)
    until(driver, lambda d: status_text(d) == "Terminated", "the page to show Terminated")
    assert client.get_status(uid).output == "stopped from the dashboard"
    assert driver.find_element(By.ID, "do-purge").get_attribute("disabled") is None
