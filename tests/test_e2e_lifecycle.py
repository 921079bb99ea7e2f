"""One job's status message end to end: what it shows, how it is edited, and how it ends."""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from conftest import FAST_RUNNER, png_bytes, status_text
from store_fixtures import ledger_state

from bot.simulator import MODERATION_MARKER, SimulatorConfig
from bot.store.models import JobState

LABELS = {
    "Queued": JobState.QUEUED,
    "Uploading": JobState.UPLOADING,
    "Submitted": JobState.SUBMITTED,
    "Generating": JobState.GENERATING,
    "Done": JobState.DONE,
    "Failed": JobState.FAILED,
}
ORDER = list(LABELS.values())


def shown_state(snapshot) -> JobState:
    title = snapshot.embeds[0]["title"]
    return next(state for label, state in LABELS.items() if label in title)


def fields(message) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


def looks(snapshot) -> tuple:
    """What a member sees of one state of a message."""
    return snapshot.content, snapshot.embeds, snapshot.components, snapshot.filenames


def assert_edited_only_on_change(message) -> None:
    history = message.history
    for before, after in itertools.pairwise(history):
        title = after.embeds[0]["title"] if after.embeds else after.content
        when = after.at - history[0].at
        assert looks(after) != looks(before), f"edit at {when:.2f}s changed nothing: {title}"


async def quota(world, user):
    return await world.bot.store.ledger.quota(world.guild.id, user.id)


async def job_of(world, handle):
    """The job whose status message is `handle`'s original response."""
    message = await handle.wait_original(timeout=5)
    async with asyncio.timeout(5):
        while True:
            jobs = await world.bot.store.jobs.list_for_user(
                world.guild.id, handle.user.id, limit=20, offset=0
            )
            for job in jobs:
                if job.status_message_id == message.id:
                    return job
            await asyncio.sleep(0.02)


async def finished(world, handle, timeout: float = 15.0):
    """The job behind `handle`, once final, and its status message."""
    job = await job_of(world, handle)
    job = await world.job_final(job.id, timeout=timeout)
    return job, handle.original


async def test_status_message_is_public_and_names_member_prompt_options_and_job(world):
    await world.start_bot()
    handle = await world.video(
        prompt="a red fox leaps over a frozen river at dawn",
        quality="540p",
        duration=5,
        seed=1234,
    )
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral and response.delay < 3
    job = await world.latest_job()
    first = handle.original.history[0]
    assert f"<@{world.member.id}>" in first.content
    assert f"#{job.id}" in first.content
    embed = first.embeds[0]
    assert "Queued" in embed["title"]
    assert embed["description"].startswith("a red fox leaps")
    shown = {f["name"]: f["value"] for f in embed["fields"]}
    assert shown["Model"] == "v4.5"
    assert shown["Quality"] == "540p"
    assert shown["Duration"] == "5 s"
    assert shown["Seed"] == "1234"
    assert not first.pings_anyone


async def test_job_goes_through_its_states_and_ends_with_video_embed_and_buttons(world):
    bot = await world.start_bot(simulator=SimulatorConfig(gen_time=1.2, seed=7))
    handle = await world.video(seed=99)
    job, message = await finished(world, handle)
    assert job.state is JobState.DONE
    await world.until(lambda: message.files)

    states = [shown_state(s) for s in message.history]
    assert states[0] is JobState.QUEUED and states[-1] is JobState.DONE
    assert JobState.GENERATING in states
    generating = next(s for s in message.history if shown_state(s) is JobState.GENERATING)
    assert "elapsed" in generating.embeds[0]["title"]
    assert [ORDER.index(s) for s in states] == sorted(ORDER.index(s) for s in states)
    assert_edited_only_on_change(message)

    [data] = message.files.values()
    assert data[4:8] == b"ftyp"
    shown = fields(message)
    assert shown["Seed"] == "99"
    assert shown["Model"] == "v4.5" and shown["Quality"] == "540p"
    assert shown["Duration"] == "5 s"
    assert shown["Credits spent"] == "45"
    assert shown["Credits left today"] == "105"
    assert {f"pixbot:reroll:{job.id}", f"pixbot:extend:{job.id}"} <= set(message.custom_ids())
    assert len(bot.simulator.generate_requests) == 1
    assert (await quota(world, world.member)).used_today == 45


