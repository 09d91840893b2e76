"""The dashboard's blueprint: its shared state, the session check before every request,
the security headers after it, and HTML (or JSON) error pages."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from singleton import OrchestrationClient, ServiceUnavailable, SingletonError
from singleton.store import Store

from .access import COOKIE_NAME, CSRF_HEADER, Access, Session, tokens_match

logger = logging.getLogger(__name__)

EXTENSION = "dashboard"
# Pages, scripts and styles come from this origin only: no inline script, no CDN.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PUBLIC_ENDPOINTS = {"dashboard.login_form", "dashboard.login", "dashboard.static"}

dashboard = Blueprint("dashboard", __name__, url_prefix="/dashboard",
                      template_folder="templates", static_folder="static")


@dataclass(frozen=True)
class Context:
    """What every dashboard view reads and acts through."""

    client: OrchestrationClient
    store: Store
    access: Access


def context() -> Context:
    """Return the dashboard's state on the current app."""
    return current_app.extensions[EXTENSION]


def session() -> Session:
    """Return the current request's session (set by the check before the request)."""
    return g.dashboard_session


class Refused(Exception):
    """An action request the dashboard refuses: not signed in, read-only, or no CSRF token."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def require_action() -> None:
    """Refuse the request unless its session may act and it carries the session's CSRF token.

    Raises:
        Refused: 403 for a viewer session, a missing or wrong token, or a cross-site origin.
    """
    current = session()
    if not current.can_act:
        raise Refused(403, "read_only", "This session is read-only: actions need an operator key.")
    require_action_token()


def require_action_token() -> None:
    """Refuse a request from another origin or without the session's CSRF token.

    Raises:
        Refused: 403.
    """
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise Refused(403, "cross_origin", "Actions are accepted from the dashboard's own pages only.")
    if not tokens_match(request.headers.get(CSRF_HEADER) or request.form.get("csrf"), session().csrf):
        raise Refused(403, "csrf", "The CSRF token is missing or wrong: reload the page.")


@dashboard.before_request
def check_session() -> Response | None:
    access = context().access
    found = access.session(request.cookies.get(COOKIE_NAME))
    if found is None and access.config.is_open:
        g.new_cookie = access.issue(None)
        found = access.session(g.new_cookie)
    g.dashboard_session = found
    if found is not None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.method == "GET" and not request.args.get("partial"):
        return redirect(url_for("dashboard.login_form", next=request.full_path.rstrip("?")))
    return _json_error(401, "unauthorized", "Sign in to the dashboard first.")


@dashboard.context_processor
def _template_globals() -> dict[str, Any]:
    return {"context_open": context().access.config.is_open}


@dashboard.after_request
def secure(response: Response) -> Response:
    cookie = g.get("new_cookie")
    if cookie:
        response.set_cookie(COOKIE_NAME, cookie, **context().access.cookie_options(https=request.is_secure))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # "same-origin", not "no-referrer": with no referrer, Chromium sends "Origin: null" on
    # the sign-in form, which the origin check must refuse.
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _json_error(status: int, code: str, message: str) -> Response:
    response = jsonify({"Message": message, "ExceptionMessage": message, "code": code})
    response.status_code = status
    return response


def _wants_json() -> bool:
    return request.method != "GET" or bool(request.args.get("partial"))


@dashboard.errorhandler(Refused)
def _refused(exc: Refused) -> Response:
    return _json_error(exc.status, exc.code, exc.message)


@dashboard.errorhandler(SingletonError)
def _singleton_error(exc: SingletonError) -> tuple[Any, int]:
    if isinstance(exc, ServiceUnavailable):
        logger.warning("Dashboard: service unavailable: %s", exc)
        status, message = 503, "Redis or the message broker could not be reached; try again shortly."
    else:
        status, message = 400, str(exc)
    if _wants_json():
        return _json_error(status, exc.code, message), status
    return render_template("dashboard/error.html", status=status, message=message), status


@dashboard.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Any, int]:
    status = exc.code or 500
    if _wants_json():
        return _json_error(status, f"http_{status}", exc.description or exc.name), status
    return render_template("dashboard/error.html", status=status, message=exc.description), status
