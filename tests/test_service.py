"""The use cases' rules, without Discord."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from store_fixtures import GUILD, OTHER_GUILD, FakeClock, create, new_job, open_store

from bot.service import NotUsable, usable_source
from bot.service.jobs import SHOW_HOLD, JobService
from bot.store.models import JobState


async def test_only_a_finished_kept_result_of_this_server_is_a_usable_source(tmp_path):
    async with open_store(tmp_path, FakeClock()) as store:
        job = await create(store, 1)
    done = replace(job, state=JobState.DONE, pixverse_video_id=42)
    assert usable_source(done, GUILD) is None
    assert usable_source(None, GUILD) is NotUsable.MISSING
    assert usable_source(done, OTHER_GUILD) is NotUsable.MISSING
    assert usable_source(done, None) is NotUsable.MISSING
    assert usable_source(job, GUILD) is NotUsable.UNFINISHED  # still queued
    assert usable_source(replace(done, pixverse_video_id=None), GUILD) is NotUsable.UNFINISHED
    removed = replace(done, removed_at=datetime.now(UTC))
    assert usable_source(removed, GUILD) is NotUsable.REMOVED


class Woken:
    """The runner, as far as accepting and showing a job go: it is only woken."""

    def __init__(self) -> None:
        self.woken = 0

    def wake(self, **_: Any) -> None:
        self.woken += 1


async def test_an_accepted_job_starts_once_its_status_message_exists(tmp_path):
    # Started before, a quick job could end before its message existed: its result went to
    # a new message and the late reply showed "Queued" for good.
    clock = FakeClock()
    async with open_store(tmp_path, clock) as store:
        runner = Woken()
        service = JobService(store, runner)  # type: ignore[arg-type]
        accepted = await service.accept(new_job(1))
        assert accepted.queue_position == 1
        assert await store.queue.claim_next() is None  # no status message yet

        await service.shown(accepted.job.id, 5, 777)

        assert runner.woken == 1
        started = await store.queue.claim_next()
        assert started is not None and started.id == accepted.job.id
        assert started.status_message_id == 777 and started.next_attempt_at is None


async def test_a_job_whose_status_message_never_came_starts_after_the_hold(tmp_path):
    # The process stopped between writing the job and showing it: the job still runs (its
    # result then goes to a new message), a while later.
    clock = FakeClock()
    async with open_store(tmp_path, clock) as store:
        service = JobService(store, Woken())  # type: ignore[arg-type]
        job = (await service.accept(new_job(1))).job
        clock.advance(seconds=SHOW_HOLD - 1)
        assert await store.queue.claim_next() is None
        clock.advance(seconds=1)
        started = await store.queue.claim_next()
        assert started is not None and started.id == job.id
