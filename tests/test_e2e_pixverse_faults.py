"""PixVerse faults survived, end to end: the real bot against the fake Discord and a simulator
that misbehaves. Each test checks what the member sees and that nothing is lost or charged
twice (one PixVerse video per job, one ledger charge, PixVerse's balance down once).

The bots talk to a simulator owned by the test (the ``pixverse`` fixture), with the client's
timeouts and backoff shortened.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from conftest import FAST_RUNNER, png_bytes, status_text
from store_fixtures import ledger_state

from bot.jobs import mp4
from bot.jobs.pause import WAITING_TEXT
from bot.simulator.media import sample_video
from bot.store.models import JobState

START = 100_000  # the simulator's starting balance
COST = 45  # v4.5 / 540p / 5 s
QUICK = {"backoff_base": 0.01, "backoff_cap": 0.05, "read_timeout": 0.3, "max_attempts": 2}
# Retries slow enough for a status message (edited at most every 0.2 s here) to show them.
VISIBLE_RETRIES = dataclasses.replace(FAST_RUNNER, retry_delay=0.5)


async def start_job(world: Any, user: Any = None, **options: Any) -> tuple[Any, Any]:
    handle = await world.video(user, **options)
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral
    return handle, await world.latest_job(handle.user)


async def wait_state(world: Any, job_id: int, state: JobState, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while (job := await world.bot.store.jobs.get(job_id)).state is not state:
            await asyncio.sleep(0.02)
    return job


async def assert_charged_once(world: Any, job_id: int, user: Any, used: int = COST) -> None:
    assert await ledger_state(world.bot.store, job_id) == "committed"
    quota = await world.bot.store.ledger.quota(world.guild.id, user.id)
    assert (quota.used_today, quota.reserved) == (used, 0)


async def assert_refunded(world: Any, job_id: int, user: Any) -> None:
    assert await ledger_state(world.bot.store, job_id) == "released"
    quota = await world.bot.store.ledger.quota(world.guild.id, user.id)
    assert (quota.used_today, quota.reserved) == (0, 0)


def routed(pixverse: Any, route: str) -> list[Any]:
    return [r for r in pixverse.requests if r.route == route]


def attached(message: Any) -> bytes:
    [data] = message.files.values()
    return data


def ever_showed(message: Any, text: str) -> int:
    """How many states of the message (creation and each edit) showed ``text``."""
    count = 0
    for snapshot in message.history:
        parts = [snapshot.content or ""]
        for embed in snapshot.embeds:
            parts += [embed.get("title", ""), embed.get("description", "")]
            parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
        count += text in "\n".join(parts)
    return count


async def delivered_with_video(world: Any, handle: Any, job_id: int) -> Any:
    job = await world.job_final(job_id, timeout=20)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    assert mp4.problem(attached(handle.original)) is None
    return job


# -- hangs -------------------------------------------------------------------------------------


async def test_a_hung_upload_is_cut_by_the_read_timeout_logged_and_refunded(
    world: Any, pixverse: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    pixverse.inject_fault("image_upload", "hang", count=100, seconds=30)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle, job = await start_job(world)

    job = await world.job_final(job.id, timeout=20)

    assert job.state is JobState.FAILED
    await world.until(lambda: "Failed" in status_text(handle.original))
    text = status_text(handle.original)
    assert "PixVerse kept failing to answer" in text and f"{COST} credits returned" in text
    await assert_refunded(world, job.id, world.member)
    # 4 tries of the step, each 2 attempts of the client, each cut at 0.3 s.
    assert len(routed(pixverse, "image_upload")) == 8
    assert pixverse.generate_requests == []
    retries = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "retrying" in r.getMessage()
    ]
    assert len(retries) == 7
    for line in retries:
        assert "image/upload" in line and f"job {job.id}" in line.lower()


async def test_a_hung_submit_is_resent_with_its_trace_id_and_delivered_once(
    world: Any, pixverse: Any
) -> None:
    # The hung request is still served after the client gave up on it: two requests, one
    # video, whichever comes first.
    pixverse.inject_fault("img_generate", "hang", seconds=1.0)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle, job = await start_job(world)

    job = await delivered_with_video(world, handle, job.id)

    await world.until(lambda: len(pixverse.generate_requests) == 2)
    assert {r.trace_id for r in pixverse.generate_requests} == {job.trace_id}
    assert list(pixverse.jobs) == [job.pixverse_video_id]
    assert pixverse.balance == START - COST
    await assert_charged_once(world, job.id, world.member)


# -- unreadable answers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["truncate", "garble", "bare"])
async def test_an_unreadable_submit_answer_is_resent_and_the_video_delivered_once(
    world: Any, pixverse: Any, kind: str
) -> None:
    pixverse.inject_fault("img_generate", kind)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle, job = await start_job(world)

    job = await delivered_with_video(world, handle, job.id)

    assert [r.trace_id for r in pixverse.generate_requests] == [job.trace_id] * 2
    assert list(pixverse.jobs) == [job.pixverse_video_id]
    assert pixverse.balance == START - COST
    await assert_charged_once(world, job.id, world.member)
    assert "Failed" not in "".join(status_text(handle.original).split("\n")[:2])


async def test_a_submit_unanswered_through_every_retry_waits_and_asks_again_later(
    world: Any, pixverse: Any
) -> None:
    # 4 tries of 2 attempts all unreadable: the job goes back to the queue with its trace id
    # (PixVerse made the video at the first one) and the next round finds that video.
    pixverse.inject_fault("img_generate", "truncate", count=8)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK, runner=VISIBLE_RETRIES)
    handle, job = await start_job(world)

    job = await delivered_with_video(world, handle, job.id)

    assert ever_showed(handle.original, "did not answer the request")
    assert [r.trace_id for r in pixverse.generate_requests] == [job.trace_id] * 9
    assert len(pixverse.jobs) == 1 and pixverse.balance == START - COST
    await assert_charged_once(world, job.id, world.member)


async def test_a_submit_never_answered_fails_after_bounded_rounds_and_names_its_trace_id(
    world: Any, pixverse: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    pixverse.inject_fault("img_generate", "garble", count=1000)
    runner = dataclasses.replace(FAST_RUNNER, unanswered_rounds=2)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK, runner=runner)
    handle, job = await start_job(world)

    job = await world.job_final(job.id, timeout=20)

    assert job.state is JobState.FAILED
    await world.until(lambda: "Failed" in status_text(handle.original))
    assert "PixVerse kept failing to answer" in status_text(handle.original)
    # Three rounds (the first and two more) of 4 tries of 2 attempts, all the same request.
    assert [r.trace_id for r in pixverse.generate_requests] == [job.trace_id] * 24
    assert len(pixverse.jobs) == 1  # made by the first request: the operator is told
    [error] = [r.getMessage() for r in caplog.records if "never answered" in r.getMessage()]
    assert job.trace_id in error
    await assert_refunded(world, job.id, world.member)


async def test_unreadable_upload_and_poll_answers_are_asked_again(
    world: Any, pixverse: Any
) -> None:
    pixverse.inject_fault("image_upload", "garble")
    pixverse.inject_fault("result", "truncate", count=3)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle, job = await start_job(world)

    job = await delivered_with_video(world, handle, job.id)

    assert len(routed(pixverse, "image_upload")) == 2
    assert len(pixverse.generate_requests) == 1 and len(pixverse.jobs) == 1
    await assert_charged_once(world, job.id, world.member)


# -- the result file ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["truncate", "http_404"])
async def test_a_cut_or_missing_result_file_is_fetched_again_and_attached_whole(
    world: Any, pixverse: Any, kind: str
) -> None:
    pixverse.inject_fault("media", kind, count=2)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle, job = await start_job(world)

    job = await delivered_with_video(world, handle, job.id)

    assert len(routed(pixverse, "media")) == 3
    assert len(pixverse.jobs) == 1
    await assert_charged_once(world, job.id, world.member)


@pytest.mark.parametrize("kind", ["truncate", "http_404"])
async def test_a_result_file_never_whole_is_linked_with_a_note_never_attached(
    world: Any, pixverse: Any, kind: str
) -> None:
    pixverse.inject_fault("media", kind, count=100)
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle, job = await start_job(world)

    job = await world.job_final(job.id, timeout=20)

    assert job.state is JobState.DONE
    await world.until(lambda: "Done" in status_text(handle.original))
    text = status_text(handle.original)
    assert not handle.original.files
    assert job.result_url in text and "could not be fetched whole" in text
    assert len(routed(pixverse, "media")) == FAST_RUNNER.download_attempts
    await assert_charged_once(world, job.id, world.member)


# -- transient ErrCodes ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500069, 500100, 99999])
async def test_a_transient_error_code_at_submit_waits_and_retries_with_the_same_trace_id(
    world: Any, pixverse: Any, code: int
) -> None:
    pixverse.inject_fault("img_generate", "err_code", err_code=code, count=2)
    await world.start_bot(
        pixverse=pixverse, pixverse_options={**QUICK, "max_attempts": 1}, runner=VISIBLE_RETRIES
    )
    handle, job = await start_job(world)

    job = await delivered_with_video(world, handle, job.id)

    assert ever_showed(handle.original, "PixVerse is not answering well right now")
    assert [r.err_code for r in pixverse.generate_requests] == [code, code, 0]
    assert {r.trace_id for r in pixverse.generate_requests} == {job.trace_id}
    assert len(pixverse.jobs) == 1 and pixverse.balance == START - COST
    await assert_charged_once(world, job.id, world.member)


async def test_a_transient_error_code_that_persists_fails_clearly_after_bounded_tries(
    world: Any, pixverse: Any
) -> None:
    pixverse.inject_fault("img_generate", "err_code", err_code=500069, count=100)
    await world.start_bot(pixverse=pixverse, pixverse_options={**QUICK, "max_attempts": 1})
    handle, job = await start_job(world)

    job = await world.job_final(job.id, timeout=20)

    assert job.state is JobState.FAILED
    await world.until(lambda: "Failed" in status_text(handle.original))
    assert "PixVerse kept failing to answer" in status_text(handle.original)
    assert len(pixverse.generate_requests) == FAST_RUNNER.max_attempts
    assert pixverse.jobs == {} and pixverse.balance == START
    await assert_refunded(world, job.id, world.member)


# -- out of credits: the queue pauses ----------------------------------------------------------


async def test_out_of_credits_pauses_the_queue_until_the_account_is_topped_up(
    world: Any, pixverse: Any
) -> None:
    log = world.fake.add_channel(world.guild, "mod-log")
    pixverse.config.gen_time = 1.5
    pixverse.set_balance(COST)  # one video's worth
    bot = await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle = await world.fake.invoke(
        "mod log-channel", user=world.admin, channel=world.channel, options={"channel": log}
    )
    assert (await handle.response(timeout=5)).accepted
    first_handle, first = await start_job(world, world.member)
    await wait_state(world, first.id, JobState.GENERATING)

    # The next submit meets 500090: the queue pauses, nothing fails.
    second_handle, second = await start_job(world, world.other)
    await world.until(lambda: bot.runner.paused_since is not None)
    third_handle, third = await start_job(world, world.member)
    for waiting in (second_handle, third_handle):
        await world.until(lambda w=waiting: WAITING_TEXT in status_text(w.original))

    # The job already generating is unaffected.
    await delivered_with_video(world, first_handle, first.id)
    await asyncio.sleep(1.0)  # five balance probes, all finding the account empty
    for job in (second, third):
        stored = await bot.store.jobs.get(job.id)
        assert stored.state is JobState.QUEUED
        assert await ledger_state(bot.store, job.id) == "reserved"
    for waiting in (second_handle, third_handle):
        assert ever_showed(waiting.original, WAITING_TEXT) == 1  # told once
    [refused] = [r for r in pixverse.generate_requests if r.err_code == 500090]
    assert refused.trace_id == (await bot.store.jobs.get(second.id)).trace_id
    assert len(pixverse.generate_requests) == 2  # the third was never sent
    status = await world.fake.invoke("status", user=world.admin, channel=world.channel)
    assert "out of credits" in str((await status.response(timeout=5)).data)
    [paused] = [m for m in world.fake.messages_in(log) if "out of credits" in m.content]
    assert not paused.current.pings_anyone

    pixverse.set_balance(1000)

    second = await delivered_with_video(world, second_handle, second.id)
    third = await delivered_with_video(world, third_handle, third.id)
    # The refused job kept its trace id: its later request is the same one.
    assert [r.trace_id for r in pixverse.generate_requests].count(second.trace_id) == 2
    assert len(pixverse.jobs) == 3 and pixverse.balance == 1000 - 2 * COST
    await assert_charged_once(world, first.id, world.member, used=2 * COST)
    await assert_charged_once(world, third.id, world.member, used=2 * COST)
    await assert_charged_once(world, second.id, world.other)
    await world.until(
        lambda: any("credits again" in m.content for m in world.fake.messages_in(log))
    )
    notices = [m for m in world.fake.messages_in(log) if not m.embeds]
    assert len(notices) == 2
    assert bot.runner.paused_since is None


async def test_a_pause_for_credits_outlives_a_restart_and_members_are_told_once(
    world: Any, pixverse: Any
) -> None:
    log = world.fake.add_channel(world.guild, "mod-log")
    pixverse.set_balance(0)
    bot = await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle = await world.fake.invoke(
        "mod log-channel", user=world.admin, channel=world.channel, options={"channel": log}
    )
    assert (await handle.response(timeout=5)).accepted
    first_handle, first = await start_job(world, world.member)
    await world.until(lambda: bot.runner.paused_since is not None)
    second_handle, second = await start_job(world, world.other)
    waiting = (first_handle, second_handle)
    for status in waiting:
        await world.until(lambda s=status: WAITING_TEXT in status_text(s.original))
    await world.until(
        lambda: any("out of credits" in m.content for m in world.fake.messages_in(log))
    )
    since = bot.runner.paused_since
    assert len(pixverse.generate_requests) == 1  # the refused one

    await world.stop_bot()
    bot = await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)

    # Still paused, from the same moment: nothing is submitted, nobody is told again.
    assert bot.runner.paused_since == since
    await asyncio.sleep(1.0)  # five balance probes, all finding the account empty
    assert len(pixverse.generate_requests) == 1
    assert len(routed(pixverse, "balance")) >= 3
    for job in (first, second):
        assert (await bot.store.jobs.get(job.id)).state is JobState.QUEUED
        assert await ledger_state(bot.store, job.id) == "reserved"
    for status in waiting:
        assert ever_showed(status.original, WAITING_TEXT) == 1
    status = await world.fake.invoke("status", user=world.admin, channel=world.channel)
    assert "out of credits" in str((await status.response(timeout=5)).data)
    assert len([m for m in world.fake.messages_in(log) if "out of credits" in m.content]) == 1

    pixverse.set_balance(1000)

    first = await delivered_with_video(world, first_handle, first.id)
    await delivered_with_video(world, second_handle, second.id)
    assert [r.trace_id for r in pixverse.generate_requests].count(first.trace_id) == 2
    assert len(pixverse.jobs) == 2 and pixverse.balance == 1000 - 2 * COST
    await assert_charged_once(world, first.id, world.member)
    await assert_charged_once(world, second.id, world.other)
    for status in waiting:
        assert ever_showed(status.original, WAITING_TEXT) == 1
    await world.until(
        lambda: any("credits again" in m.content for m in world.fake.messages_in(log))
    )
    assert bot.runner.paused_since is None
    assert await bot.store.pause.current() is None


async def test_the_balance_probe_survives_failures_while_paused(world: Any, pixverse: Any) -> None:
    pixverse.set_balance(0)
    bot = await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    handle, job = await start_job(world)
    await world.until(lambda: bot.runner.paused_since is not None)
    pixverse.inject_fault("balance", "http_500", count=6)  # three probes fail, 2 attempts each

    pixverse.set_balance(500)

    await delivered_with_video(world, handle, job.id)
    assert len(routed(pixverse, "balance")) >= 7
    assert len(pixverse.jobs) == 1
    await assert_charged_once(world, job.id, world.member)


# -- 5xx and resets on every endpoint, end to end ----------------------------------------------


async def finished_source(world: Any) -> tuple[Any, Any]:
    """A finished /video of the member's, its video attached: the status message and job."""
    handle, source = await start_job(world)
    await delivered_with_video(world, handle, source.id)
    return handle.original, source


