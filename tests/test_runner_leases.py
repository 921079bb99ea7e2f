"""Several runners on one PostgreSQL database, as several bot processes run them: jobs are
shared under leases, MAX_ACTIVE_JOBS holds across them, a dead runner's jobs are taken over
once their leases lapse (and never generated twice), a stopping one hands them over at once.

Each "process" is a JobRunner on its own Store (its own lease terms) over the same database,
against one PixVerse simulator. The end-to-end version with real processes and a SIGKILL is
tests/test_failover.py.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from test_runner import FAST, Recorder, png

from bot.jobs.pause import WAITING_TEXT
from bot.jobs.runner import JobRunner
from bot.pixverse import PixVerseClient
from bot.pixverse.rules import Quality
from bot.simulator import Simulator, SimulatorConfig
from bot.store import JobInput, JobParams, LeaseTerms, Limits, NewJob, Store
from bot.store.db import Database
from bot.store.models import JobState
from bot.store.pg import open_postgres

LEASE = 0.6  # seconds: renewed every 0.2 s
LIMITS = Limits(100_000, max_jobs_per_user=20)


class Notices:
    """The operators' notices (the moderation logs), from every runner."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def notice(self, text: str) -> None:
        self.texts.append(text)

    def saying(self, part: str) -> list[str]:
        return [text for text in self.texts if part in text]


