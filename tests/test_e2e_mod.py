"""/mod end to end: the real discord.py client, the fake Discord, the embedded simulator.

Every change by a moderator is answered ephemerally, pings nobody and writes an audit row;
a member without Manage Server changes nothing.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import Any

import pytest
from conftest import FAST_RUNNER, png_bytes, status_text
from fakediscord import permissions
from fakediscord.models import walk_components

from bot.simulator import SimulatorConfig
from bot.store.models import JobState

ONE_SLOT = replace(FAST_RUNNER, max_active=1)
SLOW = SimulatorConfig(gen_time=60, seed=7)
PIXVERSE_WORK = {"image_upload", "media_upload", "img_generate", "text_generate", "extend_generate"}


# -- helpers -----------------------------------------------------------------------------------


def reply_text(response: Any) -> str:
    data = response.data or {}
    parts = [data.get("content") or ""]
    for embed in data.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


def assert_quiet(handle: Any, response: Any) -> None:
    """In time, ephemeral, and pings nobody whatever the text mentions."""
    assert response.accepted, response
    assert response.delay < 3
    assert response.ephemeral, reply_text(response)
    assert (response.data or {}).get("allowed_mentions", {}).get("parse") == []
    for message in handle.messages:
        assert not message.current.pings_anyone


async def run(world: Any, command: str, user: Any, **options: Any) -> Any:
    """Invoke in the world's channel; `options` are the command's (e.g. its `channel`)."""
    handle = await world.fake.invoke(command, user=user, channel=world.channel, options=options)
    response = await handle.response(timeout=5)
    assert_quiet(handle, response)
    return response


async def mod(world: Any, sub: str, **options: Any) -> str:
    """Run `/mod <sub>` as the moderator; the ephemeral reply's text."""
    return reply_text(await run(world, f"mod {sub}", world.admin, **options))


async def audit_rows(world: Any) -> list[Any]:
    return await world.bot.store.admin.audit(world.guild.id, limit=50)


async def quota(world: Any, user: Any = None) -> Any:
    user = user or world.member
    return await world.bot.store.ledger.quota(world.guild.id, user.id)


def pixverse_work(world: Any) -> list[Any]:
    return [r for r in world.bot.simulator.requests if r.route in PIXVERSE_WORK]


def result_polls(world: Any, video_id: int) -> int:
    """How often the bot asked PixVerse for this video's result."""
    return len(
        [
            r
            for r in world.bot.simulator.requests
            if r.route == "result" and r.path.rstrip("/").endswith(f"/{video_id}")
        ]
    )


async def job_of(world: Any, handle: Any) -> Any:
    await handle.wait_original(timeout=5)
    match = re.search(r"job #(\d+)", handle.original.content)
    assert match, handle.original.content
    job = await world.bot.store.jobs.get(int(match.group(1)))
    assert job is not None
    return job


async def video_in(world: Any, channel: Any, user: Any = None, **options: Any) -> Any:
    options.setdefault("prompt", "a cat turns its head")
    return await world.fake.invoke(
        "video",
        user=user or world.member,
        channel=channel,
        options=options,
        attachments={"image": ("cat.png", png_bytes(), "image/png")},
    )


async def finished_video(world: Any, user: Any = None, **options: Any) -> tuple[Any, Any]:
    """A done /video job and its status message (with the video attached)."""
    handle = await world.video(user, **options)
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.job_final((await job_of(world, handle)).id)
    assert job.state is JobState.DONE, job.error
    message = handle.original
    await world.until(lambda: message.files)
    return job, message


async def refused(world: Any, handle: Any, *expected: str) -> str:
    response = await handle.response(timeout=5)
    assert_quiet(handle, response)
    text = reply_text(response)
    for part in expected:
        assert part in text, text
    return text


async def assert_nothing_charged(world: Any, user: Any = None, *, jobs: int = 0) -> None:
    user = user or world.member
    assert await world.bot.store.jobs.count_for_user(world.guild.id, user.id) == jobs
    view = await quota(world, user)
    assert view.reserved == 0


