"""Several processes on one database: who owns a job, leases, take-over, the bot-wide limit.

Each test runs on SQLite and on PostgreSQL (the ``store`` fixture); two "processes" are two
``Store``s on the same database with different lease terms.
"""

from __future__ import annotations

import asyncio

import pytest
from store_fixtures import FakeClock, create

from bot.store import JobState, LeaseTerms, Store

LEASE = 30.0


def process(store: Store, name: str) -> Store:
    """Another process's view of ``store``'s database (same clock and limits)."""
    return Store.on(store.db, limits=store.limits, clock=store.clock, lease=LeaseTerms(name, LEASE))


async def owner_of(store: Store, job_id: int) -> tuple[str | None, float | None]:
    row = await store.db.fetch_one("SELECT owner, lease_until FROM jobs WHERE id = ?", (job_id,))
    assert row is not None
    return row[0], row[1]


async def test_a_claim_makes_the_process_the_owner_under_a_lease(
    store: Store, clock: FakeClock
) -> None:
    a = process(store, "a")
    job = await create(a, 1)
    claimed = await a.queue.claim_next()
    assert claimed is not None and claimed.id == job.id
    owner, until = await owner_of(store, job.id)
    assert owner == "a"
    assert until == pytest.approx(clock().timestamp() + LEASE)


async def test_a_lapsed_lease_is_taken_over_once(store: Store, clock: FakeClock) -> None:
    a, b, c = process(store, "a"), process(store, "b"), process(store, "c")
    job = await create(a, 1)
    await a.queue.claim_next()
    assert await b.leases.take_over() == []  # a's lease holds
    clock.advance(seconds=LEASE + 1)
    taken = await b.leases.take_over()
    assert [j.id for j in taken] == [job.id]
    assert taken[0].state is JobState.UPLOADING  # resumed from where a left it
    assert (await owner_of(store, job.id))[0] == "b"
    assert await c.leases.take_over() == []  # b holds it now
    # a comes back: it learns the job is no longer its own, and lets go
    assert await a.leases.renew([job.id]) == {job.id}


async def test_renewing_keeps_a_job_from_being_taken(store: Store, clock: FakeClock) -> None:
    a, b = process(store, "a"), process(store, "b")
    job = await create(a, 1)
    await a.queue.claim_next()
    for _ in range(4):
        clock.advance(seconds=LEASE * 0.6)
        assert await a.leases.renew([job.id]) == set()
        assert await b.leases.take_over() == []


async def test_concurrent_take_overs_hand_each_job_to_one_process(
    store: Store, clock: FakeClock
) -> None:
    dead = process(store, "dead")
    jobs = [await create(dead, user) for user in range(1, 13)]
    for _ in jobs:
        await dead.queue.claim_next()
    clock.advance(seconds=LEASE + 1)
    survivors = [process(store, f"p{i}") for i in range(4)]
    results = await asyncio.gather(*(p.leases.take_over() for p in survivors))
    taken = [job.id for batch in results for job in batch]
    assert sorted(taken) == sorted(job.id for job in jobs)


async def test_a_finished_job_is_delivered_by_the_process_that_ended_it(
    store: Store, clock: FakeClock
) -> None:
    a, b = process(store, "a"), process(store, "b")
    job = await create(a, 1)
    await a.queue.claim_next()
    # b's member cancels it: b ends it, so b delivers the cancellation and a lets go
    assert await b.jobs.finish_failed(job.id, "cancelled", state=JobState.CANCELLED)
    assert (await owner_of(store, job.id))[0] == "b"
    assert await a.leases.renew([job.id]) == {job.id}
    # b dies before showing it: another process takes the delivery over
    clock.advance(seconds=LEASE + 1)
    taken = await a.leases.take_over()
    assert [(j.id, j.state) for j in taken] == [(job.id, JobState.CANCELLED)]
    assert taken[0].delivery_since is not None


async def test_a_clean_stop_hands_jobs_over_at_once(store: Store) -> None:
    a, b = process(store, "a"), process(store, "b")
    job = await create(a, 1)
    await a.queue.claim_next()
    await a.leases.heartbeat()
    await b.leases.heartbeat()
    assert await a.leases.hand_over() == 1
    assert [j.id for j in await b.leases.take_over()] == [job.id]
    assert await b.leases.heartbeat() == 1  # a said goodbye


async def test_processes_alive_are_counted_by_heartbeat(store: Store, clock: FakeClock) -> None:
    a, b = process(store, "a"), process(store, "b")
    assert await a.leases.heartbeat() == 1
    assert await b.leases.heartbeat() == 2
    clock.advance(seconds=LEASE * 3)  # a went quiet
    assert await b.leases.heartbeat() == 1


async def test_claims_stop_at_the_bot_wide_limit_counted_in_the_database(store: Store) -> None:
    a, b = process(store, "a"), process(store, "b")
    for user in range(1, 6):
        await create(a, user)
    assert await a.queue.claim_next(max_active=2) is not None
    assert await b.queue.claim_next(max_active=2) is not None
    assert await a.queue.claim_next(max_active=2) is None
    assert await b.queue.claim_next(max_active=2) is None
    assert await b.queue.claim_next(max_active=3) is not None


async def test_a_database_moved_from_a_single_process_has_its_jobs_taken(
    store: Store,
) -> None:
    # Jobs started before leases existed (owner NULL) belong to nobody alive.
    job = await create(store, 1)
    await store.queue.claim_next()
    assert (await owner_of(store, job.id)) == (None, None)
    taken = await process(store, "new").leases.take_over()
    assert [j.id for j in taken] == [job.id]