async def ask(world: Any, how: str, user: Any, source: tuple[Any, Any] | None) -> Any:
    """One job of ``user``'s, the way ``how`` names; the handle whose reply is its status."""
    if how == "video":
        return await world.video(user)
    if how == "imagine":
        return await world.fake.invoke(
            "imagine", user=user, channel=world.channel, options={"prompt": "a lighthouse"}
        )
    if how == "extend":
        return await world.fake.invoke(
            "extend",
            user=user,
            channel=world.channel,
            options={"prompt": "and then", "video": ("clip.mp4", sample_video(), "video/mp4")},
        )
    if how == "transition":
        return await world.fake.invoke(
            "transition",
            user=user,
            channel=world.channel,
            options={"prompt": "day to night"},
            attachments={
                "first": ("day.png", png_bytes(64, 48), "image/png"),
                "last": ("night.png", png_bytes(80, 60), "image/png"),
            },
        )
    assert how == "sound" and source is not None, how
    message, job = source
    click = await world.fake.click(message, f"pixbot:sound:{job.id}", user=user)
    modal = await click.wait_modal(timeout=5)
    return await world.fake.submit_modal(modal["custom_id"], {}, user=user, channel=world.channel)


@pytest.mark.parametrize(
    ("route", "kind", "how"),
    [
        ("image_upload", "http_500", "video"),
        ("image_upload", "drop", "video"),
        ("img_generate", "http_500", "video"),
        ("img_generate", "drop", "video"),
        ("media_upload", "drop", "extend"),
        ("extend_generate", "http_500", "extend"),
        ("extend_generate", "drop", "extend"),
        ("text_generate", "drop", "imagine"),
        ("transition_generate", "http_500", "transition"),
        ("transition_generate", "drop", "transition"),
        ("sound_effect_generate", "http_500", "sound"),
        ("sound_effect_generate", "drop", "sound"),
        ("media", "http_500", "video"),
        ("media", "drop", "video"),
    ],
)
async def test_a_5xx_or_reset_on_any_endpoint_is_survived_with_one_video_and_one_charge(
    world: Any, pixverse: Any, route: str, kind: str, how: str
) -> None:
    await world.start_bot(pixverse=pixverse, pixverse_options=QUICK)
    # The source of a Sound comes first, untouched by the fault; another member presses it.
    source = await finished_source(world) if how == "sound" else None
    user = world.other
    jobs_before, balance_before = set(pixverse.jobs), pixverse.balance
    sent_before = len(routed(pixverse, route))
    pixverse.inject_fault(route, kind)

    handle = await ask(world, how, user, source)
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral, response
    job = await delivered_with_video(world, handle, (await world.latest_job(user)).id)

    # The fault was met, and the call made again.
    assert len(routed(pixverse, route)) - sent_before == 2
    assert "Failed" not in status_text(handle.original)
    # One PixVerse video for the job, paid for once at PixVerse and once in the ledger.
    assert set(pixverse.jobs) - jobs_before == {job.pixverse_video_id}
    assert pixverse.balance == balance_before - job.cost
    sent = [r for r in pixverse.generate_requests if r.trace_id == job.trace_id]
    assert len(sent) == (2 if route.endswith("_generate") else 1)
    await assert_charged_once(world, job.id, user, used=job.cost)