async def busy_world(world: Any) -> tuple[Any, Any]:
    """One PixVerse slot: the member's first job generates (for a minute), the second waits."""
    await world.start_bot(runner=ONE_SLOT, simulator=SLOW)
    first = await world.video(prompt="first: a lighthouse in a storm")
    assert not (await first.response(timeout=5)).ephemeral
    await world.until(lambda: "Generating" in status_text(first.original))
    second = await world.video(prompt="second: a paper boat drifting")
    assert not (await second.response(timeout=5)).ephemeral
    await world.until(lambda: "Queued" in status_text(second.original))
    return first, second


def text_input_id(modal: dict[str, Any]) -> str:
    [text_input] = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
    return str(text_input["custom_id"])


async def extend_by_button(world: Any, message: Any, job_id: int, prompt: str) -> Any:
    click = await world.fake.click(message, f"pixbot:extend:{job_id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    return await world.fake.submit_modal(
        modal["custom_id"], {text_input_id(modal): prompt}, user=world.other, channel=world.channel
    )


async def extend_job(world: Any, job_id: int, prompt: str, user: Any = None) -> Any:
    return await world.fake.invoke(
        "extend",
        user=user or world.other,
        channel=world.channel,
        options={"prompt": prompt, "job": job_id},
    )


def forged_result(world: Any, job_id: int) -> Any:
    """A message carrying a result's buttons (e.g. one the bot posted again, or a copy)."""
    buttons = [
        {"type": 2, "style": 2, "label": label, "custom_id": f"pixbot:{action}:{job_id}"}
        for action, label in (("reroll", "Re-roll"), ("extend", "Extend"))
    ]
    return world.fake.create_channel_message(
        world.channel,
        {"content": "copy", "components": [{"type": 1, "components": buttons}]},
        [],
        route="test",
    )


# -- pause / resume ----------------------------------------------------------------------------


async def test_pause_refuses_a_members_video_with_the_reason_and_is_audited(world):
    await world.start_bot()
    text = await mod(world, "pause", reason="server maintenance")
    assert "paused" in text and "server maintenance" in text
    [row] = await audit_rows(world)
    assert (row.actor_id, row.action, row.reason) == (
        world.admin.id,
        "mod.pause",
        "server maintenance",
    )
    assert row.before["paused"] is False and row.after["paused"] is True

    await refused(world, await world.video(), "paused", "server maintenance")
    await assert_nothing_charged(world)
    assert pixverse_work(world) == []


async def test_pause_lets_a_running_job_finish(world):
    await world.start_bot(simulator=SimulatorConfig(gen_time=1.5, seed=7))
    handle = await world.video()
    assert not (await handle.response(timeout=5)).ephemeral
    await world.until(lambda: "Generating" in status_text(handle.original))
    await mod(world, "pause", reason="closing time")
    job = await world.job_final((await job_of(world, handle)).id)
    assert job.state is JobState.DONE
    await world.until(lambda: "Done" in status_text(handle.original))


async def test_resume_takes_new_videos_again_and_is_audited(world):
    await world.start_bot()
    await mod(world, "pause", reason="maintenance")
    text = await mod(world, "resume")
    assert "open" in text
    assert [r.action for r in await audit_rows(world)] == ["mod.resume", "mod.pause"]
    await finished_video(world)


async def test_resume_when_not_paused_changes_nothing(world):
    await world.start_bot()
    text = await mod(world, "resume")
    assert "open" in text and "nothing changed" in text
    assert await audit_rows(world) == []


