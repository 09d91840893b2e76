"""The one place where exceptions become JSON error responses.

Every error body is ``{"Message", "ExceptionMessage", "code"}`` (the first two are the
fields Durable Functions' clients read; ``code`` is our stable error code), plus the
data of the error (``instanceId``, ``runtimeStatus``, ...). Never HTML, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from singleton import (
    InstanceAlreadyExists,
    InstanceError,
    InstanceIsLive,
    InstanceIsTerminal,
    InstanceNotFound,
    InvalidArgument,
    InvalidContinuationToken,
    InvalidEventName,
    InvalidInput,
    InvalidInstanceId,
    InvalidTransition,
    OrchestratorNotFound,
    ServiceUnavailable,
    SingletonError,
)

from . import urls

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying after a 503.
RETRY_AFTER_UNAVAILABLE = 10

_SINGLETON_STATUS: dict[type[SingletonError], int] = {
    InvalidInstanceId: 400,
    InvalidInput: 400,
    InvalidContinuationToken: 400,
    InvalidEventName: 400,
    InvalidArgument: 400,
    OrchestratorNotFound: 404,
    InstanceNotFound: 404,
    InstanceAlreadyExists: 409,
    InstanceIsLive: 409,
    InvalidTransition: 409,
    InstanceIsTerminal: 410,
    ServiceUnavailable: 503,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class ApiError(Exception):
    """An error of the HTTP layer itself (bad query parameter, missing key, ...)."""

    def __init__(self, status: int, code: str, message: str, detail: str | None = None) -> None:
        """Describe the error.

        Args:
            status: the HTTP status code.
            code: our stable error code, e.g. ``invalid_query_parameter``.
            message: the ``Message`` field, one sentence.
            detail: the ``ExceptionMessage`` field; `message` when None.
        """
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.detail = message if detail is None else detail


def error_response(status: int, code: str, message: str, detail: str, **extra: Any) -> Response:
    """Return the JSON error response every error path uses."""
    body = {"Message": message, "ExceptionMessage": detail, "code": code, **extra}
    response = current_app.json.response(body)
    response.status_code = status
    return response


def install(app: Flask) -> None:
    """Register the error handlers on `app`."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(SingletonError, _singleton_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.detail)


def _singleton_error(exc: SingletonError) -> Response:
    status = next((s for t, s in _SINGLETON_STATUS.items() if isinstance(exc, t)), 500)
    if isinstance(exc, ServiceUnavailable):
        return _unavailable(exc)
    if status == 500:
        return _unexpected(exc)
    return error_response(status, exc.code, str(exc), str(exc), **_instance_fields(exc))


def _instance_fields(exc: SingletonError) -> dict[str, Any]:
    if not isinstance(exc, InstanceError):
        return {}
    fields: dict[str, Any] = {"instanceId": exc.instance_id}
    runtime_status = getattr(exc, "runtime_status", None)
    if runtime_status is not None:
        fields["runtimeStatus"] = str(runtime_status)
    if isinstance(exc, InstanceAlreadyExists):
        # So the caller can follow the run that holds the ID.
        fields["statusQueryGetUri"] = urls.status_query_uri(exc.instance_id)
    return fields


def _unavailable(exc: ServiceUnavailable) -> Response:
    # The detail may name hosts; it goes to the log, not to the caller.
    logger.warning("Service unavailable: %s", exc)
    response = error_response(
        503,
        exc.code,
        "The service is temporarily unavailable.",
        "Redis or the message broker could not be reached; nothing was left claimed.",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, f"http_{status}")
    response = error_response(status, code, exc.name, exc.description or exc.name)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":  # keeps Allow on a 405
            response.headers[name] = value
    return response


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # Flask routes these to _http_error; belt and braces
        return _http_error(exc)
    logger.exception("Unexpected error while answering a request", exc_info=exc)
    return error_response(
        500, "internal_error", "An unexpected error occurred.", "The error was logged on the server."
    )
