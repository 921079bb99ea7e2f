"""Helpers shared by the store tests (fixtures themselves live in each test module)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.pixverse.rules import Quality
from bot.store import Job, JobInput, JobParams, Limits, NewJob, ServerView, Store, ledger
from bot.store.admin import server_view
from bot.store.clock import to_ts

GUILD = 111
OTHER_GUILD = 222
MOD = 900
DAILY = 150
# The store tests' limits: DAILY credits, and job slots enough that only the tests about
# the per-member limit meet it (they ask for a lower one with ``with_limits``).
LIMITS = Limits(daily_credits=DAILY, max_jobs_per_user=100)


class FakeClock:
    """An injectable clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self.now = moment


@asynccontextmanager
async def open_store(
    target: Path | str, clock: FakeClock, limits: Limits = LIMITS
) -> AsyncIterator[Store]:
    """A store in the folder ``target`` (SQLite) or on the PostgreSQL URL ``target``."""
    where = target if isinstance(target, str) else target / "data" / "bot.sqlite3"
    store = await Store.open(where, limits=limits, clock=clock)
    try:
        yield store
    finally:
        await store.close()


def params(duration: int = 5, quality: Quality = Quality.P540, prompt: str = "a cat") -> JobParams:
    """540p 5 s costs 45 credits, 540p 8 s costs 90 (docs/pixverse.md, "Credits")."""
    return JobParams(prompt=prompt, model="v4.5", quality=quality, duration=duration)


def new_job(
    user_id: int,
    *,
    guild_id: int = GUILD,
    duration: int = 5,
    prompt: str = "a cat",
    with_input: bool = False,
    **extra: object,
) -> NewJob:
    data = JobInput("cat.png", "image/png", b"\x89PNG fake") if with_input else None
    return NewJob(
        guild_id=guild_id,
        channel_id=5,
        user_id=user_id,
        params=params(duration, prompt=prompt),
        input=data,
        **extra,  # type: ignore[arg-type]
    )


def with_limits(store: Store, **changes: int) -> Store:
    """The same database (and clock) seen through other limits, at the default prices."""
    return Store.on(store.db, limits=replace(store.limits, **changes), clock=store.clock)


async def create(
    store: Store,
    user_id: int,
    *,
    role_ids: tuple[int, ...] = (),
    max_jobs: int | None = None,
    daily: int | None = None,
    **kwargs: object,
) -> Job:
    wanted = {"max_jobs_per_user": max_jobs, "daily_credits": daily}
    changes = {name: value for name, value in wanted.items() if value is not None}
    limited = with_limits(store, **changes) if changes else store
    return await limited.jobs.create(
        new_job(user_id, **kwargs),  # type: ignore[arg-type]
        role_ids=role_ids,
    )


# --- the ledger's and the server's state, read and moved directly ------------------------------
# The store moves a ledger row only inside the job transactions (finish_done, finish_failed,
# cancel, remove_result); these run the same functions on their own, to test their rules.


async def ledger_state(store: Store, job_id: int) -> str | None:
    """'reserved', 'committed', 'released', 'refunded', or None without a reservation."""
    row = await store.db.fetch_one("SELECT state FROM ledger WHERE job_id = ?", (job_id,))
    return None if row is None else str(row[0])


def _in_write(store: Store, fn: Callable[[sqlite3.Connection, int, float], Any], job_id: int):
    now = to_ts(store.clock())
    return store.db.write(lambda conn: fn(conn, job_id, now))


async def ledger_commit(store: Store, job_id: int) -> bool:
    return bool(await _in_write(store, ledger.commit, job_id))


async def ledger_release(store: Store, job_id: int) -> bool:
    return bool(await _in_write(store, ledger.release, job_id))


async def ledger_refund(store: Store, job_id: int) -> int:
    return int(await _in_write(store, ledger.refund_committed, job_id))


async def ledger_reserve_again(store: Store, job: Job) -> bool:
    """Record a reservation for a job that has one: False, nothing written."""
    now = to_ts(store.clock())
    return await store.db.write(
        lambda conn: ledger.insert_reservation(
            conn,
            job_id=job.id,
            guild_id=job.guild_id,
            user_id=job.user_id,
            amount=job.cost,
            base_allowance=store.limits.daily_credits,
            now=now,
        )
    )


async def server(store: Store, guild_id: int) -> ServerView:
    """The server's cap, spent today, reserved and role allowances (as /quota-admin shows)."""
    now = to_ts(store.clock())
    return await store.db.read(lambda conn: server_view(conn, guild_id, now))


async def pick_next(store: Store, *, exclude_users: Iterable[int] = ()) -> Job | None:
    """The job that would start next, left in the queue."""
    batch = await store.queue.next_fair_batch(1, exclude_users=exclude_users)
    return batch[0] if batch else None


# --- a database as an earlier run left it --------------------------------------------------

HISTORY_GUILD = 1  # a server of the bot's past, apart from every test's own


async def record_generation_history(
    path: Path, *, seconds: float, limits: Limits = LIMITS, jobs: int = 1
) -> None:
    """Leave ``jobs`` finished generations of ``seconds`` each (v4.5 540p 5 s) in the database
    at ``path``, as a bot that ran before would have. The runner learns PixVerse's timing from
    its recent history at start (``JobStore.stats``); without any it waits for the published
    figures (a first poll after ~22 s), which would make every test of a fresh bot process wait
    that long for its first result."""
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    store = await Store.open(path, limits=limits, clock=clock)
    try:
        for number in range(jobs):
            job = await store.jobs.create(new_job(number + 1, guild_id=HISTORY_GUILD))
            claimed = await store.queue.claim_next()
            assert claimed is not None and claimed.id == job.id
            assert await store.jobs.transition(
                job.id, "uploading", "submitted", trace_id=f"history-{job.id}"
            )
            assert await store.jobs.transition(
                job.id, "submitted", "generating", pixverse_video_id=job.id
            )
            clock.advance(seconds=seconds)
            assert await store.jobs.finish_done(job.id, "https://example.invalid/history.mp4")
            assert await store.jobs.delivered(job.id)
    finally:
        await store.close()