async def test_paused_server_refuses_the_result_buttons_and_extend(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)
    await mod(world, "pause", reason="cooling down")

    click = await world.fake.click(message, f"pixbot:reroll:{source.id}", user=world.other)
    await refused(world, click, "paused", "cooling down")
    await refused(world, await extend_job(world, source.id, "and then"), "paused", "cooling down")
    # The Extend button refuses at the click, before the member types a prompt.
    click = await world.fake.click(message, f"pixbot:extend:{source.id}", user=world.other)
    await refused(world, click, "paused", "cooling down")
    assert click.modal is None

    await assert_nothing_charged(world, world.other)
    assert len(bot.simulator.generate_requests) == 1


# -- cancel ------------------------------------------------------------------------------------


async def test_mod_cancel_of_a_queued_job_releases_its_credits_and_shows_why(world):
    _first, second = await busy_world(world)
    queued = await job_of(world, second)
    assert (await quota(world)).reserved == 90

    text = await mod(world, "cancel", job=queued.id, reason="off-topic")
    assert f"Cancelled job #{queued.id}" in text and "45 credits" in text
    assert (await world.bot.store.jobs.get(queued.id)).state is JobState.CANCELLED
    assert (await quota(world)).reserved == 45
    await world.until(lambda: "Cancelled" in status_text(second.original))
    shown = status_text(second.original)
    assert "by a moderator" in shown and "off-topic" in shown and "45 credits returned" in shown
    [row] = await audit_rows(world)
    assert (row.action, row.actor_id, row.target_id, row.reason) == (
        "mod.cancel",
        world.admin.id,
        world.member.id,
        "off-topic",
    )
    assert row.after == {"job_id": queued.id, "state": "cancelled", "released": 45}
    assert len(world.bot.simulator.generate_requests) == 1


async def test_mod_cancel_of_a_generating_job_stops_polling_and_releases_credits(world):
    first, _second = await busy_world(world)
    generating = await job_of(world, first)
    assert generating.state is JobState.GENERATING

    text = await mod(world, "cancel", job=generating.id, reason="not allowed here")
    assert f"Cancelled job #{generating.id}" in text and "generating" in text
    job = await world.bot.store.jobs.get(generating.id)
    assert job.state is JobState.CANCELLED
    await world.until(lambda: "Cancelled" in status_text(first.original))
    assert "not allowed here" in status_text(first.original)
    assert "45 credits returned" in status_text(first.original)
    assert (await audit_rows(world))[0].before == {"job_id": generating.id, "state": "generating"}

    video_id = generating.pixverse_video_id
    assert video_id is not None and result_polls(world, video_id) > 0
    await asyncio.sleep(0.2)  # a poll that was already on its way may still land
    polls = result_polls(world, video_id)
    await asyncio.sleep(0.8)  # several poll intervals of the fast runner
    assert result_polls(world, video_id) == polls
    # The freed slot goes to the queued job; only the cancelled job's credits came back.
    await world.until(lambda: len(world.bot.simulator.generate_requests) == 2)
    view = await quota(world)
    assert (view.used_today, view.reserved) == (0, 45)


async def test_mod_cancel_of_a_job_uploading_to_pixverse_stops_it_before_submit(world):
    bot = await world.start_bot()
    bot.simulator.inject_fault("image_upload", "hang", seconds=1.5)
    handle = await world.video()
    assert not (await handle.response(timeout=5)).ephemeral
    await world.until(lambda: "Uploading" in status_text(handle.original))
    job = await job_of(world, handle)

    text = await mod(world, "cancel", job=job.id)
    assert f"Cancelled job #{job.id}" in text and "uploading" in text
    await world.until(lambda: "Cancelled" in status_text(handle.original))
    assert (await world.bot.store.jobs.get(job.id)).state is JobState.CANCELLED
    assert (await quota(world)).reserved == 0
    await asyncio.sleep(2.0)  # past the upload's hang: the bot must not go on to submit
    assert bot.simulator.generate_requests == []
    assert (await world.bot.store.jobs.get(job.id)).state is JobState.CANCELLED
    assert "Cancelled" in status_text(handle.original)