async def test_no_status_message_state_pings_anyone(world):
    await world.start_bot(simulator=SimulatorConfig(gen_time=0.6, seed=7))
    handle = await world.video(prompt="hello @everyone <@&1> and friends")
    _, message = await finished(world, handle)
    await world.until(lambda: message.files)
    assert len(message.history) >= 3
    for snapshot in message.history:
        assert not snapshot.pings_anyone, snapshot
        assert snapshot.allowed_mentions is not None
        assert snapshot.allowed_mentions.get("parse") == []


async def test_real_interval_progress_edits_are_three_seconds_apart_and_only_on_change(world):
    # Polled every 0.1 s for 6 s: dozens of progress updates, a few visible changes. The
    # final result never waits for the per-message pause (issue 7): only progress edits are
    # kept three seconds apart.
    await world.start_bot(
        simulator=SimulatorConfig(gen_time=6.0, seed=7),
        status_interval=3.0,
        runner=dataclasses.replace(FAST_RUNNER, default_estimate=6.0),
    )
    handle = await world.video()
    job, message = await finished(world, handle, timeout=20)
    assert job.state is JobState.DONE
    history = message.history
    assert len(history) >= 4  # created, generating 0s, generating 5s, done
    for before, after in itertools.pairwise(history[:-1]):
        assert after.at - before.at >= 3.0 - 0.05, (before, after)
    assert "Done" in str(history[-1].embeds)
    assert_edited_only_on_change(message)


async def test_moderated_prompt_fails_with_reason_and_returns_the_credits(world):
    await world.start_bot()
    handle = await world.video(prompt=f"something {MODERATION_MARKER}")
    job, message = await finished(world, handle)
    assert job.state is JobState.FAILED
    await world.until(lambda: "Failed" in status_text(message))
    text = status_text(message)
    assert "moderation" in text
    assert "45 credits returned" in text
    left = await quota(world, world.member)
    assert (left.used_today, left.reserved, left.left) == (0, 0, 150)
    assert await ledger_state(world.bot.store, job.id) == "released"
    assert message.custom_ids() == []


async def test_generation_failure_fails_with_reason_and_returns_the_credits(world):
    await world.start_bot(simulator=SimulatorConfig(gen_time=0.3, failure_rate=1.0, seed=7))
    handle = await world.video()
    job, message = await finished(world, handle)
    assert job.state is JobState.FAILED
    await world.until(lambda: "Failed" in status_text(message))
    assert "could not generate" in status_text(message)
    left = await quota(world, world.member)
    assert (left.used_today, left.reserved) == (0, 0)


async def test_pixverse_refusing_the_submit_fails_with_reason_and_returns_the_credits(world):
    bot = await world.start_bot()
    bot.simulator.inject_fault("img_generate", "err_code", err_code=500071)
    handle = await world.video(effect="Kiss kiss", quality="720p")
    job, message = await finished(world, handle)
    assert job.state is JobState.FAILED
    await world.until(lambda: "Failed" in status_text(message))
    assert "360p or 540p" in status_text(message)
    left = await quota(world, world.member)
    assert (left.used_today, left.reserved) == (0, 0)
    assert bot.simulator.jobs == {}


async def test_video_over_the_upload_limit_is_linked_not_attached(world):
    world.guild.attachment_size_limit = 100_000
    await world.start_bot(simulator=SimulatorConfig(gen_time=0.3, seed=7, video_size_bytes=200_000))
    handle = await world.video()
    job, message = await finished(world, handle)
    assert job.state is JobState.DONE
    await world.until(lambda: "Done" in status_text(message))
    assert message.files == {}
    assert "Download the video" in fields(message)["Video"]
    assert job.result_url and job.result_url in fields(message)["Video"]


async def test_video_discord_refuses_as_too_large_falls_back_to_the_link(world):
    # The limit known when the job was accepted lets the video through; Discord's refuses it.
    await world.start_bot(simulator=SimulatorConfig(gen_time=0.5, seed=7, video_size_bytes=200_000))
    handle = await world.video()
    await handle.response(timeout=5)
    world.guild.attachment_size_limit = 100_000
    job, message = await finished(world, handle)
    assert job.state is JobState.DONE
    await world.until(lambda: "Done" in status_text(message))
    assert message.files == {}
    assert "Download the video" in fields(message)["Video"]


