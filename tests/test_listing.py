"""Listing and paging with get_status_by, over records claimed straight through the store.

The records are claimed with Store.claim on the client's own prefix, so nothing is
published to the broker. Other modules leave records in the same index, so every
test narrows the listing to its own records with a time window or an ID prefix.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from singleton import OrchestrationClient, OrchestrationStatus, RuntimeStatus
from singleton.queries import SCAN_FACTOR
from singleton.runtime import runtime
from singleton.store import SHARDS, Store

COUNT = 25
PAGE = 7
# Record i gets status CYCLE[i % 5]; Pending and Running are left live.
CYCLE = [
    RuntimeStatus.PENDING,
    RuntimeStatus.RUNNING,
    RuntimeStatus.COMPLETED,
    RuntimeStatus.FAILED,
    RuntimeStatus.TERMINATED,
]


def redis_now(redis_client: redis.Redis) -> datetime:
    seconds, micros = redis_client.time()
    return datetime.fromtimestamp(seconds + micros / 1_000_000, tz=UTC)


def create(store: Store, instance_id: str, status: RuntimeStatus) -> None:
    run_id = uuid.uuid4().hex
    input_json = json.dumps({"seconds": 0, "key": instance_id})
    claim = store.claim(instance_id, name="Probe", run_id=run_id, input_json=input_json)
    assert claim.claimed
    if status is RuntimeStatus.RUNNING:
        gate = store.begin_step(instance_id, run_id=run_id, task_id="step-1", token="tok", lease_s=3600)
        assert gate.outcome == "run"
    elif status is RuntimeStatus.TERMINATED:
        assert store.terminate(instance_id, reason_json=json.dumps("listing test"))[0] == "ok"
    elif status.is_terminal:
        output = json.dumps(f"out-{instance_id}")
        assert store.end_run(instance_id, run_id=run_id, status=status, output_json=output)


def remove(store: Store, instance_ids: list[str]) -> None:
    for instance_id in instance_ids:
        store.terminate(instance_id, reason_json="null")
        store.purge(instance_id)


def list_pages(client: OrchestrationClient, **filters: Any) -> list[list[OrchestrationStatus]]:
    """Follow continuation tokens until None; return every page's instances."""
    pages: list[list[OrchestrationStatus]] = []
    token = None
    for _ in range(10_000):
        page = client.get_status_by(continuation_token=token, **filters)
        pages.append(page.instances)
        token = page.continuation_token
        if token is None:
            return pages
    raise AssertionError("the continuation tokens never ended")


def ids(pages: list[list[OrchestrationStatus]]) -> list[str]:
    return [s.instance_id for page in pages for s in page]


@dataclass
class Records:
    prefix: str
    ids: list[str]  # in creation order, oldest first
    since: datetime  # Redis time just before the first claim

    @property
    def newest_first(self) -> list[str]:
        return list(reversed(self.ids))

    def with_status(self, *statuses: RuntimeStatus) -> list[str]:
        return [i for n, i in enumerate(self.ids) if CYCLE[n % len(CYCLE)] in statuses]


@pytest.fixture(scope="module")
def store(app: Any) -> Store:
    return runtime(app).store


@pytest.fixture(scope="module")
def records(store: Store, redis_client: redis.Redis) -> Iterator[Records]:
    prefix = f"lst-{uuid.uuid4().hex[:8]}-"
    instance_ids = [f"{prefix}{n:02d}" for n in range(COUNT)]
    since = redis_now(redis_client)
    for n, instance_id in enumerate(instance_ids):
        create(store, instance_id, CYCLE[n % len(CYCLE)])
    yield Records(prefix, instance_ids, since)
    remove(store, instance_ids)


# -- paging ----------------------------------------------------------------------------


def test_paging_by_seven_lists_every_record_exactly_once_newest_first(
    client: OrchestrationClient, records: Records
) -> None:
    pages = list_pages(client, created_time_from=records.since, page_size=PAGE)

    assert ids(pages) == records.newest_first
    assert [len(p) for p in pages[:-1]] == [PAGE] * (len(pages) - 1)
    assert 1 <= len(pages[-1]) <= PAGE
    created = [s.created_time for page in pages for s in page]
    assert created == sorted(created, reverse=True)
    assert len(set(created)) == COUNT


def test_paging_with_an_id_prefix_lists_every_record_exactly_once_newest_first(
    client: OrchestrationClient, records: Records
) -> None:
    pages = list_pages(client, instance_id_prefix=records.prefix, page_size=PAGE)

    assert ids(pages) == records.newest_first
    assert all(len(page) <= PAGE for page in pages)