async def test_mod_cancel_of_a_finished_job_is_refused(world):
    await world.start_bot()
    job, _ = await finished_video(world)
    text = await mod(world, "cancel", job=job.id)
    assert "already ended" in text and "/mod remove" in text
    assert await audit_rows(world) == []
    assert (await quota(world)).used_today == 45


async def test_mod_cancel_of_an_unknown_job_is_refused(world):
    await world.start_bot()
    assert "no job #999" in await mod(world, "cancel", job=999)


async def test_mod_cancel_autocomplete_offers_the_servers_unfinished_jobs(world):
    first, second = await busy_world(world)
    choices = await world.fake.autocomplete(
        "mod cancel", focused="job", user=world.admin, channel=world.channel
    )
    ids = [choice["value"] for choice in choices]
    assert ids == [(await job_of(world, second)).id, (await job_of(world, first)).id]
    assert "paper boat" in choices[0]["name"] and "queued" in choices[0]["name"]
    refused_member = await world.fake.autocomplete(
        "mod cancel", focused="job", user=world.member, channel=world.channel
    )
    assert refused_member == []


# -- remove ------------------------------------------------------------------------------------


async def test_mod_remove_deletes_the_result_and_refunds_its_credits(world):
    await world.start_bot()
    job, message = await finished_video(world)
    assert (await quota(world)).used_today == 45

    text = await mod(world, "remove", job=job.id, reason="breaks rule 3")
    assert f"job #{job.id}" in text and "refunded 45 credits" in text
    await world.until(lambda: message.deleted)
    assert (await quota(world)).used_today == 0
    [row] = await audit_rows(world)
    assert (row.action, row.actor_id, row.target_id, row.reason) == (
        "job.remove",
        world.admin.id,
        world.member.id,
        "breaks rule 3",
    )
    assert row.after["refunded"] == 45


async def test_a_removed_results_buttons_and_extend_refuse(world):
    bot = await world.start_bot()
    job, _ = await finished_video(world)
    await mod(world, "remove", job=job.id)
    copy = forged_result(world, job.id)
    for custom_id in (f"pixbot:reroll:{job.id}", f"pixbot:extend:{job.id}"):
        click = await world.fake.click(copy, custom_id, user=world.other)
        await refused(world, click, "removed")
        assert click.modal is None
    await refused(world, await extend_job(world, job.id, "and then"), "removed")
    await assert_nothing_charged(world, world.other)
    assert len(bot.simulator.generate_requests) == 1


async def test_mod_remove_when_the_message_is_already_gone_still_refunds(world):
    await world.start_bot()
    job, message = await finished_video(world)
    world.fake.delete_message(world.channel, message)
    text = await mod(world, "remove", job=job.id)
    assert "refunded 45 credits" in text and "could not be deleted" not in text
    assert (await quota(world)).used_today == 0


async def test_mod_remove_twice_is_refused_the_second_time(world):
    await world.start_bot()
    job, _ = await finished_video(world)
    await mod(world, "remove", job=job.id)
    assert "already removed" in await mod(world, "remove", job=job.id)
    assert len(await audit_rows(world)) == 1
    assert (await quota(world)).used_today == 0


async def test_mod_remove_of_an_unfinished_job_is_refused(world):
    first, _ = await busy_world(world)
    job = await job_of(world, first)
    text = await mod(world, "remove", job=job.id)
    assert "not a finished result" in text and "/mod cancel" in text
    assert (await world.bot.store.jobs.get(job.id)).state is JobState.GENERATING
    assert not first.original.deleted


async def test_mod_remove_autocomplete_offers_the_servers_finished_results(world):
    await world.start_bot()
    mine, _ = await finished_video(world, prompt="an owl blinks")
    theirs, _ = await finished_video(world, world.other, prompt="a fox runs")
    choices = await world.fake.autocomplete(
        "mod remove", focused="job", user=world.admin, channel=world.channel
    )
    assert [c["value"] for c in choices] == [theirs.id, mine.id]
    owl = await world.fake.autocomplete(
        "mod remove", focused="job", user=world.admin, channel=world.channel, options={"job": "owl"}
    )
    assert [c["value"] for c in owl] == [mine.id]


