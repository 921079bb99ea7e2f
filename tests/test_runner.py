"""The job runner against the PixVerse simulator over real HTTP, with a recording reporter."""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import aiohttp
import pytest
from conftest import FAST_RUNNER
from PIL import Image
from store_fixtures import ledger_state, with_limits

from bot.jobs.progress import JobUpdate, StatusTarget
from bot.jobs.runner import JobRunner, RunnerConfig
from bot.jobs.schedule import PollSchedule
from bot.pixverse import PixVerseClient, new_trace_id
from bot.pixverse.rules import Quality
from bot.simulator import MODERATION_MARKER, Simulator, SimulatorConfig
from bot.store import JobInput, JobParams, Limits, NewJob, Store
from bot.store.models import JobSource, JobState

GUILD, CHANNEL = 1, 2
DAILY = 150

FAST = replace(FAST_RUNNER, simulated=False)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


class Recorder:
    """A ProgressReporter that remembers every update."""

    def __init__(self) -> None:
        self.updates: list[JobUpdate] = []

    async def show(self, update: JobUpdate) -> StatusTarget | None:
        self.updates.append(update)
        return update.target

    def for_job(self, job_id: int) -> list[JobUpdate]:
        return [u for u in self.updates if u.job_id == job_id]

    def final(self, job_id: int) -> JobUpdate | None:
        finals = [u for u in self.for_job(job_id) if u.final]
        return finals[-1] if finals else None


class World:
    def __init__(self, store: Store, sim: Simulator, client: PixVerseClient) -> None:
        self.store, self.sim, self.client = store, sim, client
        self.recorder = Recorder()
        self.runners: list[JobRunner] = []

    async def runner(self, config: RunnerConfig = FAST) -> JobRunner:
        runner = JobRunner(self.store, self.client, self.recorder, config)
        await runner.start()
        self.runners.append(runner)
        return runner

    async def job(self, user: int = 10, *, prompt: str = "a cat", **extra: object):
        params = JobParams(prompt=prompt, model="v4.5", quality=Quality.P540, duration=5, seed=7)
        return await self.store.jobs.create(
            NewJob(
                guild_id=GUILD,
                channel_id=CHANNEL,
                user_id=user,
                params=params,
                input=JobInput("cat.png", "image/png", png()),
                **extra,  # type: ignore[arg-type]
            )
        )

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)

    async def until_final(self, job_id: int, timeout: float = 10.0) -> JobUpdate:
        await self.until(lambda: self.recorder.final(job_id) is not None, timeout)
        # The store is written right after the final update is shown.
        async with asyncio.timeout(timeout):
            while not (job := await self.store.jobs.get(job_id)) or not job.is_final:
                await asyncio.sleep(0.02)
        final = self.recorder.final(job_id)
        assert final is not None
        return final


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[World]:
    store = await Store.open(tmp_path / "bot.sqlite3", limits=Limits(1000, max_jobs_per_user=20))
    sim = Simulator(SimulatorConfig(gen_time=0.2, seed=1))
    await sim.start()
    session = aiohttp.ClientSession()
    client = PixVerseClient(
        session, base_url=sim.base_url, api_key="k", backoff_base=0.01, backoff_cap=0.05
    )
    world = World(store, sim, client)
    try:
        yield world
    finally:
        for runner in world.runners:
            await runner.stop()
        await session.close()
        await sim.stop()
        await store.close()


async def test_a_job_goes_from_queue_to_delivered_video(world):
    job = await world.job()
    await world.runner()
    final = await world.until_final(job.id)
    assert final.state is JobState.DONE
    assert final.video is not None and final.video.data[4:8] == b"ftyp"
    assert final.credits_left == 1000 - 45
    states = [u.state for u in world.recorder.for_job(job.id)]
    assert states.index(JobState.UPLOADING) < states.index(JobState.SUBMITTED)
    assert states[-1] is JobState.DONE
    stored = await world.store.jobs.get(job.id)
    assert stored.state is JobState.DONE and stored.result_url == final.video_url
    assert await world.store.jobs.get_input(job.id) is None
    assert await ledger_state(world.store, job.id) == "committed"
    [generate] = world.sim.generate_requests
    assert generate.json["img_id"] == stored.pixverse_img_id
    assert generate.json["seed"] == 7 and generate.json["prompt"] == "a cat"
    assert "motion_mode" not in generate.json


