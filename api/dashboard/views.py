"""The dashboard's pages: sign-in, the instance list and one instance's detail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Response, redirect, render_template, request, url_for
from werkzeug.exceptions import NotFound

from singleton import RuntimeStatus, orchestrator_names, validate_instance_id

from . import present
from .access import COOKIE_NAME
from .blueprint import context, dashboard, require_action_token, session
from .filters import PAGE_SIZES, PRESETS, REFRESH_CHOICES, Filters, ListQueryError, matching_page


@dashboard.get("/login")
def login_form() -> Any:
    """The sign-in page (on an open dashboard: straight to the list)."""
    if session() is not None:
        return redirect(_next_url())
    return render_template("dashboard/login.html", next=_next_url(), error=None)


@dashboard.post("/login")
def login() -> Any:
    """Open a session for the key entered; the key itself never goes into the cookie."""
    access = context().access
    if access.config.is_open:
        return redirect(_next_url(), 303)
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        return _login_refused("A sign-in from another site was refused.", 403)
    key = request.form.get("key", "")
    if access.role_of(key) is None:
        return _login_refused("That key is not valid for this dashboard.", 401)
    response = redirect(_next_url(), 303)
    response.set_cookie(COOKIE_NAME, access.issue(key), **access.cookie_options(https=request.is_secure))
    return response


def _login_refused(error: str, status: int) -> tuple[str, int]:
    return render_template("dashboard/login.html", next=_next_url(), error=error), status


@dashboard.post("/logout")
def logout() -> Response:
    """End the session (the cookie is dropped; on an open dashboard a new one follows)."""
    require_action_token()
    response = redirect(url_for("dashboard.login_form"), 303)
    response.delete_cookie(COOKIE_NAME, path=context().access.cookie_options()["path"])
    return response


def _next_url() -> str:
    # Only a path inside the dashboard: never an open redirect.
    target = request.values.get("next") or ""
    if not target.startswith("/dashboard") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.instances")
    return target


@dashboard.get("/")
def instances() -> Any:
    """The list page: filters in the URL, one page read per request, newest first."""
    now = datetime.now(UTC)
    try:
        filters = Filters.parse(request.args, now)
    except ListQueryError as exc:
        return render_template("dashboard/list.html", **_list_frame(Filters.empty(), now), page=None,
                               error=str(exc)), 400
    page = matching_page(context().client, filters)
    values = {**_list_frame(filters, now), "page": page, "error": None}
    template = "dashboard/_list_live.html" if request.args.get("partial") else "dashboard/list.html"
    return render_template(template, **values)


def _list_frame(filters: Filters, now: datetime) -> dict[str, Any]:
    return {
        "filters": filters, "now": now, "present": present, "statuses": list(RuntimeStatus),
        "orchestrators": sorted(orchestrator_names()), "presets": PRESETS, "page_sizes": PAGE_SIZES,
        "refresh_choices": REFRESH_CHOICES, "summary": _summary(now),
    }


def _summary(now: datetime) -> dict[str, Any]:
    hour_ago = int((now.timestamp() - 3600) * 1_000_000)
    return context().store.summary(hour_ago, sample=SUMMARY_SAMPLE)


SUMMARY_SAMPLE = 25  # live runs per shard whose status the summary reads


@dashboard.get("/go")
def go() -> Response:
    """The "go to instance" box: the detail page of the ID typed."""
    instance_id = request.args.get("id", "").strip()
    if not instance_id:
        return redirect(url_for("dashboard.instances"))
    return redirect(url_for("dashboard.detail", instance_id=validate_instance_id(instance_id)))


@dashboard.get("/instances/<instance_id>")
def detail(instance_id: str) -> Any:
    """One instance: its data, the run's timeline and history, and the actions its status allows."""
    show_output = request.args.get("output") == "1"
    status = context().client.get_status(instance_id, show_history=True, show_history_output=show_output)
    if status is None:
        raise NotFound(f"No instance with ID '{instance_id}' is on record (it may have been purged).")
    now = datetime.now(UTC)
    values = {
        "status": status, "now": now, "present": present, "show_output": show_output,
        "timeline": present.timeline(status, now), "refusals": present.refusals(status.runtime_status),
        "input_json": present.pretty(status.input), "output_json": present.pretty(status.output),
        "custom_json": present.pretty(status.custom_status),
        "fence": (context().store.read(instance_id) or {}).get("fence", ""),
    }
    template = "dashboard/_detail_live.html" if request.args.get("partial") else "dashboard/detail.html"
    return render_template(template, **values)