# -- channels ----------------------------------------------------------------------------------


async def test_channels_allow_limits_videos_to_the_listed_channels(world):
    videos = world.fake.add_channel(world.guild, "videos")
    await world.start_bot()
    text = await mod(world, "channels allow", channel=videos)
    assert f"<#{videos.id}>" in text and "only in" in text
    [row] = await audit_rows(world)
    assert (row.action, row.after) == (
        "mod.channel_allow",
        {"channel_id": videos.id, "allowed": True},
    )

    await refused(world, await world.video(), f"<#{videos.id}>")
    await assert_nothing_charged(world)
    assert pixverse_work(world) == []

    handle = await video_in(world, videos)
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.job_final((await job_of(world, handle)).id)
    assert job.state is JobState.DONE and job.channel_id == videos.id


async def test_channels_allow_also_covers_the_result_buttons(world):
    videos = world.fake.add_channel(world.guild, "videos")
    await world.start_bot()
    source, message = await finished_video(world)
    await mod(world, "channels allow", channel=videos)
    click = await world.fake.click(message, f"pixbot:reroll:{source.id}", user=world.other)
    await refused(world, click, f"<#{videos.id}>")
    await assert_nothing_charged(world, world.other)


async def test_channels_deny_takes_a_channel_off_and_an_empty_list_allows_everywhere(world):
    videos = world.fake.add_channel(world.guild, "videos")
    await world.start_bot()
    await mod(world, "channels allow", channel=videos)
    text = await mod(world, "channels deny", channel=videos)
    assert "every channel" in text
    newest = (await audit_rows(world))[0]
    assert (newest.action, newest.after) == (
        "mod.channel_deny",
        {"channel_id": videos.id, "allowed": False},
    )
    await finished_video(world)


async def test_channels_deny_of_an_unlisted_channel_changes_nothing(world):
    await world.start_bot()
    text = await mod(world, "channels deny", channel=world.channel)
    assert "nothing changed" in text
    assert await audit_rows(world) == []


async def test_channels_list_shows_the_allowed_channels(world):
    videos = world.fake.add_channel(world.guild, "videos")
    clips = world.fake.add_channel(world.guild, "clips")
    await world.start_bot()
    assert "every channel" in await mod(world, "channels list")
    await mod(world, "channels allow", channel=videos)
    await mod(world, "channels allow", channel=clips)
    text = await mod(world, "channels list")
    assert f"<#{videos.id}>, <#{clips.id}>" in text
    assert len(await audit_rows(world)) == 2


# -- filter ------------------------------------------------------------------------------------


async def test_filter_add_refuses_prompts_with_the_word_and_is_audited(world):
    await world.start_bot()
    text = await mod(world, "filter add", word="Gore")
    assert "gore" in text.lower() and "refused" in text
    [row] = await audit_rows(world)
    assert (row.action, row.after) == ("mod.filter_add", {"phrase": "gore", "filtered": True})

    await refused(world, await world.video(prompt="lots of GORE here"), "“gore”", "rephrase")
    await assert_nothing_charged(world)
    assert pixverse_work(world) == []
    # Whole words only: a word that merely contains it is fine.
    await finished_video(world, prompt="a gorgeous sunset")


async def test_filter_covers_extend_and_the_extend_form(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)
    await mod(world, "filter add", word="blood bath")
    await refused(world, await extend_job(world, source.id, "then a Blood  Bath"), "“blood bath”")
    submit = await extend_by_button(world, message, source.id, "a blood bath follows")
    await refused(world, submit, "“blood bath”", "rephrase")
    await assert_nothing_charged(world, world.other)
    assert len(bot.simulator.generate_requests) == 1


