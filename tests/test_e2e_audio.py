"""Sound, end to end through the fake Discord and the simulator: the `audio` option of /video
and /extend, and the Sound button on a result without sound."""

from __future__ import annotations

from conftest import status_text
from fakediscord.models import walk_components

from bot.jobs import mp4
from bot.pixverse.models import SOUND_DESCRIPTION_FIELD
from bot.simulator import SimulatorConfig
from bot.store.models import JobKind, JobState

SOUND = "sound_effect_generate"


async def quota(world, user):
    return await world.bot.store.ledger.quota(world.guild.id, user.id)


async def finished_video(world, user=None, **options):
    """A done /video job of `user` (default: world.member) and its status message, once the
    video is attached."""
    handle = await world.video(user, **options)
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral, response
    job = await world.job_final((await world.latest_job(handle.user)).id)
    assert job.state is JobState.DONE, job.error
    message = handle.original
    await world.until(lambda: message.files)
    return job, message


async def new_job_of(world, user, handle, exclude: int):
    """The job a button press or form created for `user`, once final, and its message."""
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral, response
    job = await world.latest_job(user)
    assert job.id != exclude
    job = await world.job_final(job.id)
    message = handle.original
    await world.until(lambda: message.files)
    return job, message


def requests(bot, route: str):
    return [r for r in bot.simulator.requests if r.route == route]


def tracks(message) -> list[mp4.Track]:
    [data] = message.files.values()
    assert mp4.problem(data) is None
    return mp4.tracks(data)


def sound_button(job) -> str:
    return f"pixbot:sound:{job.id}"


def text_input_id(modal: dict) -> str:
    [text_input] = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
    return text_input["custom_id"]


async def press_sound(world, message, source, user, description: str | None):
    """Press Sound on `message` as `user` and submit the form (None: leave it untouched)."""
    click = await world.fake.click(message, sound_button(source), user=user)
    modal = await click.wait_modal(timeout=5)
    assert modal["custom_id"] == f"pixbot:sound-modal:{source.id}"
    values = {} if description is None else {text_input_id(modal): description}
    return await world.fake.submit_modal(
        modal["custom_id"], values, user=user, channel=world.channel
    )


# --- the audio option ---------------------------------------------------------------------


async def test_audio_on_v6_is_native_audio_priced_with_its_audio_price(world):
    bot = await world.start_bot()
    job, message = await finished_video(world, model="v6", quality="540p", duration=4, audio=True)

    [request] = bot.simulator.generate_requests
    assert request.json["generate_audio_switch"] is True
    assert "sound_effect_switch" not in request.json
    # v6 540p: 7 a second, and 2 a second for its audio (the shipped catalogue).
    assert job.cost == 4 * 7 + 4 * 2
    assert (await quota(world, world.member)).used_today == 36
    assert job.params.audio and job.has_audio is True
    assert "Audio: on" in status_text(message)
    assert "Credits spent: 36" in status_text(message)
    assert [(t.handler, t.codec) for t in tracks(message)] == [("vide", "avc1"), ("soun", "mp4a")]
    assert sound_button(job) not in message.custom_ids()
    assert f"pixbot:reroll:{job.id}" in message.custom_ids()


async def test_audio_on_v4_5_is_the_sound_effect_at_10_per_started_5_s(world):
    bot = await world.start_bot()
    job, message = await finished_video(world, model="v4.5", duration=8, audio=True)

    [request] = bot.simulator.generate_requests
    assert request.json["sound_effect_switch"] is True
    assert "generate_audio_switch" not in request.json
    assert job.cost == 90 + 20  # 8 s: two started blocks of 5 s
    assert (await quota(world, world.member)).used_today == 110
    assert job.has_audio is True
    assert "soun" in [t.handler for t in tracks(message)]
    assert sound_button(job) not in message.custom_ids()


async def test_the_status_message_shows_the_reserved_price_with_audio(world):
    # Generating for longer than the test looks.
    await world.start_bot(simulator=SimulatorConfig(gen_time=60, seed=7))
    handle = await world.video(model="v4.5", audio=True)
    await handle.response(timeout=5)
    text = status_text(handle.original)
    assert "Cost: 55 credits (reserved)" in text and "Audio: on" in text
    assert (await quota(world, world.member)).reserved == 55


async def test_without_audio_no_switch_is_sent_and_the_file_has_no_sound(world):
    bot = await world.start_bot()
    job, message = await finished_video(world)

    [request] = bot.simulator.generate_requests
    assert "generate_audio_switch" not in request.json
    assert "sound_effect_switch" not in request.json
    assert job.has_audio is False and job.cost == 45
    assert [t.handler for t in tracks(message)] == ["vide"]
    assert sound_button(job) in message.custom_ids()


