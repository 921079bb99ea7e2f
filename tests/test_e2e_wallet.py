"""The operator's account and wallet end to end (issue 9, item 3): the real discord.py
client, the fake Discord, the embedded simulator.

* BUDGET_DAILY_CREDITS: past the budget a video is refused with the reset time; at 80 %
  every server's moderation log is warned once that UTC day, restarts included.
* MODERATION_STRIKES: the member whose videos PixVerse's moderation refuses that many times
  in a day (as a result in status 7, or at upload or submit) is blocked in the server, the
  log channel is told, and a moderator unblocks.
* COMMAND_COOLDOWN_SECONDS: a member's command or result button within the wait after their
  last accepted job is refused before any work, and the refusal does not restart the wait.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from store_fixtures import ledger_state

from bot.simulator import MODERATION_MARKER
from bot.store.models import JobState

GENERATE = {"img_generate", "extend_generate", "text_generate"}
BUDGET_LINE = "daily PixVerse budget"


# -- helpers -----------------------------------------------------------------------------------


def reply_text(response: Any) -> str:
    data = response.data or {}
    parts = [data.get("content") or ""]
    for embed in data.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


def embed_text(message: Any) -> str:
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


async def refused(handle: Any, *expected: str) -> str:
    """An ephemeral refusal in time that pings nobody; its text."""
    response = await handle.response(timeout=5)
    assert response.accepted and response.delay < 3, response
    assert response.ephemeral, reply_text(response)
    assert (response.data or {}).get("allowed_mentions", {}).get("parse") == []
    text = reply_text(response)
    for part in expected:
        assert part in text, text
    return text


async def accepted(world: Any, handle: Any) -> Any:
    """The job a public status message announced."""
    response = await handle.response(timeout=5)
    assert not response.ephemeral, reply_text(response)
    await handle.wait_original(timeout=5)
    match = re.search(r"job #(\d+)", handle.original.content)
    assert match, handle.original.content
    job = await world.bot.store.jobs.get(int(match.group(1)))
    assert job is not None
    return job


async def done_video(world: Any, user: Any = None, **options: Any) -> tuple[Any, Any]:
    handle = await world.video(user, **options)
    job = await world.job_final((await accepted(world, handle)).id)
    assert job.state is JobState.DONE, job.error
    return job, handle.original


async def mod(world: Any, sub: str, **options: Any) -> str:
    handle = await world.fake.invoke(
        f"mod {sub}", user=world.admin, channel=world.channel, options=options
    )
    response = await handle.response(timeout=5)
    assert response.ephemeral
    return reply_text(response)


async def quota_admin(world: Any, sub: str, **options: Any) -> str:
    handle = await world.fake.invoke(
        f"quota-admin {sub}", user=world.admin, channel=world.channel, options=options
    )
    response = await handle.response(timeout=5)
    assert response.ephemeral
    return reply_text(response)


def next_midnights() -> set[int]:
    """The next 00:00 UTC as unix seconds (either side of a midnight the test may cross)."""
    now = datetime.now(UTC)
    return {
        int(datetime.combine(day.date(), datetime.min.time(), UTC).timestamp())
        for day in (now + timedelta(days=1), now + timedelta(days=1, seconds=30))
    }


def generate_requests(world: Any) -> int:
    return len([r for r in world.bot.simulator.requests if r.route in GENERATE])


def budget_warnings(world: Any, channel: Any) -> list[Any]:
    return [m for m in world.fake.messages_in(channel) if BUDGET_LINE in (m.content or "")]


# -- the daily budget ------------------------------------------------------------------------


async def test_a_video_past_the_budget_is_refused_with_the_reset_time_and_nothing_charged(world):
    await world.start_bot(budget_daily_credits=90)
    mine = await accepted(world, await world.video())
    theirs = await accepted(world, await world.video(world.other))  # 90 of 90 held
    downloads = len(world.fake.file_downloads)

    text = await refused(await world.video(), BUDGET_LINE, "00:00 UTC", "Nothing was charged")
    assert any(f"<t:{stamp}:R>" in text for stamp in next_midnights()), text

    assert await world.bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 1
    assert (await world.bot.store.ledger.quota(world.guild.id, world.member.id)).reserved == 45
    assert len(world.fake.file_downloads) == downloads  # refused before the download
    for job in (mine, theirs):
        assert (await world.job_final(job.id)).state is JobState.DONE
    assert generate_requests(world) == 2  # PixVerse saw only the two accepted videos


async def test_the_budget_warning_reaches_every_log_channel_once_even_after_a_restart(world):
    # 225 credits: the 4th 45-credit video brings the spend to 80 %, the 5th to 100 %.
    settings = {"budget_daily_credits": 225, "daily_credits": 1000, "max_jobs_per_user": 10}
    log = world.fake.add_channel(world.guild, "mod-log")
    elsewhere = world.fake.add_guild("Second Server")
    other_log = world.fake.add_channel(elsewhere, "mod-log")
    bot = await world.start_bot(**settings)
    await mod(world, "log-channel", channel=log)
    await bot.store.moderation.set_log_channel(elsewhere.id, world.admin.id, other_log.id)

    for _ in range(3):  # 135 of 225: 60 %
        await done_video(world)
    await asyncio.sleep(0.3)
    assert budget_warnings(world, log) == [] and budget_warnings(world, other_log) == []

    await done_video(world)  # 180 of 225: 80 %
    for channel in (log, other_log):
        warning = await world.fake.wait_for_message(
            channel, lambda m: BUDGET_LINE in (m.content or ""), timeout=5
        )
        assert "80 %" in warning.content and "180 of 225" in warning.content
        assert any(f"<t:{stamp}:R>" in warning.content for stamp in next_midnights())
        assert not warning.current.pings_anyone

    await world.stop_bot()
    await world.start_bot(**settings)
    await done_video(world)  # 225 of 225: still allowed, and no second warning
    await asyncio.sleep(0.5)
    assert len(budget_warnings(world, log)) == 1
    assert len(budget_warnings(world, other_log)) == 1
    await refused(await world.video(), BUDGET_LINE)


# -- moderation strikes ----------------------------------------------------------------------


async def moderated_video(world: Any) -> Any:
    handle = await world.video(prompt=f"a cat {MODERATION_MARKER}")
    job = await world.job_final((await accepted(world, handle)).id)
    assert job.state is JobState.FAILED
    return job


async def log_entry(world: Any, log: Any, job_id: int) -> Any:
    return await world.fake.wait_for_message(
        log, lambda m: any(f"Job #{job_id}" in e.get("title", "") for e in m.embeds), timeout=10
    )


async def struck_out(world: Any) -> tuple[Any, Any, Any]:
    """MODERATION_STRIKES=2 with a log channel: the member's second moderated video."""
    log = world.fake.add_channel(world.guild, "mod-log")
    await world.start_bot(moderation_strikes=2)
    await mod(world, "log-channel", channel=log)
    first = await moderated_video(world)
    entry = await log_entry(world, log, first.id)
    assert "Moderation strikes: 1 of 2 today" in embed_text(entry)
    assert "blocked" not in embed_text(entry)
    second = await moderated_video(world)
    return log, first, second


