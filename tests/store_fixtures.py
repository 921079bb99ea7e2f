"""Helpers shared by the store tests (fixtures themselves live in each test module)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.pixverse.rules import Model, Quality
from bot.store import Job, JobInput, JobParams, NewJob, Store

GUILD = 111
OTHER_GUILD = 222
MOD = 900
DAILY = 150


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
async def open_store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "data" / "bot.sqlite3", clock=clock)
    try:
        yield store
    finally:
        await store.close()


def params(duration: int = 5, quality: Quality = Quality.P540, prompt: str = "a cat") -> JobParams:
    """540p 5 s costs 45 credits, 540p 8 s costs 90 (docs/pixverse.md, "Credits")."""
    return JobParams(prompt=prompt, model=Model.V4_5, quality=quality, duration=duration)


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


async def create(
    store: Store,
    user_id: int,
    *,
    role_ids: tuple[int, ...] = (),
    max_jobs: int = 100,
    daily: int = DAILY,
    **kwargs: object,
) -> Job:
    return await store.jobs.create(
        new_job(user_id, **kwargs),  # type: ignore[arg-type]
        role_ids=role_ids,
        max_jobs_per_user=max_jobs,
        daily_default=daily,
    )
