"""The queue's pause for credits (500090) as the database keeps it (bot/store/pause.py): since
when, the credits a probe needs, and which members were told, across a restart (the store
closed and opened again) and between two processes on one database. Every test runs on SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from store_fixtures import FakeClock, create, open_store

from bot.store import JobState, Paused, Store


async def test_the_pause_and_who_was_told_outlive_a_restart(
    db_target: Path | str, clock: FakeClock
) -> None:
    async with open_store(db_target, clock) as store:
        assert await store.pause.current() is None
        assert await store.pause.tell([1]) == []  # no pause: nobody to tell
        assert await store.pause.begin(45, 1000.5) == (Paused(1000.5, 45), True)
        assert await store.pause.tell([1, 2]) == [1, 2]

    async with open_store(db_target, clock) as store:  # a restart
        assert await store.pause.current() == Paused(1000.5, 45)
        assert await store.pause.tell([3, 2, 1, 3]) == [3]  # 1 and 2 were told before
        # A second refusal while paused: the pause (and its start) stays, waiting for the
        # cheapest refused job.
        assert await store.pause.begin(90, 2000.0) == (Paused(1000.5, 45), False)
        assert await store.pause.begin(30, 2000.0) == (Paused(1000.5, 30), False)
        assert await store.pause.end(999.0) is False  # not this pause
        assert await store.pause.current() == Paused(1000.5, 30)
        assert await store.pause.end(1000.5) is True

    async with open_store(db_target, clock) as store:
        assert await store.pause.current() is None
        assert await store.pause.end(1000.5) is False
        # A new pause tells everyone again, once.
        assert await store.pause.begin(0, 3000.0) == (Paused(3000.0, 1), True)
        assert await store.pause.tell([1, 2]) == [1, 2]
        assert await store.pause.tell([1, 2]) == []


async def test_two_processes_share_one_pause(db_target: Path | str, clock: FakeClock) -> None:
    async with open_store(db_target, clock) as a, open_store(db_target, clock) as b:
        # Both meet 500090 at once: one pause, begun (and announced) by one of them.
        results = await asyncio.gather(a.pause.begin(45, 100.0), b.pause.begin(90, 101.0))
        assert sorted(began for _, began in results) == [False, True]
        paused = await a.pause.current()
        assert paused is not None and paused.since in (100.0, 101.0) and paused.needed == 45
        assert await b.pause.current() == paused

        # A job is told once, whichever process tells it.
        told = await asyncio.gather(a.pause.tell([1, 2]), b.pause.tell([2, 3]))
        assert sorted(told[0] + told[1]) == [1, 2, 3]

        # One probe lifts it; the other process sees it gone and lifts nothing.
        assert await b.pause.end(paused.since) is True
        assert await a.pause.current() is None
        assert await a.pause.end(paused.since) is False


async def test_a_job_back_in_line_for_credits_gets_its_members_last_start_back(
    store: Store, clock: FakeClock
) -> None:
    """What the runner does with the job that met 500090: back to the queue, started_at
    cleared so that it keeps its place (one assignment of started_at: PostgreSQL refuses
    two)."""
    job = await create(store, 1)
    claimed = await store.queue.claim_next()
    assert claimed is not None and claimed.started_at is not None
    clock.advance(seconds=5)
    assert await store.jobs.transition(
        job.id,
        (JobState.UPLOADING, JobState.SUBMITTED),
        JobState.QUEUED,
        next_attempt_at=None,
        started_at=None,
    )
    back = await store.jobs.get(job.id)
    assert back is not None and back.state is JobState.QUEUED and back.started_at is None
    assert back.submitted_at is None


async def test_no_job_is_claimed_while_any_process_paused_the_queue(store: Store) -> None:
    """The claim checks the pause itself (``unless_paused``), so a process that has not yet
    read a pause another one began starts nothing either."""
    job = await create(store, 1)
    await store.pause.begin(45, 100.0)
    assert await store.queue.claim_many(5, unless_paused=True) == []
    assert (await store.jobs.get(job.id)).state is JobState.QUEUED  # type: ignore[union-attr]
    assert await store.pause.end(100.0)
    [claimed] = await store.queue.claim_many(5, unless_paused=True)
    assert claimed.id == job.id