async def test_moderation_fails_the_job_and_returns_the_credits(world):
    job = await world.job(prompt=f"a cat {MODERATION_MARKER}")
    await world.runner()
    final = await world.until_final(job.id)
    assert final.state is JobState.FAILED and "moderation" in final.error
    assert await ledger_state(world.store, job.id) == "released"
    quota = await with_limits(world.store, daily_credits=DAILY).ledger.quota(GUILD, 10)
    assert quota.used_today == 0 and quota.reserved == 0


async def test_pixverse_failure_is_refunded(world):
    world.sim.config.failure_rate = 1.0
    job = await world.job()
    await world.runner()
    final = await world.until_final(job.id)
    assert final.state is JobState.FAILED and final.refunded
    assert await ledger_state(world.store, job.id) == "released"


async def test_effect_refused_at_submit_is_explained_and_refunded(world):
    world.sim.inject_fault("img_generate", "err_code", err_code=500071, count=1)
    job = await world.job()
    await world.runner()
    final = await world.until_final(job.id)
    assert final.state is JobState.FAILED
    assert "360p or 540p" in final.error
    assert await ledger_state(world.store, job.id) == "released"


async def test_members_take_turns(world):
    first_a = [await world.job(user=1, prompt=f"a{i}") for i in range(4)]
    only_b = await world.job(user=2, prompt="b0")
    await world.runner(RunnerConfig(**{**_fields(FAST), "max_active": 1}))
    await world.until_final(only_b.id, timeout=15)
    prompts = [r.json["prompt"] for r in world.sim.generate_requests]
    # A's oldest job starts first, then B's only job, before the rest of A's.
    assert prompts[:2] == ["a0", "b0"]
    for job in first_a:
        await world.until_final(job.id, timeout=15)


async def test_concurrency_limit_requeues_instead_of_failing(world):
    world.sim.config.max_concurrent = 1
    jobs = [await world.job(user=i, prompt=f"p{i}") for i in (1, 2)]
    await world.runner()
    for job in jobs:
        final = await world.until_final(job.id, timeout=15)
        assert final.state is JobState.DONE
    refused = [r for r in world.sim.generate_requests if r.err_code == 500044]
    assert refused, "one submit should have met the concurrency limit"
    assert len([j for j in world.sim.jobs.values()]) == 2
    waiting = [u for u in world.recorder.updates if u.waiting]
    assert waiting and "busy" in waiting[0].waiting


async def test_restart_while_generating_finishes_without_a_second_submit(world):
    world.sim.config.gen_time = 0.8
    job = await world.job()
    first = await world.runner()
    async with asyncio.timeout(5):
        while (await world.store.jobs.get(job.id)).state is not JobState.GENERATING:
            await asyncio.sleep(0.02)
    await first.stop()
    world.runners.remove(first)
    await world.runner()
    final = await world.until_final(job.id)
    assert final.state is JobState.DONE
    assert len(world.sim.generate_requests) == 1
    assert await ledger_state(world.store, job.id) == "committed"


async def test_crash_between_submit_and_answer_resends_the_same_trace_id(world):
    job = await world.job()
    # As if a previous run uploaded, persisted the trace id, POSTed, and died before the answer.
    image = await world.client.upload_image(png(), filename="cat.png", content_type="image/png")
    trace_id = new_trace_id()
    assert await world.store.jobs.transition(job.id, "queued", "uploading")
    assert await world.store.jobs.transition(
        job.id,
        "uploading",
        "submitted",
        trace_id=trace_id,
        pixverse_img_id=image.img_id,
        drop_input=True,
    )
    from bot.pixverse import ImageToVideoRequest

    first_id = await world.client.image_to_video(
        ImageToVideoRequest(
            prompt="a cat", model="v4.5", duration=5, quality="540p", img_id=image.img_id, seed=7
        ),
        trace_id=trace_id,
    )
    await world.runner()
    final = await world.until_final(job.id)
    assert final.state is JobState.DONE
    assert len(world.sim.jobs) == 1
    assert (await world.store.jobs.get(job.id)).pixverse_video_id == first_id
    assert {r.trace_id for r in world.sim.generate_requests} == {trace_id}


async def test_video_over_the_upload_limit_is_linked(world):
    world.sim.config.video_size_bytes = 200_000
    job = await world.job(upload_limit=100_000)
    await world.runner()
    final = await world.until_final(job.id)
    assert final.state is JobState.DONE
    assert final.video is None and final.video_url and final.video_url.startswith("http")


async def test_generation_that_takes_too_long_is_failed_and_refunded(world):
    world.sim.config.gen_time = 60
    job = await world.job()
    await world.runner(RunnerConfig(**{**_fields(FAST), "generation_timeout": 0.3}))
    final = await world.until_final(job.id)
    assert final.state is JobState.FAILED and "did not finish" in final.error
    assert await ledger_state(world.store, job.id) == "released"


