"""/jobs and /cancel end to end: a member's own jobs, newest first; cancelling a queued job
gives its credits back and PixVerse never hears of it."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from conftest import FAST_RUNNER, status_text
from store_fixtures import with_limits

from bot.pixverse.rules import Quality
from bot.simulator import SimulatorConfig
from bot.store.models import JobParams, JobState, NewJob

ONE_SLOT = replace(FAST_RUNNER, max_active=1)
NO_SLOTS = replace(FAST_RUNNER, max_active=0)  # nothing ever leaves the queue
SLOW = SimulatorConfig(gen_time=60, seed=7)


def embed_lines(data: dict[str, Any] | None) -> list[str]:
    [embed] = (data or {}).get("embeds") or [{}]
    return embed.get("description", "").splitlines()


def footer(data: dict[str, Any] | None) -> str:
    [embed] = (data or {}).get("embeds") or [{}]
    return (embed.get("footer") or {}).get("text", "")


async def command(world: Any, name: str, user: Any = None, **options: Any) -> Any:
    handle = await world.fake.invoke(
        name, user=user or world.member, channel=world.channel, options=options
    )
    response = await handle.response(timeout=5)
    assert response.accepted and response.delay < 3
    return response


async def busy_world(world: Any) -> tuple[Any, Any, Any]:
    """One PixVerse slot: the member's first job generates (for a minute), the second waits."""
    bot = await world.start_bot(runner=ONE_SLOT, simulator=SLOW)
    first = await world.video(prompt="first: a lighthouse in a storm")
    assert not (await first.response(timeout=5)).ephemeral
    await world.until(lambda: "Generating" in status_text(first.original))
    second = await world.video(prompt="second: a paper boat drifting")
    assert not (await second.response(timeout=5)).ephemeral
    await world.until(lambda: "Queued" in status_text(second.original))
    return bot, first, second


async def job_of(world: Any, handle: Any) -> Any:
    match = re.search(r"job #(\d+)", handle.original.content)
    assert match, handle.original.content
    job = await world.bot.store.jobs.get(int(match.group(1)))
    assert job is not None
    return job


async def quota(world: Any, user: Any = None) -> Any:
    user = user or world.member
    return await world.bot.store.ledger.quota(world.guild.id, user.id)


def pixverse_routes(bot: Any) -> list[str]:
    return [r.route for r in bot.simulator.requests if r.route != "result"]


# --- /jobs ------------------------------------------------------------------------------------


async def test_jobs_lists_newest_first_with_states_prompts_and_links(world):
    bot = await world.start_bot()
    done = await world.video(prompt="an owl blinks slowly under the moon")
    await done.response(timeout=5)
    done_job = await world.job_final((await job_of(world, done)).id)
    assert done_job.state is JobState.DONE
    bot.simulator.config.gen_time = 60
    running = await world.video(prompt="waves crash on black volcanic sand")
    await running.response(timeout=5)
    await world.until(lambda: "Generating" in status_text(running.original))
    running_job = await job_of(world, running)

    response = await command(world, "jobs")
    assert response.ephemeral
    newest, oldest = embed_lines(response.data)
    guild, channel = world.guild.id, world.channel.id
    assert f"`#{running_job.id}`" in newest and "generating" in newest
    assert "waves crash on black volcanic sand" in newest
    assert f"https://discord.com/channels/{guild}/{channel}/{running.original.id}" in newest
    assert "[video]" not in newest
    assert f"`#{done_job.id}`" in oldest and "done" in oldest
    assert "an owl blinks slowly" in oldest
    assert f"https://discord.com/channels/{guild}/{channel}/{done.original.id}" in oldest
    assert f"[video]({done_job.result_url})" in oldest
    assert "Page 1 of 1" in footer(response.data)


async def test_jobs_shows_only_the_members_own_jobs(world):
    await world.start_bot()
    handle = await world.video(user=world.other, prompt="someone else's dragon")
    await handle.response(timeout=5)
    await world.job_final((await job_of(world, handle)).id)
    response = await command(world, "jobs")
    assert response.ephemeral
    assert "no jobs" in response.content and "/video" in response.content


async def test_jobs_paginates_ten_per_page(world):
    bot = await world.start_bot(runner=NO_SLOTS)
    ids = []
    for n in range(1, 13):
        params = JobParams(
            prompt=f"prompt number {n}", model="v4.5", quality=Quality.P540, duration=5
        )
        roomy = with_limits(bot.store, max_jobs_per_user=100, daily_credits=10_000)
        job = await roomy.jobs.create(
            NewJob(
                guild_id=world.guild.id,
                channel_id=world.channel.id,
                user_id=world.member.id,
                params=params,
            )
        )
        ids.append(job.id)

    first = await command(world, "jobs")
    assert first.ephemeral
    lines = embed_lines(first.data)
    assert len(lines) == 10
    for job_id, line in zip(ids[::-1], lines, strict=False):
        assert line.startswith(f"`#{job_id}` ⏳ **queued**"), line
    assert "prompt number 12" in lines[0] and "prompt number 3" in lines[-1]
    assert "Page 1 of 2" in footer(first.data) and "12 job(s)" in footer(first.data)
    assert "page:2" in footer(first.data)

    second = await command(world, "jobs", page=2)
    assert second.ephemeral
    lines = embed_lines(second.data)
    assert len(lines) == 2
    assert f"`#{ids[1]}`" in lines[0] and f"`#{ids[0]}`" in lines[1]
    assert "Page 2 of 2" in footer(second.data)

    beyond = await command(world, "jobs", page=9)
    assert embed_lines(beyond.data) == lines


