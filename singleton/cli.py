"""``celery -A proj instances ...``: manage orchestration instances from a shell.

Registered as a Celery sub-command through the ``celery.commands`` entry point. Each
command prints a readable table by default, or JSON with ``--json``. Exit codes, by
the error's category (the HTTP API derives its status codes from the same one): 0
success; 2 bad input (invalid ID, input or data that is not JSON); 3 not found (no
such orchestrator or instance); 4 conflict (the instance is live, or already
finished); 5 Redis or the broker unavailable; 1 any other refusal. Errors print one line on
stderr (and, with ``--json``, ``{"error": <code>, "message": ...}`` on stdout).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from celery.bin.base import CeleryCommand, handle_preload_options

from .client import OrchestrationClient
from .errors import ErrorCategory, InstanceNotFound, InvalidInput, SingletonError
from .status import OrchestrationStatus, RuntimeStatus

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5
EXIT_LIMITED = 6  # a per-instance limit is reached (HTTP 429): retry later
# The exit code of each kind of error; the HTTP API keeps its status codes by the same key.
EXIT_CODES: dict[ErrorCategory, int] = {
    ErrorCategory.BAD_INPUT: EXIT_BAD_INPUT,
    ErrorCategory.NOT_FOUND: EXIT_NOT_FOUND,
    ErrorCategory.CONFLICT: EXIT_CONFLICT,
    ErrorCategory.PRECONDITION_FAILED: EXIT_CONFLICT,
    ErrorCategory.GONE: EXIT_CONFLICT,
    ErrorCategory.TIMEOUT: EXIT_FAILED,
    ErrorCategory.UNAVAILABLE: EXIT_UNAVAILABLE,
    ErrorCategory.INTERNAL: EXIT_FAILED,
    ErrorCategory.TOO_LARGE: EXIT_BAD_INPUT,
    ErrorCategory.TOO_MANY: EXIT_LIMITED,
}
LIST_COLUMNS = ("instance", "name", "status", "created", "updated")


@click.group(name="instances")
@click.pass_context
@handle_preload_options
def instances(ctx: click.Context) -> None:
    """Start, inspect and manage singleton orchestration instances."""


def _command(fn: Callable) -> click.Command:
    """Register `fn` as a sub-command that takes --json and gets (client, as_json)."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)
    fn = click.pass_context(fn)
    name = fn.__name__.rstrip("_").replace("_", "-")
    return instances.command(name=name, cls=CeleryCommand)(fn)


def _client(ctx: click.Context) -> OrchestrationClient:
    return OrchestrationClient(ctx.obj.app)


@contextmanager
def _reported(ctx: click.Context, as_json: bool) -> Iterator[None]:
    """Turn a SingletonError into one line and its exit code."""
    try:
        yield
    except SingletonError as exc:
        code = EXIT_CODES[exc.category]
        if as_json:
            click.echo(json.dumps({"error": exc.code, "message": str(exc)}))
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(code)


