"""Stopping and starting the bot: every unfinished job continues, nothing is sent or charged
twice, and each status message is still finished.

The bots here use a simulator owned by the test (the ``pixverse`` fixture), so the PixVerse
that the first bot talked to is the one the restarted bot finds.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

from conftest import FAST_RUNNER, status_text
from store_fixtures import ledger_state

from bot.pixverse import ImageToVideoRequest, new_trace_id
from bot.store import Limits, Store
from bot.store.models import JobState

# Jobs are accepted and shown but never started: the queue as a stopped runner leaves it.
PARKED = dataclasses.replace(FAST_RUNNER, max_active=0)


async def wait_state(world, job_id: int, state: JobState, timeout: float = 10.0):
    async with asyncio.timeout(timeout):
        while (job := await world.bot.store.jobs.get(job_id)).state is not state:
            await asyncio.sleep(0.02)
    return job


async def start_job(world, user=None, **options):
    handle = await world.video(user, **options)
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral
    return handle, await world.latest_job(handle.user)


async def quota(world, user):
    return await world.bot.store.ledger.quota(world.guild.id, user.id)


async def assert_charged_once(world, job_id: int, user) -> None:
    assert await ledger_state(world.bot.store, job_id) == "committed"
    left = await quota(world, user)
    assert (left.used_today, left.reserved) == (45, 0)


async def test_restart_while_generating_finishes_on_the_original_message(world, pixverse):
    pixverse.config.gen_time = 1.5
    await world.start_bot(pixverse=pixverse)
    handle, job = await start_job(world)
    await wait_state(world, job.id, JobState.GENERATING)
    await world.stop_bot()
    assert "Done" not in status_text(handle.original)

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    message = handle.original
    await world.until(lambda: message.files)
    assert "Done" in status_text(message)
    [data] = message.files.values()
    assert data[4:8] == b"ftyp"
    assert [m for m in world.fake.messages_in(world.channel) if not m.ephemeral] == [message]
    assert len(pixverse.generate_requests) == 1 and len(pixverse.jobs) == 1
    await assert_charged_once(world, job.id, world.member)


async def test_restart_while_queued_runs_the_job_after_the_restart(world, pixverse):
    await world.start_bot(pixverse=pixverse, runner=PARKED)
    handle, job = await start_job(world)
    await asyncio.sleep(0.3)
    await world.stop_bot()
    assert pixverse.requests == []

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    assert len(pixverse.generate_requests) == 1
    await assert_charged_once(world, job.id, world.member)


async def test_token_that_expired_during_downtime_finishes_through_the_channel(world, pixverse):
    pixverse.config.gen_time = 1.0
    await world.start_bot(pixverse=pixverse)
    handle, job = await start_job(world)
    await wait_state(world, job.id, JobState.GENERATING)
    await world.stop_bot()
    # Fifteen minutes pass: Discord refuses the token, and the stored expiry says so too.
    world.fake.expire_token(handle)
    stale = await _open_store(world)
    try:
        await stale.jobs.set_fields(
            job.id, interaction_expires_at=datetime.now(UTC) - timedelta(minutes=1)
        )
    finally:
        await stale.close()
    restarted = time.monotonic()

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    message = handle.original
    await world.until(lambda: message.files)
    assert message.current.source == "channel"
    assert "Done" in status_text(message)
    # The bot knew the token was dead: no doomed webhook call (401s count towards a ban).
    refused = [r for r in world.fake.request_log if r.at >= restarted and r.status == 401]
    assert refused == []


async def test_crash_between_upload_and_submit_resends_the_same_trace_id(world, pixverse):
    bot = await world.start_bot(pixverse=pixverse, runner=PARKED)
    handle, job = await start_job(world, prompt="a cat", seed=7)
    # As if the runner uploaded, saved the trace id, POSTed the generate, and died before
    # PixVerse's answer came back.
    image = await bot.pixverse.upload_image(
        await _input_bytes(bot, job.id), filename="cat.png", content_type="image/png"
    )
    trace_id = new_trace_id()
    assert await bot.store.jobs.transition(job.id, JobState.QUEUED, JobState.UPLOADING)
    assert await bot.store.jobs.transition(
        job.id,
        JobState.UPLOADING,
        JobState.SUBMITTED,
        trace_id=trace_id,
        pixverse_img_id=image.img_id,
        drop_input=True,
    )
    first_id = await bot.pixverse.image_to_video(
        ImageToVideoRequest(
            prompt="a cat", model="v4.5", duration=5, quality="540p", img_id=image.img_id, seed=7
        ),
        trace_id=trace_id,
    )
    await world.stop_bot()

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    assert job.pixverse_video_id == first_id
    assert len(pixverse.jobs) == 1
    assert [r.trace_id for r in pixverse.generate_requests] == [trace_id, trace_id]
    await world.until(lambda: handle.original.files)
    await assert_charged_once(world, job.id, world.member)


async def test_close_while_generating_is_quick_and_loses_nothing(world, pixverse):
    pixverse.config.gen_time = 30
    await world.start_bot(pixverse=pixverse)
    handle, job = await start_job(world)
    await wait_state(world, job.id, JobState.GENERATING)

    started = time.monotonic()
    await world.stop_bot()
    assert time.monotonic() - started < 10

    stale = await _open_store(world)
    try:
        saved = await stale.jobs.get(job.id)
        assert saved.state is JobState.GENERATING
        assert saved.pixverse_video_id is not None
        assert await ledger_state(stale, job.id) == "reserved"
    finally:
        await stale.close()

    await world.start_bot(pixverse=pixverse)
    pixverse.finish_now(saved.pixverse_video_id)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    assert len(pixverse.generate_requests) == 1
    await assert_charged_once(world, job.id, world.member)


async def _open_store(world) -> Store:
    settings = world.settings()
    limits = Limits(settings.daily_credits, settings.max_jobs_per_user)
    return await Store.open(settings.database_path, limits=limits)


async def _input_bytes(bot, job_id: int) -> bytes:
    upload = await bot.store.jobs.get_input(job_id)
    assert upload is not None
    return upload.data


async def test_crash_between_commit_and_delivery_redelivers_without_charging_twice(world, pixverse):
    # The credits are committed with the job's "done" state, and the job stays marked as
    # delivering until Discord shows it: a crash in between delivers after the restart.
    bot = await world.start_bot(pixverse=pixverse)
    committed = asyncio.Event()
    show = bot.reporter.show

    async def crash_before_delivery(update):
        if update.final:
            committed.set()
            await asyncio.Event().wait()  # the process dies here
        return await show(update)

    bot.reporter.show = crash_before_delivery  # type: ignore[method-assign]
    handle, job = await start_job(world)
    await asyncio.wait_for(committed.wait(), timeout=10)
    stored = await bot.store.jobs.get(job.id)
    assert stored is not None and stored.state is JobState.DONE
    assert stored.delivery_since is not None
    assert not handle.original.files
    await world.stop_bot()

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)  # final and shown
    assert handle.original.files
    assert job.state is JobState.DONE, job.error
    assert len(pixverse.generate_requests) == 1
    assert "Done" in status_text(handle.original)
    assert [m for m in world.fake.messages_in(world.channel) if not m.ephemeral] == [
        handle.original
    ]
    await assert_charged_once(world, job.id, world.member)


async def test_close_during_a_rate_limited_final_edit_is_quick_and_loses_nothing(world, pixverse):
    pixverse.config.gen_time = 30
    await world.start_bot(pixverse=pixverse)
    handle, job = await start_job(world)
    job = await wait_state(world, job.id, JobState.GENERATING)
    await asyncio.sleep(0.5)  # let the progress edits settle
    rule = world.fake.rate_limit("PATCH", r"/webhooks/", retry_after=30)
    pixverse.finish_now(job.pixverse_video_id)
    await world.fake.wait_for(lambda: rule.hits == 1, 10, what="the rate-limited final edit")

    started = time.monotonic()
    await world.stop_bot()
    assert time.monotonic() - started < 10
    assert not handle.original.files

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    await assert_charged_once(world, job.id, world.member)