async def test_reroll_keeps_the_audio(world):
    bot = await world.start_bot()
    source, message = await finished_video(world, audio=True)

    click = await world.fake.click(message, f"pixbot:reroll:{source.id}", user=world.other)
    job, _ = await new_job_of(world, world.other, click, exclude=source.id)
    assert job.params.audio and job.cost == 55
    first, second = bot.simulator.generate_requests
    assert first.json["sound_effect_switch"] is second.json["sound_effect_switch"] is True


async def test_the_extend_button_keeps_the_sources_audio(world):
    bot = await world.start_bot()
    source, message = await finished_video(world, audio=True)

    click = await world.fake.click(message, f"pixbot:extend:{source.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    submit = await world.fake.submit_modal(
        modal["custom_id"], {text_input_id(modal): "it starts to rain"}, user=world.other
    )
    job, status = await new_job_of(world, world.other, submit, exclude=source.id)
    assert job.kind == JobKind.EXTEND and job.params.audio
    [extend] = requests(bot, "extend_generate")
    assert extend.json["sound_effect_switch"] is True
    assert (await quota(world, world.other)).used_today == 55
    assert "soun" in [t.handler for t in tracks(status)]


async def test_extend_job_follows_the_sources_audio_unless_told(world):
    bot = await world.start_bot(daily_credits=300)
    source, _ = await finished_video(world, audio=True)

    inherited = await world.fake.invoke(
        "extend",
        user=world.member,
        channel=world.channel,
        options={"job": source.id, "prompt": "the camera pulls back"},
    )
    first, _ = await new_job_of(world, world.member, inherited, exclude=source.id)
    told = await world.fake.invoke(
        "extend",
        user=world.member,
        channel=world.channel,
        options={"job": source.id, "prompt": "and then silence", "audio": False},
    )
    second, _ = await new_job_of(world, world.member, told, exclude=first.id)

    assert first.params.audio and first.cost == 55
    assert not second.params.audio and second.cost == 45
    with_sound, silent = requests(bot, "extend_generate")
    assert with_sound.json["sound_effect_switch"] is True
    assert "sound_effect_switch" not in silent.json


# --- the Sound button -----------------------------------------------------------------------


async def test_sound_button_adds_sound_as_a_new_job_charged_to_whoever_presses(world):
    bot = await world.start_bot()
    source, message = await finished_video(world, duration=8)

    submit = await press_sound(world, message, source, world.other, "rain on a tin roof")
    job, status = await new_job_of(world, world.other, submit, exclude=source.id)

    assert job.state is JobState.DONE, job.error
    assert job.kind == JobKind.SOUND and job.parent_job_id == source.id
    assert job.user_id == world.other.id and job.has_audio is True
    assert status is not message and status.channel is world.channel and not status.ephemeral
    text = status_text(status)
    assert f"<@{world.other.id}>'s sound" in text and f"#{source.id}" in text
    assert "rain on a tin roof" in text
    [request] = requests(bot, SOUND)
    assert request.json["source_video_id"] == source.pixverse_video_id
    assert request.json[SOUND_DESCRIPTION_FIELD] == "rain on a tin roof"
    # 8 s: two started blocks of 5 s, 10 credits each; the source's owner pays nothing more.
    assert job.cost == 20
    assert (await quota(world, world.other)).used_today == 20
    assert (await quota(world, world.member)).used_today == 90
    assert [(t.handler, t.codec) for t in tracks(status)] == [("vide", "avc1"), ("soun", "mp4a")]
    # The result has sound now: no Sound button under it, the others are there.
    assert sound_button(job) not in status.custom_ids()
    assert f"pixbot:reroll:{job.id}" in status.custom_ids()


async def test_sound_with_an_empty_description_lets_pixverse_choose(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)

    submit = await press_sound(world, message, source, world.member, None)
    job, status = await new_job_of(world, world.member, submit, exclude=source.id)

    assert job.state is JobState.DONE and job.kind == JobKind.SOUND
    [request] = requests(bot, SOUND)
    assert request.json[SOUND_DESCRIPTION_FIELD] == ""
    assert request.json["source_video_id"] == source.pixverse_video_id
    assert "PixVerse picks the sound" in status_text(status)
    assert job.cost == 10
    assert (await quota(world, world.member)).used_today == 45 + 10