# --- /cancel ----------------------------------------------------------------------------------


async def test_cancel_own_queued_job_gives_credits_back(world):
    bot, _first, second = await busy_world(world)
    queued = await job_of(world, second)
    assert queued.state is JobState.QUEUED
    assert (await quota(world)).reserved == 90

    response = await command(world, "cancel", job=queued.id)
    assert response.ephemeral
    assert f"Cancelled job #{queued.id}" in response.content and "45 credits" in response.content
    assert (await quota(world)).reserved == 45
    assert (await bot.store.jobs.get(queued.id)).state is JobState.CANCELLED
    await world.until(lambda: "Cancelled" in status_text(second.original))
    assert "45 credits returned" in status_text(second.original)
    listed = await command(world, "jobs")
    assert f"`#{queued.id}` 🚫 **cancelled**" in embed_lines(listed.data)[0]
    assert pixverse_routes(bot) == ["image_upload", "img_generate"]


async def test_cancel_job_waiting_on_pixverse_concurrency_limit(world):
    # PixVerse answered 500044 (its concurrency limit): the job went back to the queue and
    # PixVerse has not accepted it, so it can still be cancelled.
    bot = await world.start_bot(runner=replace(FAST_RUNNER, busy_delay=30))
    bot.simulator.inject_fault("img_generate", "err_code", err_code=500044)
    handle = await world.video()
    await handle.response(timeout=5)
    await world.until(lambda: "busy" in status_text(handle.original))
    job = await job_of(world, handle)
    assert job.state is JobState.QUEUED

    response = await command(world, "cancel", job=job.id)
    assert response.ephemeral and f"Cancelled job #{job.id}" in response.content
    assert (await quota(world)).reserved == 0
    await world.until(lambda: "Cancelled" in status_text(handle.original))
    listed = await command(world, "jobs")
    assert "cancelled" in embed_lines(listed.data)[0]
    assert bot.simulator.jobs == {}


async def test_cancel_someone_elses_job_is_refused(world):
    bot = await world.start_bot(runner=ONE_SLOT, simulator=SLOW)
    first = await world.video(user=world.other, prompt="their first")
    await first.response(timeout=5)
    await world.until(lambda: "Generating" in status_text(first.original))
    theirs = await world.video(user=world.other, prompt="their second")
    await theirs.response(timeout=5)
    job = await job_of(world, theirs)
    before = await quota(world, world.other)

    response = await command(world, "cancel", job=job.id)
    assert response.ephemeral
    assert "not yours" in response.content
    assert (await bot.store.jobs.get(job.id)).state is JobState.QUEUED
    assert (await quota(world, world.other)).reserved == before.reserved == 90
    assert "Cancelled" not in status_text(theirs.original)


async def test_cancel_generating_job_is_refused_with_the_reason(world):
    bot, first, _second = await busy_world(world)
    job = await job_of(world, first)
    response = await command(world, "cancel", job=job.id)
    assert response.ephemeral
    assert "already with PixVerse" in response.content and "generating" in response.content
    assert (await bot.store.jobs.get(job.id)).state is JobState.GENERATING
    assert (await quota(world)).reserved == 90


async def test_cancel_finished_job_is_refused(world):
    await world.start_bot()
    handle = await world.video()
    await handle.response(timeout=5)
    job = await world.job_final((await job_of(world, handle)).id)
    response = await command(world, "cancel", job=job.id)
    assert response.ephemeral
    assert "already ended" in response.content and "done" in response.content
    assert (await quota(world)).used_today == 45


async def test_cancel_unknown_job_is_refused(world):
    await world.start_bot()
    response = await command(world, "cancel", job=999)
    assert response.ephemeral
    assert "no job #999" in response.content and "/jobs" in response.content


async def test_cancel_autocomplete_offers_only_the_members_queued_jobs(world):
    bot, first, second = await busy_world(world)
    theirs = await world.video(user=world.other, prompt="their queued one")
    await theirs.response(timeout=5)
    queued, generating = await job_of(world, second), await job_of(world, first)
    other_job = await job_of(world, theirs)

    async def offered(user: Any, text: str = "") -> list[int]:
        choices = await world.fake.autocomplete(
            "cancel", focused="job", user=user, channel=world.channel, options={"job": text}
        )
        return [choice["value"] for choice in choices]

    assert await offered(world.member) == [queued.id]
    assert await offered(world.other) == [other_job.id]
    assert await offered(world.member, "paper boat") == [queued.id]
    assert await offered(world.member, "lighthouse") == []
    assert generating.id not in await offered(world.member, str(generating.id))
    assert len(bot.simulator.generate_requests) == 1