def test_iter_status_by_follows_the_tokens_to_every_match_newest_first(
    client: OrchestrationClient, records: Records
) -> None:
    matching = client.iter_status_by(instance_id_prefix=records.prefix, page_size=2,
                                     runtime_status=[RuntimeStatus.FAILED, RuntimeStatus.PENDING])

    expected = [i for i in records.newest_first
                if i in records.with_status(RuntimeStatus.FAILED, RuntimeStatus.PENDING)]
    assert [s.instance_id for s in matching] == expected


def test_listed_statuses_carry_the_records_fields(client: OrchestrationClient, records: Records) -> None:
    pages = list_pages(client, instance_id_prefix=records.prefix)
    listed = {s.instance_id: s for page in pages for s in page}

    for n, instance_id in enumerate(records.ids):
        status = listed[instance_id]
        assert status.name == "Probe"
        assert status.runtime_status is CYCLE[n % len(CYCLE)]
        assert status.input == {"seconds": 0, "key": instance_id}
        assert status == client.get_status(instance_id)
    completed = records.with_status(RuntimeStatus.COMPLETED)[0]
    assert listed[completed].output == f"out-{completed}"


def test_show_input_false_hides_the_input_of_listed_records(
    client: OrchestrationClient, records: Records
) -> None:
    pages = list_pages(client, instance_id_prefix=records.prefix, show_input=False)

    assert ids(pages) == records.newest_first
    assert all(s.input is None for page in pages for s in page)


def test_one_page_larger_than_the_result_has_no_continuation_token(
    client: OrchestrationClient, records: Records
) -> None:
    page = client.get_status_by(created_time_from=records.since, page_size=COUNT + 10)

    assert [s.instance_id for s in page.instances] == records.newest_first
    assert page.continuation_token is None


# -- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statuses",
    [
        [RuntimeStatus.COMPLETED],
        [RuntimeStatus.PENDING, RuntimeStatus.RUNNING],
        [RuntimeStatus.FAILED, RuntimeStatus.TERMINATED],
        ["Running"],
    ],
    ids=["completed", "live", "failed-or-terminated", "by-string"],
)
def test_runtime_status_filter_lists_only_records_with_those_statuses(
    client: OrchestrationClient, records: Records, statuses: list[Any]
) -> None:
    wanted = {RuntimeStatus(s) for s in statuses}

    pages = list_pages(client, created_time_from=records.since, runtime_status=statuses, page_size=PAGE)

    expected = [i for i in records.newest_first if i in set(records.with_status(*wanted))]
    assert ids(pages) == expected
    assert all(s.runtime_status in wanted for page in pages for s in page)
    assert all(len(page) <= PAGE for page in pages)


def test_status_and_prefix_filters_combine(client: OrchestrationClient, records: Records) -> None:
    pages = list_pages(
        client,
        instance_id_prefix=f"{records.prefix}1",
        runtime_status=[RuntimeStatus.FAILED],
        page_size=PAGE,
    )

    assert ids(pages) == [f"{records.prefix}18", f"{records.prefix}13"]


def test_instance_id_prefix_filter_lists_only_matching_ids(
    client: OrchestrationClient, records: Records
) -> None:
    pages = list_pages(client, instance_id_prefix=f"{records.prefix}1", page_size=3)

    assert ids(pages) == [f"{records.prefix}{n}" for n in range(19, 9, -1)]
    assert all(len(page) <= 3 for page in pages)


def test_instance_id_prefix_matching_nothing_lists_nothing(
    client: OrchestrationClient, records: Records
) -> None:
    pages = list_pages(client, instance_id_prefix=f"{records.prefix}x", page_size=PAGE)

    assert ids(pages) == []


def test_created_time_from_and_to_are_inclusive_bounds(client: OrchestrationClient, records: Records) -> None:
    first = client.get_status(records.ids[5])
    last = client.get_status(records.ids[15])

    pages = list_pages(
        client, created_time_from=first.created_time, created_time_to=last.created_time, page_size=PAGE
    )

    assert ids(pages) == list(reversed(records.ids[5:16]))


def test_created_time_to_alone_excludes_newer_records(client: OrchestrationClient, records: Records) -> None:
    cut = client.get_status(records.ids[9]).created_time

    pages = list_pages(client, instance_id_prefix=records.prefix, created_time_to=cut, page_size=PAGE)

    assert ids(pages) == list(reversed(records.ids[:10]))


def test_created_time_from_after_every_record_lists_nothing(
    client: OrchestrationClient, records: Records
) -> None:
    newest = client.get_status(records.ids[-1]).created_time

    page = client.get_status_by(
        instance_id_prefix=records.prefix, created_time_from=newest + timedelta(microseconds=1)
    )

    assert page.instances == []
    assert page.continuation_token is None