async def test_sound_button_keeps_working_after_a_restart(world, pixverse):
    await world.start_bot(pixverse=pixverse)
    source, message = await finished_video(world)
    await world.stop_bot()

    await world.start_bot(pixverse=pixverse)
    submit = await press_sound(world, message, source, world.other, "birdsong")
    job, _ = await new_job_of(world, world.other, submit, exclude=source.id)
    assert job.state is JobState.DONE and job.kind == JobKind.SOUND, job.error
    [request] = [r for r in pixverse.generate_requests if r.route == SOUND]
    assert request.json["source_video_id"] == source.pixverse_video_id


async def test_sound_pressed_without_credits_is_refused_and_nothing_is_charged(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)
    await bot.store.admin.set_daily(world.guild.id, world.admin.id, world.other.id, 5)

    click = await world.fake.click(message, sound_button(source), user=world.other)
    response = await click.response(timeout=5)
    assert response.ephemeral and "credit" in response.content.lower()
    assert click.modal is None
    left = await quota(world, world.other)
    assert (left.used_today, left.reserved) == (0, 0)
    assert await bot.store.jobs.count_for_user(world.guild.id, world.other.id) == 0
    assert requests(bot, SOUND) == []
    assert [m for m in world.fake.messages_in(world.channel) if not m.ephemeral] == [message]


async def test_sound_on_a_result_that_has_sound_is_refused(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)
    # A Sound button left on a result that has sound by now (e.g. from an older message).
    await bot.store.db.write(
        lambda conn: (
            conn.execute("UPDATE jobs SET has_audio = 1 WHERE id = ?", (source.id,)).rowcount
        )
    )

    click = await world.fake.click(message, sound_button(source), user=world.other)
    response = await click.response(timeout=5)
    assert response.ephemeral and "already has sound" in response.content
    assert click.modal is None
    assert requests(bot, SOUND) == []


async def sound_result(world, description: str):
    """A /video of world.member, then its Sound (pressed by the same member) done: the
    source job, the Sound job and the Sound job's status message."""
    source, message = await finished_video(world)
    submit = await press_sound(world, message, source, world.member, description)
    sound, status = await new_job_of(world, world.member, submit, exclude=source.id)
    return source, sound, status


async def test_reroll_of_a_sound_result_adds_sound_to_the_same_video_again(world):
    bot = await world.start_bot(daily_credits=500)
    source, sound, status = await sound_result(world, "rain")

    click = await world.fake.click(status, f"pixbot:reroll:{sound.id}", user=world.other)
    again, again_message = await new_job_of(world, world.other, click, exclude=sound.id)

    assert again.state is JobState.DONE and again.kind == JobKind.REROLL, again.error
    first, second = requests(bot, SOUND)
    assert second.json["source_video_id"] == first.json["source_video_id"]
    assert second.json["source_video_id"] == source.pixverse_video_id
    assert second.json[SOUND_DESCRIPTION_FIELD] == "rain"
    assert again.cost == 10 and (await quota(world, world.other)).used_today == 10
    assert "soun" in [t.handler for t in tracks(again_message)]


async def test_extend_of_a_sound_result_continues_the_video_with_sound(world):
    bot = await world.start_bot(daily_credits=500)
    _, sound, status = await sound_result(world, "rain")

    click = await world.fake.click(status, f"pixbot:extend:{sound.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    form = await world.fake.submit_modal(
        modal["custom_id"], {text_input_id(modal): "it keeps raining"}, user=world.other
    )
    extension, _ = await new_job_of(world, world.other, form, exclude=sound.id)

    assert extension.state is JobState.DONE and extension.kind == JobKind.EXTEND, extension.error
    [request] = requests(bot, "extend_generate")
    assert request.json["source_video_id"] == sound.pixverse_video_id
    assert request.json["prompt"] == "it keeps raining"
    assert (await quota(world, world.other)).used_today == extension.cost > 0


async def test_a_sound_job_generating_at_a_restart_finishes_without_a_second_request(
    world, pixverse
):
    pixverse.config.gen_time = 0.3
    await world.start_bot(pixverse=pixverse)
    source, message = await finished_video(world)
    pixverse.config.gen_time = 3.0
    submit = await press_sound(world, message, source, world.other, "birds")
    assert not (await submit.response(timeout=5)).ephemeral
    job = await world.latest_job(world.other)
    await world.until(lambda: any(r.route == SOUND for r in pixverse.generate_requests))
    await world.stop_bot()

    pixverse.config.gen_time = 0.3
    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE and job.kind == JobKind.SOUND, job.error
    assert len([r for r in pixverse.generate_requests if r.route == SOUND]) == 1
    assert (await quota(world, world.other)).used_today == 10
    assert "Done" in status_text(submit.original)
