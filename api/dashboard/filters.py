"""The list page's filters, read from and written back to the URL, and the page they select."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.datastructures import MultiDict

from singleton import OrchestrationClient, OrchestrationStatus, RuntimeStatus

PRESETS = {"15m": ("last 15 minutes", timedelta(minutes=15)), "1h": ("last hour", timedelta(hours=1)),
           "1d": ("last day", timedelta(days=1)), "1w": ("last week", timedelta(weeks=1))}
PAGE_SIZES = (10, 25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 25
REFRESH_CHOICES = {"": "off", "2": "2 s", "10": "10 s"}
# The store filters by status, time and prefix; the orchestrator name is filtered here,
# reading at most this many store pages to fill one dashboard page.
NAME_FILTER_PAGES = 5
MAX_PREFIX = 256


class ListQueryError(ValueError):
    """A filter in the URL is not one the list page understands."""


@dataclass(frozen=True)
class Filters:
    """What the list page shows: every field comes from, and goes back to, the URL."""

    statuses: tuple[RuntimeStatus, ...] = ()
    preset: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    custom_from: str = ""
    custom_to: str = ""
    prefix: str = ""
    name: str = ""
    page_size: int = DEFAULT_PAGE_SIZE
    token: str = ""
    refresh: str = ""

    @classmethod
    def empty(cls) -> Filters:
        """Return the filters of the plain list page."""
        return cls()

    @classmethod
    def parse(cls, args: Mapping[str, Any], now: datetime) -> Filters:
        """Read the filters from query arguments.

        Raises:
            ListQueryError: an unknown status, preset, page size or refresh, or a bad time.
        """
        multi = args if isinstance(args, MultiDict) else MultiDict(args)
        try:
            statuses = tuple(RuntimeStatus(s) for s in multi.getlist("status"))
        except ValueError as exc:
            raise ListQueryError(f"Unknown runtime status: {exc}.") from None
        preset = multi.get("range", "")
        if preset not in PRESETS and preset not in ("", "custom"):
            raise ListQueryError(f"Unknown time range {preset!r}.")
        custom_from, custom_to = multi.get("from", ""), multi.get("to", "")
        created_from = created_to = None
        if preset in PRESETS:
            created_from = now - PRESETS[preset][1]
        elif preset == "custom":
            created_from, created_to = _moment(custom_from, "from"), _moment(custom_to, "to")
        size = multi.get("top", str(DEFAULT_PAGE_SIZE))
        if not size.isdigit() or int(size) not in PAGE_SIZES:
            raise ListQueryError(f"The page size must be one of {', '.join(map(str, PAGE_SIZES))}.")
        refresh = multi.get("refresh", "")
        if refresh not in REFRESH_CHOICES:
            raise ListQueryError("Auto-refresh is off, 2 or 10 seconds.")
        prefix = multi.get("prefix", "").strip()
        if len(prefix) > MAX_PREFIX:
            raise ListQueryError(f"The instance ID prefix is longer than {MAX_PREFIX} characters.")
        return cls(statuses, preset, created_from, created_to, custom_from, custom_to, prefix,
                   multi.get("name", "").strip(), int(size), multi.get("page", ""), refresh)

    def args(self, **changes: Any) -> MultiDict:
        """Return the query arguments of these filters (with `changes`), empty ones left out."""
        f = replace(self, **changes)
        pairs = [("status", s.value) for s in f.statuses]
        pairs += [(k, v) for k, v in (("range", f.preset), ("prefix", f.prefix), ("name", f.name)) if v]
        if f.preset == "custom":
            pairs += [(k, v) for k, v in (("from", f.custom_from), ("to", f.custom_to)) if v]
        if f.page_size != DEFAULT_PAGE_SIZE:
            pairs.append(("top", str(f.page_size)))
        pairs += [(k, v) for k, v in (("refresh", f.refresh), ("page", f.token)) if v]
        return MultiDict(pairs)

    @property
    def narrowed(self) -> bool:
        """Return True when any filter narrows the list."""
        return bool(self.statuses or self.preset or self.prefix or self.name)


def _moment(text: str, which: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ListQueryError(f"The '{which}' time is not a date and time (YYYY-MM-DDTHH:MM).") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class Page:
    """The instances of one list page and the token of the next (empty at the end)."""

    instances: list[OrchestrationStatus]
    next_token: str


def matching_page(client: OrchestrationClient, filters: Filters) -> Page:
    """Read one page through the client's continuation tokens (never counting records).

    Raises:
        InvalidContinuationToken: the token in the URL was not issued by the client.
    """
    found: list[OrchestrationStatus] = []
    token = filters.token or None
    for _ in range(NAME_FILTER_PAGES if filters.name else 1):
        page = client.get_status_by(
            runtime_status=filters.statuses or None, created_time_from=filters.created_from,
            created_time_to=filters.created_to, instance_id_prefix=filters.prefix or None,
            page_size=filters.page_size - len(found), continuation_token=token, show_input=False,
        )
        found += [s for s in page.instances if not filters.name or s.name == filters.name]
        token = page.continuation_token
        if token is None or len(found) >= filters.page_size:
            break
    return Page(found, token or "")


def each_matching(client: OrchestrationClient, filters: Filters, limit: int) -> tuple[list[str], bool]:
    """Return the IDs of up to `limit` instances matching the filters (from the first page on)
    and whether more remain."""
    ids: list[str] = []
    current = replace(filters, token="", page_size=max(PAGE_SIZES))
    while True:
        page = matching_page(client, current)
        ids += [s.instance_id for s in page.instances]
        if len(ids) >= limit:
            return ids[:limit], len(ids) > limit or bool(page.next_token)
        if not page.next_token:
            return ids, False
        current = replace(current, token=page.next_token)