async def test_cancelled_job_is_never_sent(world):
    job = await world.job()
    outcome = await world.store.jobs.cancel(job.id, by_user_id=10)
    assert outcome.ok
    await world.runner()
    await asyncio.sleep(0.3)
    assert world.sim.generate_requests == []
    assert [r for r in world.sim.requests if r.route == "image_upload"] == []


async def test_extend_by_job_sends_the_parent_video_id(world):
    parent = await world.job()
    await world.runner()
    await world.until_final(parent.id)
    parent_row = await world.store.jobs.get(parent.id)
    params = JobParams(
        prompt="and then",
        model="v4.5",
        quality=Quality.P540,
        duration=5,
        seed=3,
        source=JobSource.JOB,
    )
    child = await with_limits(world.store, max_jobs_per_user=2, daily_credits=DAILY).jobs.create(
        NewJob(
            guild_id=GUILD,
            channel_id=CHANNEL,
            user_id=11,
            params=params,
            kind="extend",
            parent_job_id=parent.id,
        )
    )
    world.runners[0].wake()
    final = await world.until_final(child.id)
    assert final.state is JobState.DONE
    extend = [r for r in world.sim.requests if r.route == "extend_generate"]
    assert extend[0].json["source_video_id"] == parent_row.pixverse_video_id
    assert "video_media_id" not in extend[0].json


async def test_stop_right_after_a_wake_up_ends_promptly(world):
    # Python 3.11's wait_for can swallow a cancellation that races a wake-up; stop() must
    # end the loops anyway.
    for _ in range(20):
        runner = JobRunner(world.store, world.client, world.recorder, FAST)
        await runner.start()
        await asyncio.sleep(0.05)  # let both loops settle into their waits
        runner.wake()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        async with asyncio.timeout(3):
            await runner.stop()


def _fields(config: RunnerConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


async def test_an_unexpected_error_in_one_jobs_poll_leaves_the_others_running(world):
    jobs = [await world.job(user=u, prompt=f"job {u}") for u in (1, 2, 3)]
    runner = await world.runner()
    await world.until(lambda: all(j.id in runner._generating for j in jobs[:1]), timeout=10)
    cursed = jobs[0].id
    handle = runner._handle_result
    failures = 0

    async def sometimes_broken(entry, result):
        nonlocal failures
        if entry.job.id == cursed and failures < 3:
            failures += 1
            raise RuntimeError("a bug in one job's poll")
        await handle(entry, result)

    runner._handle_result = sometimes_broken  # type: ignore[method-assign]
    for job in jobs:
        final = await world.until_final(job.id, timeout=15)
        assert final.state is JobState.DONE
    assert failures == 3


async def test_a_webhook_checks_its_job_at_once_and_its_polling_stops(world):
    world.sim.config.gen_time = 0.5
    slow = replace(
        FAST,
        webhooks=True,
        schedule=PollSchedule(first_delay=60, min_delay=60, steady_delay=60, late_delay=60),
    )
    job = await world.job()
    runner = await world.runner(slow)
    await world.until(lambda: job.id in runner._generating, timeout=10)
    stored = await world.store.jobs.get(job.id)
    world.sim.finish_now(stored.pixverse_video_id)
    runner.result_ready(stored.pixverse_video_id)
    final = await world.until_final(job.id, timeout=5)
    assert final.state is JobState.DONE
    assert len([r for r in world.sim.state.requests if r.route == "result"]) == 1
    assert job.id not in runner._generating


async def test_queue_places_are_shown_only_for_the_servers_this_process_serves(world):
    # Two processes share the queue; each shows the places of its own shards' servers.
    elsewhere = 4242
    params = JobParams(prompt="a cat", model="v4.5", quality=Quality.P540, duration=5)
    ours = [await world.job(user=user) for user in (1, 2, 3)]
    theirs = [
        await world.store.jobs.create(
            NewJob(guild_id=elsewhere, channel_id=CHANNEL, user_id=user, params=params)
        )
        for user in (4, 5)
    ]
    runner = JobRunner(
        world.store,
        world.client,
        world.recorder,
        RunnerConfig(**{**_fields(FAST), "max_active": 1}),
        shows_server=lambda guild_id: guild_id == GUILD,
    )
    await runner.start()
    world.runners.append(runner)
    for job in ours + theirs:
        await world.until_final(job.id, timeout=20)

    def places(job) -> list[int]:
        return [u.queue_position for u in world.recorder.for_job(job.id) if u.queue_position]

    assert any(places(job) for job in ours)
    assert all(places(job) == [] for job in theirs)
