"""The one place where exceptions become JSON error responses.

Every error body is ``{"Message", "ExceptionMessage", "code"}`` (the first two are the
fields Durable Functions' clients read; ``code`` is our stable error code), plus the
data of the error (``instanceId``, ``runtimeStatus``, ...). Never HTML, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response
from werkzeug.exceptions import HTTPException

from singleton import InstanceAlreadyExists, InstanceError, ServiceUnavailable, SingletonError
from singleton.errors import ErrorCategory

from . import urls
from .responses import json_response

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying after a 503.
RETRY_AFTER_UNAVAILABLE = 10

# The HTTP status of each kind of error; the CLI keeps its exit codes by the same key.
HTTP_STATUS: dict[ErrorCategory, int] = {
    ErrorCategory.BAD_INPUT: 400,
    ErrorCategory.NOT_FOUND: 404,
    ErrorCategory.CONFLICT: 409,
    ErrorCategory.PRECONDITION_FAILED: 412,
    ErrorCategory.GONE: 410,
    ErrorCategory.TIMEOUT: 504,
    ErrorCategory.UNAVAILABLE: 503,
    ErrorCategory.INTERNAL: 500,
    ErrorCategory.TOO_LARGE: 413,
    ErrorCategory.TOO_MANY: 429,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "too_many_requests",
}


class ApiError(Exception):
    """An error of the HTTP layer itself (bad query parameter, missing key, ...)."""

    def __init__(
        self, category: ErrorCategory, code: str, message: str, detail: str | None = None
    ) -> None:
        """Describe the error.

        Args:
            category: what kind of refusal it is; its HTTP status comes from HTTP_STATUS.
            code: our stable error code, e.g. ``invalid_query_parameter``.
            message: the ``Message`` field, one sentence.
            detail: the ``ExceptionMessage`` field; `message` when None.
        """
        super().__init__(message)
        self.category, self.code, self.message = category, code, message
        self.status = HTTP_STATUS[category]
        self.detail = message if detail is None else detail


def error_response(status: int, code: str, message: str, detail: str, **extra: Any) -> Response:
    """Return the JSON error response every error path uses."""
    body = {"Message": message, "ExceptionMessage": detail, "code": code, **extra}
    return json_response(body, status)


def install(scope: Flask | Blueprint) -> None:
    """Register the error handlers on an app (every route) or a blueprint (its routes)."""
    scope.register_error_handler(ApiError, _api_error)
    scope.register_error_handler(SingletonError, _singleton_error)
    scope.register_error_handler(HTTPException, _http_error)
    scope.register_error_handler(Exception, _unexpected)


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.detail)


def _singleton_error(exc: SingletonError) -> Response:
    if isinstance(exc, ServiceUnavailable):
        return _unavailable(exc)
    status = HTTP_STATUS[exc.category]
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