def test_naive_created_time_bounds_are_read_as_utc(client: OrchestrationClient, records: Records) -> None:
    first = client.get_status(records.ids[20]).created_time
    last = client.get_status(records.ids[22]).created_time

    pages = list_pages(
        client,
        created_time_from=first.replace(tzinfo=None),
        created_time_to=last.replace(tzinfo=None),
    )

    assert ids(pages) == list(reversed(records.ids[20:23]))


# -- the scan bound --------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 2, 7])
def test_a_filtered_page_never_returns_more_than_page_size_items(
    client: OrchestrationClient, records: Records, page_size: int
) -> None:
    statuses = [RuntimeStatus.PENDING, RuntimeStatus.RUNNING, RuntimeStatus.COMPLETED]
    filters = {"instance_id_prefix": records.prefix, "runtime_status": statuses, "page_size": page_size}

    pages = list_pages(client, **filters)

    assert all(len(page) <= page_size for page in pages)
    matching = set(records.with_status(*statuses))
    assert ids(pages) == [i for i in records.newest_first if i in matching]


def test_a_filtered_page_examines_a_bounded_number_of_entries_and_hands_on_a_token(
    client: OrchestrationClient, records: Records
) -> None:
    # Only the oldest record matches; a page of one may examine SCAN_FACTOR entries,
    # so the first page comes back empty with a token rather than scanning them all.
    assert COUNT > SCAN_FACTOR
    filters = {
        "created_time_from": records.since,
        "instance_id_prefix": f"{records.prefix}00",
        "page_size": 1,
    }
    first = client.get_status_by(**filters)

    assert first.instances == []
    assert first.continuation_token is not None
    pages = list_pages(client, **filters)
    assert ids(pages) == [records.ids[0]]
    assert len(pages) == -(-COUNT // SCAN_FACTOR)


def test_an_unfiltered_page_examines_at_most_page_size_entries(
    client: OrchestrationClient, records: Records
) -> None:
    page = client.get_status_by(created_time_from=records.since, page_size=PAGE)

    assert [s.instance_id for s in page.instances] == records.newest_first[:PAGE]
    assert page.continuation_token is not None


# -- records concentrated in one shard -------------------------------------------------


def _shard(instance_id: str) -> int:
    return zlib.crc32(instance_id.encode()) % SHARDS


def test_paging_lists_every_record_when_most_of_them_share_one_shard(
    client: OrchestrationClient, store: Store, redis_client: redis.Redis
) -> None:
    tag = f"lst1-{uuid.uuid4().hex[:8]}"
    candidates = [f"{tag}-{n}" for n in range(400)]
    crowded = [i for i in candidates if _shard(i) == _shard(candidates[0])][:6]
    lonely = next(i for i in candidates if _shard(i) != _shard(candidates[0]))
    created = [lonely, *crowded]  # the lonely record is the oldest
    since = redis_now(redis_client)
    try:
        for instance_id in created:
            create(store, instance_id, RuntimeStatus.COMPLETED)

        pages = list_pages(client, created_time_from=since, page_size=3)

        assert sorted(ids(pages)) == sorted(created)
        assert ids(pages) == list(reversed(created))
    finally:
        remove(store, created)


def test_filtered_paging_lists_every_match_when_most_records_share_one_shard(
    client: OrchestrationClient, store: Store, redis_client: redis.Redis
) -> None:
    # A filtered page asks each shard for only a share of its budget: with one crowded
    # shard, the floor of the full shards must still keep every match, in order.
    tag = f"lst2-{uuid.uuid4().hex[:8]}"
    candidates = [f"{tag}-{n}" for n in range(600)]
    crowded = [i for i in candidates if _shard(i) == _shard(candidates[0])][:12]
    others = [i for i in candidates if _shard(i) != _shard(candidates[0])][:5]
    created = [others[0], *crowded[:6], *others[1:], *crowded[6:]]
    since = redis_now(redis_client)
    try:
        # Sparse matches: a page examines past the crowded shard's fetched rows.
        completed = [*others, crowded[0], crowded[7]]
        for instance_id in created:
            status = RuntimeStatus.COMPLETED if instance_id in completed else RuntimeStatus.FAILED
            create(store, instance_id, status)
        completed = [i for i in created if i in completed]
        for page_size in (1, 2, 5):
            pages = list_pages(client, created_time_from=since, page_size=page_size,
                               runtime_status=[RuntimeStatus.COMPLETED])
            assert ids(pages) == list(reversed(completed)), page_size
    finally:
        remove(store, created)