def _json_arg(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not JSON ({exc})") from None


def _say(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


# -- commands -------------------------------------------------------------------
@_command
@click.argument("name")
@click.argument("instance_id", required=False)
@click.option("--input", "input_json", metavar="JSON", help="The orchestration's input, as JSON.")
def start(ctx: click.Context, name: str, instance_id: str | None, input_json: str | None,
          as_json: bool) -> None:
    """Start orchestrator NAME as instance ID (a new random ID when omitted)."""
    with _reported(ctx, as_json):
        value = _json_arg(input_json, "--input")
        started = _client(ctx).start_new(name, instance_id, value)
    _say(as_json, {"instanceId": started, "name": name}, f"Started {name} as instance {started}")


@_command
@click.argument("instance_id")
def status(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """Show the status of instance INSTANCE_ID."""
    with _reported(ctx, as_json):
        found = _client(ctx).get_status(instance_id)
        if found is None:
            raise InstanceNotFound(instance_id)
    _say(as_json, found.to_json(), _details(found))


@_command
@click.option("--status", "statuses", multiple=True,
              type=click.Choice([s.value for s in RuntimeStatus], case_sensitive=False),
              help="Only instances with this status, in any case (repeatable).")
@click.option("--prefix", help="Only instance IDs starting with this.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True,
              help="At most this many instances, newest first.")
def list_(ctx: click.Context, statuses: tuple[str, ...], prefix: str | None, limit: int,
          as_json: bool) -> None:
    """List instances, newest first."""
    with _reported(ctx, as_json):
        found = _newest(_client(ctx), statuses or None, prefix, limit)
    _say(as_json, [s.to_json() for s in found], _table([_row(s) for s in found]))


def _newest(client: OrchestrationClient, statuses: Any, prefix: str | None,
            limit: int) -> list[OrchestrationStatus]:
    matching = client.iter_status_by(runtime_status=statuses, instance_id_prefix=prefix,
                                     page_size=limit)
    return list(itertools.islice(matching, limit))


@_command
@click.argument("instance_id")
@click.option("--reason", help="Why; stored as the run's output.")
def terminate(ctx: click.Context, instance_id: str, reason: str | None, as_json: bool) -> None:
    """Terminate the live run of INSTANCE_ID."""
    with _reported(ctx, as_json):
        _client(ctx).terminate(instance_id, reason)
    _say(as_json, {"instanceId": instance_id, "terminated": True}, f"Terminated {instance_id}")


@_command
@click.argument("instance_id")
@click.argument("event_name")
@click.option("--data", "data_json", metavar="JSON", help="The event's data, as JSON.")
def raise_event(ctx: click.Context, instance_id: str, event_name: str, data_json: str | None,
                as_json: bool) -> None:
    """Send event EVENT_NAME (with --data) to instance INSTANCE_ID."""
    with _reported(ctx, as_json):
        data = _json_arg(data_json, "--data")
        _client(ctx).raise_event(instance_id, event_name, data)
    _say(as_json, {"instanceId": instance_id, "event": event_name},
         f"Raised {event_name} on {instance_id}")


@_command
@click.argument("instance_id")
@click.option("--reason", help="Why; kept with the instance.")
def suspend(ctx: click.Context, instance_id: str, reason: str | None, as_json: bool) -> None:
    """Suspend the live run of INSTANCE_ID."""
    with _reported(ctx, as_json):
        _client(ctx).suspend(instance_id, reason)
    _say(as_json, {"instanceId": instance_id, "suspended": True}, f"Suspended {instance_id}")


@_command
@click.argument("instance_id")
@click.option("--reason", help="Why; kept with the instance.")
def resume(ctx: click.Context, instance_id: str, reason: str | None, as_json: bool) -> None:
    """Resume the suspended run of INSTANCE_ID."""
    with _reported(ctx, as_json):
        _client(ctx).resume(instance_id, reason)
    _say(as_json, {"instanceId": instance_id, "resumed": True}, f"Resumed {instance_id}")


@_command
@click.argument("instance_id")
def purge(ctx: click.Context, instance_id: str, as_json: bool) -> None:
    """Delete the record of finished instance INSTANCE_ID."""
    with _reported(ctx, as_json):
        if not _client(ctx).purge_instance_history(instance_id):
            raise InstanceNotFound(instance_id)
    _say(as_json, {"instanceId": instance_id, "purged": True}, f"Purged {instance_id}")


# -- output ---------------------------------------------------------------------
def _details(status: OrchestrationStatus) -> str:
    # The table adds the run ID (which Flower shows as singleton_run) to the status JSON.
    data = {**status.to_json(), "runId": status.run_id}
    rows = [(key, value if isinstance(value, str) else json.dumps(value)) for key, value in data.items()]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _row(status: OrchestrationStatus) -> tuple[str, ...]:
    return (status.instance_id, status.name, status.runtime_status.value,
            _short_time(status.created_time), _short_time(status.last_updated_time))


def _short_time(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return "No instances."
    header = tuple(c.upper() for c in LIST_COLUMNS)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])