async def test_the_limiting_moderation_strike_blocks_the_member_and_tells_the_log(world):
    log, _first, second = await struck_out(world)
    entry = await log_entry(world, log, second.id)
    text = embed_text(entry)
    assert f"<@{world.member.id}> is now blocked" in entry.content, text
    assert "Moderation strikes: 2 of 2 today: member blocked" in text
    assert "/quota-admin unblock" in entry.content
    assert not entry.current.pings_anyone

    view = await world.bot.store.ledger.quota(world.guild.id, world.member.id)
    assert view.blocked and "moderation refused 2 of your videos today" in view.block_reason
    row = (await world.bot.store.admin.audit(world.guild.id, world.member.id))[0]
    assert (row.action, row.actor_id, row.target_id) == (
        "quota.block",
        world.fake.bot_user.id,
        world.member.id,
    )
    downloads = len(world.fake.file_downloads)
    await refused(await world.video(), "blocked", "moderation refused 2 of your videos")
    assert len(world.fake.file_downloads) == downloads
    # Only this member: the others still start videos.
    await accepted(world, await world.video(world.other))


async def test_a_moderator_unblocks_a_member_the_strikes_blocked(world):
    await struck_out(world)
    assert (await world.bot.store.ledger.quota(world.guild.id, world.member.id)).blocked
    await quota_admin(world, "unblock", user=world.member)
    assert not (await world.bot.store.ledger.quota(world.guild.id, world.member.id)).blocked
    job, _message = await done_video(world)
    assert job.user_id == world.member.id
    # A fresh count after the unblock: one more refusal does not block again.
    await moderated_video(world)
    assert not (await world.bot.store.ledger.quota(world.guild.id, world.member.id)).blocked


