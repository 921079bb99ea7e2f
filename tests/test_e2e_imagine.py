"""/imagine end to end: a video from text alone (PixVerse text-to-video), through the real
discord.py client, the fake Discord and the simulator. Its aspect ratio is checked against the
chosen model's own ratios in the catalogue; the status message, credits, buttons and recovery
after a restart are those of /video."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from conftest import FAST_RUNNER, status_text
from fakediscord.models import walk_components
from store_fixtures import ledger_state

from bot.store.models import JobKind, JobSource, JobState

PIXVERSE_WORK = {
    "image_upload",
    "media_upload",
    "img_generate",
    "text_generate",
    "transition_generate",
    "extend_generate",
}
# Jobs are accepted and shown but never started: the queue as a stopped runner leaves it.
PARKED = dataclasses.replace(FAST_RUNNER, max_active=0)


async def imagine(world: Any, user: Any = None, **options: Any) -> Any:
    options.setdefault("prompt", "a lighthouse at dusk, waves rolling in")
    return await world.fake.invoke(
        "imagine", user=user or world.member, channel=world.channel, options=options
    )


async def accepted(world: Any, handle: Any) -> Any:
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral, response
    assert response.delay < 3
    return await world.latest_job(handle.user)


async def finished(world: Any, handle: Any) -> Any:
    job = await world.job_final((await accepted(world, handle)).id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    return job


def work(pixverse: Any) -> list[Any]:
    return [r for r in pixverse.requests if r.route in PIXVERSE_WORK]


async def used(world: Any, user: Any) -> tuple[int, int]:
    quota = await world.bot.store.ledger.quota(world.guild.id, user.id)
    return quota.used_today, quota.reserved


def text_input_id(modal: dict) -> str:
    [text_input] = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
    return text_input["custom_id"]


# --- accepted ---------------------------------------------------------------------------------


async def test_imagine_sends_the_prompt_model_and_aspect_ratio_to_text_to_video(world):
    bot = await world.start_bot()
    handle = await imagine(world, aspect_ratio="9:16", model="v5", seed=99)
    job = await finished(world, handle)

    assert job.kind == JobKind.TEXT and job.params.source is JobSource.TEXT
    assert job.params.aspect_ratio == "9:16"
    # Nothing to upload: one text-to-video request, and nothing else did work at PixVerse.
    [request] = work(bot.simulator)
    assert request.route == "text_generate"
    assert request.json["prompt"] == "a lighthouse at dusk, waves rolling in"
    assert request.json["model"] == "v5"
    assert request.json["aspect_ratio"] == "9:16"
    assert (request.json["quality"], request.json["duration"], request.json["seed"]) == (
        "540p",
        5,
        99,
    )
    assert "img_id" not in request.json
    [video] = bot.simulator.jobs.values()
    assert video.height > video.width  # PixVerse made the portrait it was asked for

    message = handle.original
    text = status_text(message)
    assert "text video" in message.content and f"#{job.id}" in message.content
    assert "Aspect ratio: 9:16" in text and "Model: v5" in text and "Done" in text
    [data] = message.files.values()
    assert data[4:8] == b"ftyp"
    assert {f"pixbot:reroll:{job.id}", f"pixbot:extend:{job.id}"} <= set(message.custom_ids())
    assert await ledger_state(bot.store, job.id) == "committed"
    assert await used(world, world.member) == (45, 0)  # priced like any v5 540p 5 s video


async def test_imagine_without_an_aspect_ratio_makes_16_9(world):
    bot = await world.start_bot()
    handle = await imagine(world)
    job = await world.job_final((await accepted(world, handle)).id)
    assert job.state is JobState.DONE, job.error
    [request] = bot.simulator.generate_requests
    assert request.json["aspect_ratio"] == "16:9"
    assert request.json["model"] == "v4.5"  # the default model
    await world.until(lambda: "Aspect ratio: 16:9" in status_text(handle.original))


async def test_21_9_on_v4_5_is_refused_naming_the_models_that_make_it(world):
    bot = await world.start_bot()
    handle = await imagine(world, aspect_ratio="21:9", model="v4.5")
    response = await handle.response(timeout=5)
    assert response.accepted and response.ephemeral and response.delay < 3
    text = response.content or ""
    assert "v4.5" in text and "21:9" in text
    # It says what would do: the models whose catalogue entries have 21:9, and v4.5's own.
    assert "v6" in text and "c1" in text and "16:9" in text
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 0
    assert await used(world, world.member) == (0, 0)
    assert work(bot.simulator) == []
    assert not world.fake.messages_in(world.channel, include_ephemeral=False)


async def test_21_9_on_v6_is_accepted_and_priced_from_the_catalogue(world):
    bot = await world.start_bot()
    handle = await imagine(world, aspect_ratio="21:9", model="v6", quality="360p", duration=4)
    job = await finished(world, handle)
    [request] = bot.simulator.generate_requests
    assert (request.json["model"], request.json["aspect_ratio"]) == ("v6", "21:9")
    assert request.json["duration"] == 4
    [video] = bot.simulator.jobs.values()
    assert video.width / video.height > 2  # a wide 21:9 frame
    assert job.cost == 20  # v6 360p: 5 credits per second
    assert await used(world, world.member) == (20, 0)
    assert "Aspect ratio: 21:9" in status_text(handle.original)


# --- the buttons --------------------------------------------------------------------------------


async def test_reroll_of_a_text_video_repeats_its_prompt_and_ratio_with_a_new_seed(world):
    bot = await world.start_bot()
    handle = await imagine(world, aspect_ratio="1:1", seed=5)
    source = await finished(world, handle)

    click = await world.fake.click(handle.original, f"pixbot:reroll:{source.id}", user=world.other)
    job = await world.job_final((await accepted(world, click)).id)
    assert job.state is JobState.DONE, job.error
    assert job.kind == JobKind.REROLL and job.user_id == world.other.id
    assert job.params.source is JobSource.TEXT and job.params.aspect_ratio == "1:1"

    first, second = bot.simulator.generate_requests
    assert first.route == second.route == "text_generate"
    for name in ("prompt", "model", "quality", "duration", "aspect_ratio"):
        assert second.json[name] == first.json[name], name
    assert second.json["seed"] != first.json["seed"]
    assert await used(world, world.other) == (45, 0)
    assert await used(world, world.member) == (45, 0)


async def test_extend_of_a_text_video_continues_its_pixverse_video(world):
    bot = await world.start_bot()
    handle = await imagine(world, aspect_ratio="9:16")
    source = await finished(world, handle)

    click = await world.fake.click(handle.original, f"pixbot:extend:{source.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    submit = await world.fake.submit_modal(
        modal["custom_id"],
        {text_input_id(modal): "the lighthouse beam sweeps the sea"},
        user=world.other,
        channel=world.channel,
    )
    job = await world.job_final((await accepted(world, submit)).id)
    assert job.state is JobState.DONE, job.error
    assert job.kind == JobKind.EXTEND and job.parent_job_id == source.id

    [extend] = [r for r in bot.simulator.generate_requests if r.route == "extend_generate"]
    assert extend.json["source_video_id"] == source.pixverse_video_id
    assert extend.json["prompt"] == "the lighthouse beam sweeps the sea"
    assert "aspect_ratio" not in extend.json  # an extension follows its source
    assert "extension" in status_text(submit.original)


# --- restarts -----------------------------------------------------------------------------------


async def test_text_video_queued_before_a_restart_runs_once_after_it(world, pixverse):
    await world.start_bot(pixverse=pixverse, runner=PARKED)
    handle = await imagine(world, aspect_ratio="3:4")
    job = await accepted(world, handle)
    await asyncio.sleep(0.3)
    await world.stop_bot()
    assert pixverse.requests == []

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    [request] = pixverse.generate_requests
    assert request.json["aspect_ratio"] == "3:4"
    assert await ledger_state(world.bot.store, job.id) == "committed"
    assert await used(world, world.member) == (45, 0)


async def test_text_video_generating_at_a_restart_finishes_without_a_second_submit(world, pixverse):
    pixverse.config.gen_time = 1.5
    await world.start_bot(pixverse=pixverse)
    handle = await imagine(world, aspect_ratio="4:3")
    job = await accepted(world, handle)
    async with asyncio.timeout(10):
        while (job := await world.bot.store.jobs.get(job.id)).state is not JobState.GENERATING:
            await asyncio.sleep(0.02)
    await world.stop_bot()  # the bot's state is all in the database, as after a SIGKILL
    assert "Done" not in status_text(handle.original)

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    assert "Done" in status_text(handle.original)
    assert len(pixverse.generate_requests) == 1 and len(pixverse.jobs) == 1
    assert [m for m in world.fake.messages_in(world.channel) if not m.ephemeral] == [
        handle.original
    ]
    assert await used(world, world.member) == (45, 0)


async def test_imagine_with_audio_asks_pixverse_for_sound_and_charges_it(world):
    # Native audio on v6 (generate_audio_switch), PixVerse's sound effect on v4.5: the same
    # `audio` option as /video, priced by the catalogue.
    bot = await world.start_bot()
    handle = await imagine(world, model="v6", duration=5, audio=True)
    job = await world.job_final((await accepted(world, handle)).id)
    assert job.state is JobState.DONE, job.error
    handle = await imagine(world, audio=True)
    plain = await world.job_final((await accepted(world, handle)).id)
    assert plain.state is JobState.DONE, plain.error
    native, effect = bot.simulator.generate_requests
    assert native.json["generate_audio_switch"] is True
    assert "sound_effect_switch" not in native.json
    assert effect.json["sound_effect_switch"] is True
    assert "generate_audio_switch" not in effect.json
    catalogue = bot.store.catalogue
    assert (
        job.cost
        == catalogue.price(job.params.combination)
        > catalogue.price(dataclasses.replace(job.params.combination, audio=False))
    )
    assert plain.cost == 45 + 10
