"""Read what a request carries: its JSON body and its query parameters, strictly."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flask import request

from singleton import RuntimeStatus
from singleton.errors import ErrorCategory

from .errors import ApiError

# Durable Functions' statuses that this layer never produces: filtering on them is
# valid and simply matches nothing.
UNPRODUCED_STATUSES = frozenset({"canceled"})
_PRODUCED = {status.value.lower(): status for status in RuntimeStatus}

# An unencoded '+' in a query string arrives as a space: "...T05:18:49 00:00".
_SPACED_OFFSET = re.compile(r" (\d\d(:?\d\d)?)$")
_DIGITS = re.compile(r"[0-9]+")


def json_body() -> Any:
    """Return the request body as a JSON value; an empty body (any content type) is None.

    Raises:
        ApiError: 400 ``invalid_json`` when the body is not JSON; werkzeug's 413
            when it is longer than MAX_CONTENT_LENGTH.
    """
    data = request.get_data(cache=True)
    if not data:
        return None
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ApiError(ErrorCategory.BAD_INPUT, "invalid_json", "The request body is not valid JSON.",
                       str(exc)) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def flag(name: str, default: bool) -> bool:
    """Return boolean query parameter `name` (true/false, any case), or `default` if absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise invalid_parameter(name, "must be true or false")
    return raw.lower() == "true"


def number(name: str, low: float, high: float) -> float | None:
    """Return number query parameter `name` clamped to [low, high], or None if absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or value < 0:  # NaN or negative
        raise invalid_parameter(name, "must be a non-negative number of seconds")
    return min(max(value, low), high)


def integer(name: str, default: int, high: int) -> int:
    """Return integer query parameter `name` (at least 1, at most `high`), or `default`."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not raw.strip("0"):
        raise invalid_parameter(name, "must be a positive integer")
    digits = raw.lstrip("0")
    # A number longer than `high` has digits is above it: clamp without parsing it.
    return high if len(digits) > len(str(high)) else min(int(digits), high)


def moment(name: str) -> datetime | None:
    """Return ISO-8601 query parameter `name` as an aware UTC datetime, or None if absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(_SPACED_OFFSET.sub(r"+\1", raw.strip()))
        # An offset can carry the first or last day past datetime's range: OverflowError.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise invalid_parameter(name, "must be an ISO-8601 time, e.g. 2026-11-26T05:18:49Z") from exc


def runtime_statuses(name: str = "runtimeStatus") -> list[RuntimeStatus] | None:
    """Return the statuses asked for (comma lists and/or repeats), or None when no filter.

    Statuses this layer never produces are dropped, so asking only for those gives an
    empty list, which the client reads as "matches nothing".
    """
    given = request.args.getlist(name)
    if not given:
        return None
    names = [part.strip() for raw in given for part in raw.split(",")]
    if not all(names):
        raise invalid_parameter(name, "must name runtime statuses, with no empty entry")
    unknown = [n for n in names if n.lower() not in _PRODUCED and n.lower() not in UNPRODUCED_STATUSES]
    if unknown:
        raise invalid_parameter(name, f"unknown runtime status {unknown[0]!r}")
    return [_PRODUCED[n.lower()] for n in names if n.lower() in _PRODUCED]


def choice(name: str, allowed: Iterable[str]) -> str | None:
    """Return query parameter `name` if it is one of `allowed`, None if absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    options = list(allowed)
    if raw not in options:
        raise invalid_parameter(name, f"must be one of {', '.join(options)}")
    return raw


def invalid_parameter(name: str, reason: str) -> ApiError:
    """Return the 400 error for a query parameter that cannot be read."""
    return ApiError(ErrorCategory.BAD_INPUT, "invalid_query_parameter",
                    f"The query parameter '{name}' is invalid.", f"'{name}' {reason}.")