async def refused_by_moderation_at(world: Any, route: str, err_code: int) -> Any:
    """A video PixVerse's moderation refuses at once, when ``route`` is called."""
    world.bot.simulator.inject_fault(route, "err_code", err_code=err_code)
    job = await world.job_final((await accepted(world, await world.video())).id)
    assert job.state is JobState.FAILED and "moderation refused" in job.error, job.error
    return job


async def test_moderation_refusals_at_submit_and_upload_are_strikes_too(world):
    """PixVerse's moderation may refuse a request at once (500054 at submit, 500052 at
    upload) rather than as a result in status 7: the account counts them all the same."""
    log = world.fake.add_channel(world.guild, "mod-log")
    bot = await world.start_bot(moderation_strikes=2)
    await mod(world, "log-channel", channel=log)
    balance = bot.simulator.balance

    first = await refused_by_moderation_at(world, "img_generate", 500054)
    entry = await log_entry(world, log, first.id)
    assert "Moderation strikes: 1 of 2 today" in embed_text(entry)
    assert "blocked" not in embed_text(entry)
    assert not (await bot.store.ledger.quota(world.guild.id, world.member.id)).blocked

    second = await refused_by_moderation_at(world, "image_upload", 500052)
    entry = await log_entry(world, log, second.id)
    assert f"<@{world.member.id}> is now blocked" in entry.content, embed_text(entry)
    assert "Moderation strikes: 2 of 2 today: member blocked" in embed_text(entry)
    assert not entry.current.pings_anyone

    view = await bot.store.ledger.quota(world.guild.id, world.member.id)
    assert view.blocked and "moderation refused 2 of your videos today" in view.block_reason
    assert (view.used_today, view.reserved) == (0, 0)  # nothing charged
    for job in (first, second):
        assert await ledger_state(bot.store, job.id) == "released"
    assert bot.simulator.balance == balance and not bot.simulator.jobs
    await refused(await world.video(), "blocked", "moderation refused 2 of your videos")
    await accepted(world, await world.video(world.other))  # only this member


# -- the wait between a member's jobs --------------------------------------------------------


async def test_a_command_within_the_wait_is_refused_before_any_work(world):
    await world.start_bot(command_cooldown_seconds=30)
    await accepted(world, await world.video())
    downloads = len(world.fake.file_downloads)

    text = await refused(await world.video(), "Slow down", "Nothing was charged")
    wait = int(re.search(r"wait (\d+) s", text).group(1))
    assert 28 <= wait <= 30, text
    assert len(world.fake.file_downloads) == downloads
    assert await world.bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 1
    # Another member has their own wait.
    await accepted(world, await world.video(world.other))


async def test_the_result_buttons_within_the_wait_are_refused(world):
    await world.start_bot(command_cooldown_seconds=30)
    source, message = await done_video(world)
    await world.until(lambda: message.files)
    theirs = await accepted(world, await world.video(world.other))

    click = await world.fake.click(message, f"pixbot:reroll:{source.id}", user=world.other)
    await refused(click, "Slow down")
    click = await world.fake.click(message, f"pixbot:extend:{source.id}", user=world.other)
    await refused(click, "Slow down")
    assert click.modal is None  # refused at the click, before the member types a prompt

    assert await world.bot.store.jobs.count_for_user(world.guild.id, world.other.id) == 1
    await world.job_final(theirs.id)
    assert generate_requests(world) == 2  # the source and the other member's /video only


async def test_a_refusal_does_not_restart_the_wait(world):
    await world.start_bot(command_cooldown_seconds=3)
    first = await accepted(world, await world.video())
    started = first.created_at.timestamp()

    await asyncio.sleep(max(0.0, started + 1.0 - time.time()))
    await refused(await world.video(), "Slow down")
    # 3.3 s after the accepted job, 2.3 s after the refusal: a wait the refusal restarted
    # would refuse this one until 4 s.
    await asyncio.sleep(max(0.0, started + 3.3 - time.time()))
    second = await accepted(world, await world.video())
    assert second.id != first.id