async def test_filter_remove_allows_the_word_again(world):
    await world.start_bot()
    await mod(world, "filter add", word="gore")
    text = await mod(world, "filter remove", word="GORE")
    assert "allowed again" in text and "No words" in text
    assert [r.action for r in await audit_rows(world)] == ["mod.filter_remove", "mod.filter_add"]
    await finished_video(world, prompt="a gore free cartoon")


async def test_filter_list_shows_the_filtered_words(world):
    await world.start_bot()
    assert "No words" in await mod(world, "filter list")
    await mod(world, "filter add", word="gore")
    await mod(world, "filter add", word="blood bath")
    text = await mod(world, "filter list")
    assert "(2)" in text and "`blood bath`" in text and "`gore`" in text


# -- log channel -------------------------------------------------------------------------------


async def log_entry(world: Any, log: Any, job_id: int) -> Any:
    return await world.fake.wait_for_message(
        log, lambda m: any(f"Job #{job_id}" in e.get("title", "") for e in m.embeds), timeout=10
    )


def embed_text(message: Any) -> str:
    parts = []
    for embed in message.embeds:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


async def logged_world(world: Any) -> tuple[Any, Any, Any, Any]:
    """A moderation log channel, and one finished job of the member posted there."""
    log = world.fake.add_channel(world.guild, "mod-log")
    await world.start_bot()
    await mod(world, "log-channel", channel=log)
    job, message = await finished_video(world, prompt="a heron fishing at dawn")
    entry = await log_entry(world, log, job.id)
    return log, job, message, entry


async def test_log_channel_gets_each_finished_job_with_the_buttons(world):
    log, job, message, entry = await logged_world(world)
    [row] = await audit_rows(world)
    assert (row.action, row.after) == ("mod.log_channel", {"log_channel_id": log.id})
    text = embed_text(entry)
    assert f"<@{world.member.id}>" in text and "a heron fishing at dawn" in text
    assert job.result_url in text
    assert f"/{world.channel.id}/{message.id}" in text
    assert entry.custom_ids() == [f"pixbot:mod-remove:{job.id}", f"pixbot:mod-block:{job.id}"]
    assert not entry.current.pings_anyone


async def test_log_channel_gets_failed_jobs_without_a_remove_button(world):
    log = world.fake.add_channel(world.guild, "mod-log")
    bot = await world.start_bot()
    await mod(world, "log-channel", channel=log)
    bot.simulator.inject_fault("img_generate", "err_code", err_code=500071)
    handle = await world.video(effect="Kiss kiss")
    await handle.response(timeout=5)
    job = await world.job_final((await job_of(world, handle)).id)
    assert job.state is JobState.FAILED
    entry = await log_entry(world, log, job.id)
    assert "Failed" in embed_text(entry)
    assert entry.custom_ids() == [f"pixbot:mod-block:{job.id}"]


async def test_log_channel_where_the_bot_cannot_post_is_refused(world):
    log = world.fake.add_channel(world.guild, "mod-log")
    world.fake.set_bot_permissions(log, permissions.VIEW_CHANNEL | permissions.EMBED_LINKS)
    await world.start_bot()
    text = await mod(world, "log-channel", channel=log)
    assert "Send Messages" in text and "Nothing changed" in text
    assert await audit_rows(world) == []
    assert (await world.bot.store.admin.guild_settings(world.guild.id)).log_channel_id is None


async def test_log_channel_without_a_channel_turns_the_log_off(world):
    log = world.fake.add_channel(world.guild, "mod-log")
    await world.start_bot()
    await mod(world, "log-channel", channel=log)
    text = await mod(world, "log-channel")
    assert "off" in text
    assert (await audit_rows(world))[0].after == {"log_channel_id": None}
    await finished_video(world)
    await asyncio.sleep(0.3)
    assert world.fake.messages_in(log) == []