async def test_expired_token_finishes_the_job_through_the_channel(world):
    await world.start_bot()
    # 14 min 40 s old: the token has less life left than the reporter's safety margin.
    handle = await world.fake.invoke(
        "video",
        user=world.member,
        channel=world.channel,
        options={"prompt": "a cat turns its head"},
        attachments={"image": ("cat.png", png_bytes(), "image/png")},
        backdate=880,
    )
    job, message = await finished(world, handle)
    assert job.state is JobState.DONE
    await world.until(lambda: message.files)
    assert message.edits and set(message.edit_sources) == {"channel"}
    assert message.current.source == "channel"


async def test_token_refused_mid_job_switches_to_the_channel(world):
    await world.start_bot(simulator=SimulatorConfig(gen_time=0.8, seed=7))
    handle = await world.video()
    await handle.response(timeout=5)
    world.fake.expire_token(handle)
    job, message = await finished(world, handle)
    assert job.state is JobState.DONE
    await world.until(lambda: message.files)
    assert message.current.source == "channel"
    assert "Done" in status_text(message)


async def test_deleted_status_message_gets_the_result_as_a_new_message_pinging_the_owner(world):
    bot = await world.start_bot(simulator=SimulatorConfig(gen_time=0.8, seed=7))
    handle = await world.video()
    await handle.response(timeout=5)
    original = handle.original
    world.fake.delete_message(world.channel, original)
    job, _ = await finished(world, handle)
    assert job.state is JobState.DONE
    posted = [m for m in world.fake.messages_in(world.channel) if m is not original]
    assert len(posted) == 1
    [result] = posted
    assert result.current.source == "channel"
    assert result.current.mention_user_ids == frozenset({world.member.id})
    assert f"#{job.id}" in status_text(result)
    [data] = result.files.values()
    assert data[4:8] == b"ftyp"
    assert {f"pixbot:reroll:{job.id}", f"pixbot:extend:{job.id}"} <= set(result.custom_ids())
    assert (await bot.store.jobs.get(job.id)).status_message_id == result.id


async def test_pixverse_concurrency_limit_makes_the_second_job_wait_then_both_finish(world):
    bot = await world.start_bot(
        runner=dataclasses.replace(FAST_RUNNER, max_active=2, busy_delay=0.3),
        simulator=SimulatorConfig(gen_time=1.0, seed=7, max_concurrent=1),
    )
    first = await world.video(world.member, prompt="first")
    await first.response(timeout=5)
    await world.until(lambda: len(bot.simulator.jobs) == 1)
    second = await world.video(world.other, prompt="second")
    await second.response(timeout=5)
    message = second.original
    await world.until(lambda: "busy" in status_text(message), timeout=5)
    job_a, _ = await finished(world, first)
    job_b, _ = await finished(world, second)
    assert job_a.state is JobState.DONE and job_b.state is JobState.DONE
    await world.until(lambda: message.files)
    assert len(bot.simulator.jobs) == 2


async def test_members_take_turns_when_slots_are_short(world):
    bot = await world.start_bot(
        runner=dataclasses.replace(FAST_RUNNER, max_active=1),
        simulator=SimulatorConfig(gen_time=1.0, seed=7),
        max_jobs_per_user=5,
    )
    handles = []
    for user, prompt in ((world.member, "a1"), (world.member, "a2"), (world.other, "b1")):
        handle = await world.video(user, prompt=prompt)
        await handle.response(timeout=5)
        handles.append(handle)
    _, a2, b1 = (handle.original for handle in handles)
    # While a1 runs, the queue shows B's one job ahead of A's second.
    await world.until(lambda: "position 2 in line" in status_text(a2), timeout=5)
    assert "position 1 in line" in status_text(b1)
    async with asyncio.timeout(15):
        while len(bot.simulator.generate_requests) < 3:
            await asyncio.sleep(0.05)
    prompts = [r.json["prompt"] for r in bot.simulator.generate_requests]
    assert prompts == ["a1", "b1", "a2"]
    for handle in handles:
        job, _ = await finished(world, handle)
        assert job.state is JobState.DONE