class Cluster:
    """Runner "processes" sharing one database and one PixVerse."""

    def __init__(self, db: Database, sim: Simulator, client: PixVerseClient) -> None:
        self.db, self.sim, self.client = db, sim, client
        self.store = Store.on(db, limits=LIMITS)  # the intake's view: creates jobs
        self.runners: dict[str, JobRunner] = {}
        self.stores: dict[str, Store] = {}
        self.recorders: dict[str, Recorder] = {}
        self.notices = Notices()

    async def start(
        self,
        name: str,
        *,
        max_active: int = 2,
        lease: float = LEASE,
        idle_check: float = 0.1,
        webhooks: bool = False,
    ) -> JobRunner:
        store = Store.on(self.db, limits=LIMITS, lease=LeaseTerms(name, lease))
        recorder = Recorder()
        config = replace(FAST, max_active=max_active, idle_check=idle_check, webhooks=webhooks)
        runner = JobRunner(store, self.client, recorder, config, notices=self.notices)
        await runner.start()
        self.runners[name], self.stores[name], self.recorders[name] = runner, store, recorder
        return runner

    async def die(self, name: str) -> None:
        """Stop as a SIGKILL would: nothing handed over, the leases left to lapse."""
        store = self.stores[name]
        assert store.leases is not None

        async def nothing() -> int:
            return 0

        store.leases.hand_over = nothing  # type: ignore[method-assign]
        await self.runners.pop(name).stop()

    async def job(self, user: int, prompt: str = "a cat", *, shown: bool = True) -> int:
        """A new queued job; ``shown``: its status message is recorded, as the intake does
        once it answered the interaction."""
        params = JobParams(prompt=prompt, model="v4.5", quality=Quality.P540, duration=5)
        job = await self.store.jobs.create(
            NewJob(
                guild_id=1,
                channel_id=2,
                user_id=user,
                params=params,
                input=JobInput("cat.png", "image/png", png()),
            )
        )
        if shown:
            await self.show(job.id)
        for runner in self.runners.values():
            runner.wake()
        return job.id

    async def show(self, job_id: int) -> None:
        await self.store.jobs.set_fields(
            job_id, status_channel_id=2, status_message_id=10_000 + job_id
        )

    async def owners(self) -> dict[int, str | None]:
        rows = await self.db.fetch_all("SELECT id, owner FROM jobs")
        return {int(row[0]): row[1] for row in rows}

    async def until_settled(self, ids: list[int], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                jobs = [await self.store.jobs.get(job_id) for job_id in ids]
                if all(j is not None and j.is_final and j.delivery_since is None for j in jobs):
                    return
                await asyncio.sleep(0.05)

    def finals(self, job_id: int) -> list[str]:
        """Which runners showed a final update of this job."""
        return [
            name
            for name, recorder in self.recorders.items()
            for update in recorder.for_job(job_id)
            if update.final
        ]

    def videos_per_trace(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for video in self.sim.jobs.values():
            counts[video.trace_id] = counts.get(video.trace_id, 0) + 1
        return counts


@pytest.fixture
async def cluster(pg_url: str) -> AsyncIterator[Cluster]:
    db = await open_postgres(pg_url)
    sim = Simulator(SimulatorConfig(gen_time=0.4, seed=1, max_concurrent=50))
    await sim.start()
    session = aiohttp.ClientSession()
    client = PixVerseClient(
        session, base_url=sim.base_url, api_key="k", backoff_base=0.01, backoff_cap=0.05
    )
    cluster = Cluster(db, sim, client)
    try:
        yield cluster
    finally:
        for runner in cluster.runners.values():
            await runner.stop()
        await session.close()
        await sim.stop()
        await db.close()


async def test_two_runners_share_the_jobs_within_one_bot_wide_limit(cluster: Cluster) -> None:
    await cluster.start("a", max_active=3)
    await cluster.start("b", max_active=3)
    ids = [await cluster.job(user) for user in range(1, 13)]
    await cluster.until_settled(ids)

    owners = await cluster.owners()
    assert {owners[job_id] for job_id in ids} == {"a", "b"}  # both ran some
    for job_id in ids:
        assert (await cluster.store.jobs.get(job_id)).state is JobState.DONE  # type: ignore[union-attr]
        assert cluster.finals(job_id) == [owners[job_id]]  # shown once, by its runner
    # Each runner alone would allow 3 at once: together they never had more than 3.
    assert cluster.sim.peak_generating <= 3
    assert all(count == 1 for count in cluster.videos_per_trace().values())
    assert len(cluster.sim.jobs) == len(ids)


async def test_a_dead_runners_jobs_are_taken_over_and_finished_once(cluster: Cluster) -> None:
    cluster.sim.config.gen_time = 1.5
    await cluster.start("dead", max_active=4)
    ids = [await cluster.job(user) for user in range(1, 5)]
    async with asyncio.timeout(10):
        while len(cluster.sim.jobs) < 4:  # all four generating at PixVerse
            await asyncio.sleep(0.02)
    alive = await cluster.start("alive", max_active=4)
    assert alive.active == 0  # the jobs are the other's while it lives
    await cluster.die("dead")
    assert set((await cluster.owners()).values()) == {"dead"}

    await cluster.until_settled(ids)
    owners = await cluster.owners()
    assert all(owners[job_id] == "alive" for job_id in ids)
    for job_id in ids:
        assert (await cluster.store.jobs.get(job_id)).state is JobState.DONE  # type: ignore[union-attr]
        assert cluster.finals(job_id) == ["alive"]
    # Resumed, never submitted again: one video per job.
    assert len(cluster.sim.jobs) == 4 and set(cluster.videos_per_trace().values()) == {1}


async def test_a_job_dead_between_its_trace_id_and_pixverses_answer_is_generated_once(
    cluster: Cluster,
) -> None:
    # The generate request hangs; the runner dies with the job "submitted", trace id stored.
    cluster.sim.inject_fault("img_generate", "hang", count=1, seconds=1.0)
    await cluster.start("dead")
    [job_id] = [await cluster.job(1)]
    async with asyncio.timeout(10):
        while (await cluster.store.jobs.get(job_id)).state is not JobState.SUBMITTED:  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
    alive = await cluster.start("alive")
    assert alive.active == 0
    await cluster.die("dead")
    await cluster.until_settled([job_id])

    job = await cluster.store.jobs.get(job_id)
    assert job is not None and job.state is JobState.DONE
    # PixVerse may have made the video for the first request: the second, with the same
    # trace id, got the same one.
    assert {v.trace_id for v in cluster.sim.jobs.values()} == {job.trace_id}
    assert len(cluster.sim.jobs) == 1


async def test_a_stopping_runner_hands_its_jobs_over_at_once(cluster: Cluster) -> None:
    cluster.sim.config.gen_time = 3.0
    # A longer lease here: a hand-over is taken at the next pass (a third of it), a lapse
    # no sooner than two thirds.
    leaving = await cluster.start("leaving", max_active=2, lease=3.0)
    ids = [await cluster.job(user) for user in range(1, 5)]
    async with asyncio.timeout(10):
        while len(cluster.sim.jobs) < 2:
            await asyncio.sleep(0.02)
    await cluster.start("staying", max_active=4, lease=3.0)
    async with asyncio.timeout(10):
        while len(cluster.sim.jobs) < 4:
            await asyncio.sleep(0.02)
    held = [job_id for job_id, owner in (await cluster.owners()).items() if owner == "leaving"]
    assert len(held) == 2
    await leaving.stop()
    del cluster.runners["leaving"]
    async with asyncio.timeout(1.8):
        while True:
            owners = await cluster.owners()
            if all(owners[job_id] == "staying" for job_id in held):
                break
            await asyncio.sleep(0.02)
    await cluster.until_settled(ids)
    assert len(cluster.sim.jobs) == 4


async def test_a_runner_whose_job_was_taken_lets_go_of_it(cluster: Cluster) -> None:
    """A runner that stalled past its lease (not dead) finds at its next renewal that
    another took its job over, and stops running it: the job is finished once."""
    cluster.sim.config.gen_time = 2.0
    stalled = await cluster.start("stalled")
    job_id = await cluster.job(1)
    async with asyncio.timeout(10):
        while not cluster.sim.jobs:
            await asyncio.sleep(0.02)
    # Its lease passes stop while the other takes the job over, then come back.
    lease_pass = stalled._lease_pass

    async def stall() -> None:
        return None

    stalled._lease_pass = stall  # type: ignore[method-assign]
    await cluster.start("other")
    async with asyncio.timeout(5):
        while (await cluster.owners())[job_id] != "other":
            await asyncio.sleep(0.02)
    stalled._lease_pass = lease_pass  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        while job_id in stalled._generating or job_id in stalled._starting:
            await asyncio.sleep(0.02)
    await cluster.until_settled([job_id])
    assert cluster.finals(job_id) == ["other"]
    assert len(cluster.sim.jobs) == 1


async def test_a_slot_freed_while_other_processes_filled_the_limit_is_filled_at_once(
    cluster: Cluster,
) -> None:
    """A claim refused because the other processes' jobs fill MAX_ACTIVE_JOBS does not mean
    the queue is empty: the next slot freed is filled at once, not at the next idle look."""
    ghost = Store.on(cluster.db, limits=LIMITS, lease=LeaseTerms("ghost", 600.0))
    ids = [await cluster.job(user) for user in range(1, 5)]
    for _ in range(3):
        assert await ghost.queue.claim_next() is not None
    runner = await cluster.start("a", max_active=3, idle_check=60.0)
    await asyncio.sleep(0.3)  # it looked, and the bot-wide limit refused it
    assert runner.active == 0
    assert (await cluster.store.jobs.get(ids[3])).state is JobState.QUEUED  # type: ignore[union-attr]

    await ghost.jobs.finish_failed(ids[0], "gone")
    runner.wake(queue_changed=False)  # what a job of its own finishing does
    async with asyncio.timeout(3):
        while (await cluster.owners())[ids[3]] != "a":
            await asyncio.sleep(0.02)


async def test_a_job_taken_over_is_asked_about_at_once_even_when_webhooks_are_expected(
    cluster: Cluster,
) -> None:
    """Its webhook may have reached a process that did not hold the job (and was ignored),
    or the dead one: the runner taking it over polls it now rather than waiting for the
    webhooks' fallback poll (20 s past its likely finish)."""
    cluster.sim.config.gen_time = 0.5
    await cluster.start("dead", webhooks=True)
    job_id = await cluster.job(1)
    async with asyncio.timeout(10):
        while (await cluster.store.jobs.get(job_id)).state is not JobState.GENERATING:  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
    await cluster.die("dead")
    await asyncio.sleep(0.6)  # PixVerse finished it meanwhile; nobody heard
    await cluster.start("alive", webhooks=True)
    await cluster.until_settled([job_id], timeout=5)
    assert cluster.finals(job_id) == ["alive"]


async def test_a_final_state_marked_to_be_shown_again_is_delivered_again(
    cluster: Cluster,
) -> None:
    """What the reporter does when a queued job's place in line, sent by a process that did
    not run it, may have landed after the final edit (bot/ui/status.py): the next lease pass
    of a process delivers the final state again."""
    await cluster.start("a")
    job_id = await cluster.job(1)
    await cluster.until_settled([job_id])
    assert cluster.finals(job_id) == ["a"]
    await cluster.start("b")
    assert await cluster.store.jobs.reshow_final(job_id)
    await cluster.until_settled([job_id], timeout=5)
    finals = cluster.finals(job_id)
    assert len(finals) == 2 and finals[0] == "a"
    assert (await cluster.store.jobs.get(job_id)).state is JobState.DONE  # type: ignore[union-attr]
    assert len(cluster.sim.jobs) == 1


def told_of_pause(cluster: Cluster, job_id: int) -> int:
    """How many times any runner told this job's member that the queue waits for credits."""
    return sum(
        update.waiting == WAITING_TEXT
        for recorder in cluster.recorders.values()
        for update in recorder.for_job(job_id)
    )


async def test_a_pause_for_credits_in_one_process_stops_the_others_submits(
    cluster: Cluster,
) -> None:
    """500090 met by one process pauses the whole bot: the other submits nothing either,
    each waiting member is told once (by whichever process), the operators hear of it once,
    and the probe that finds credits in one process lets both go on."""
    a = await cluster.start("a", max_active=4)
    b = await cluster.start("b", max_active=4)
    cluster.sim.set_balance(0)
    refused = await cluster.job(1)
    async with asyncio.timeout(5):
        while a.paused_since is None or b.paused_since is None:
            await asyncio.sleep(0.02)
    assert a.paused_since == b.paused_since
    waiting = [await cluster.job(user) for user in (2, 3)]
    # A job whose status message is not there yet is told once it is, not before.
    unseen = await cluster.job(4, shown=False)
    await asyncio.sleep(1.0)  # both dispatchers look at the queue ten times, five probes each
    assert told_of_pause(cluster, unseen) == 0
    await cluster.show(unseen)
    waiting.append(unseen)
    await asyncio.sleep(0.5)

    assert len(cluster.sim.generate_requests) == 1  # the refused one only
    for job_id in (refused, *waiting):
        job = await cluster.store.jobs.get(job_id)
        assert job is not None and job.state is JobState.QUEUED
        assert told_of_pause(cluster, job_id) == 1, job_id
    assert len(cluster.notices.saying("out of credits")) == 1

    cluster.sim.set_balance(1000)
    await cluster.until_settled([refused, *waiting])
    for job_id in (refused, *waiting):
        assert (await cluster.store.jobs.get(job_id)).state is JobState.DONE  # type: ignore[union-attr]
    assert len(cluster.notices.saying("credits again")) == 1
    assert a.paused_since is None and b.paused_since is None
    assert len(cluster.sim.jobs) == 4 and set(cluster.videos_per_trace().values()) == {1}