async def test_log_remove_button_by_a_moderator_removes_and_refunds(world):
    _log, job, message, entry = await logged_world(world)
    click = await world.fake.click(entry, f"pixbot:mod-remove:{job.id}", user=world.admin)
    response = await click.response(timeout=5)
    assert_quiet(click, response)
    assert "refunded 45 credits" in reply_text(response)
    await world.until(lambda: message.deleted)
    assert (await quota(world)).used_today == 0
    [row, _] = await audit_rows(world)
    assert (row.action, row.actor_id) == ("job.remove", world.admin.id)
    await world.until(lambda: "Removed by" in embed_text(entry))
    assert entry.custom_ids() == [f"pixbot:mod-block:{job.id}"]


@pytest.mark.parametrize("action", ["remove", "block"])
async def test_log_buttons_pressed_by_a_member_are_refused(world, action):
    _log, job, message, entry = await logged_world(world)
    click = await world.fake.click(entry, f"pixbot:mod-{action}:{job.id}", user=world.other)
    await refused(world, click, "Manage Server")
    assert not message.deleted
    assert (await quota(world)).used_today == 45
    assert not (await quota(world)).blocked
    assert len(await audit_rows(world)) == 1  # only setting the log channel


async def test_log_block_button_blocks_the_member(world):
    _log, job, _message, entry = await logged_world(world)
    click = await world.fake.click(entry, f"pixbot:mod-block:{job.id}", user=world.admin)
    response = await click.response(timeout=5)
    assert_quiet(click, response)
    assert f"<@{world.member.id}> is blocked" in reply_text(response)
    row = (await audit_rows(world))[0]
    assert (row.action, row.target_id, row.actor_id) == (
        "quota.block",
        world.member.id,
        world.admin.id,
    )
    await refused(world, await world.video(), "blocked")
    assert await world.bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 1


# -- /mod by a member without Manage Server ----------------------------------------------------

SUBCOMMANDS = {
    "pause": lambda w, job: {"reason": "no"},
    "resume": lambda w, job: {},
    "cancel": lambda w, job: {"job": job.id},
    "remove": lambda w, job: {"job": job.id},
    "channels allow": lambda w, job: {"channel": w.channel},
    "channels deny": lambda w, job: {"channel": w.channel},
    "channels list": lambda w, job: {},
    "log-channel": lambda w, job: {"channel": w.channel},
    "filter add": lambda w, job: {"word": "cat"},
    "filter remove": lambda w, job: {"word": "dog"},
    "filter list": lambda w, job: {},
}


@pytest.mark.parametrize("sub", list(SUBCOMMANDS))
async def test_mod_without_manage_server_is_refused_and_changes_nothing(world, sub):
    bot = await world.start_bot()
    await mod(world, "pause", reason="before")
    await mod(world, "resume")
    await mod(world, "channels allow", channel=world.channel)
    await mod(world, "filter add", word="dog")
    job, message = await finished_video(world)
    rows = len(await audit_rows(world))
    settings = await bot.store.admin.guild_settings(world.guild.id)
    rules = await bot.store.moderation.rules(world.guild.id)

    response = await run(world, f"mod {sub}", world.member, **SUBCOMMANDS[sub](world, job))
    assert "Manage Server" in reply_text(response)

    assert len(await audit_rows(world)) == rows
    assert await bot.store.admin.guild_settings(world.guild.id) == settings
    assert await bot.store.moderation.rules(world.guild.id) == rules
    assert (await bot.store.jobs.get(job.id)).removed_at is None
    assert not message.deleted
    assert (await quota(world)).used_today == 45


async def test_a_blocked_member_is_told_so_before_any_server_rule(world):
    # Issue 3: blocked members are refused before anything else, even in a paused server
    # or a channel that is not allowed.
    await world.start_bot()
    await world.bot.store.admin.block(world.guild.id, world.admin.id, world.member.id, "spamming")
    other = world.fake.add_channel(world.guild, "elsewhere")
    await mod(world, "channels allow", channel=other)
    await mod(world, "pause", reason="cooling down")
    text = await refused(world, await world.video(), "blocked", "spamming")
    assert "paused" not in text and "channel" not in text
    await assert_nothing_charged(world)
