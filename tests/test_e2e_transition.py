"""/transition end to end: a video from a first and a last frame (PixVerse's transition),
through the real discord.py client, the fake Discord and the simulator. Both pictures are
checked like /video's image, kept with the job until PixVerse has them (also across a
restart), uploaded, and sent as ``first_frame_img`` and ``last_frame_img``."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import zipfile
from typing import Any

from conftest import FAST_RUNNER, png_bytes, status_text
from fakediscord.models import walk_components
from store_fixtures import ledger_state

from bot.store.models import LAST_FRAME, JobKind, JobSource, JobState

PIXVERSE_WORK = {
    "image_upload",
    "media_upload",
    "img_generate",
    "text_generate",
    "transition_generate",
    "extend_generate",
}
PARKED = dataclasses.replace(FAST_RUNNER, max_active=0)
FIRST = png_bytes(64, 48)
LAST = png_bytes(80, 60, fmt="JPEG")


async def transition(
    world: Any,
    user: Any = None,
    *,
    first: tuple[str, bytes, str] | None = None,
    last: tuple[str, bytes, str] | None = None,
    **options: Any,
) -> Any:
    options.setdefault("prompt", "the day turns into night")
    return await world.fake.invoke(
        "transition",
        user=user or world.member,
        channel=world.channel,
        options=options,
        attachments={
            "first": first or ("day.png", FIRST, "image/png"),
            "last": last or ("night.jpg", LAST, "image/jpeg"),
        },
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


def requests(pixverse: Any, route: str) -> list[Any]:
    return [r for r in pixverse.requests if r.route == route]


def work(pixverse: Any) -> list[Any]:
    return [r for r in pixverse.requests if r.route in PIXVERSE_WORK]


async def used(world: Any, user: Any) -> tuple[int, int]:
    quota = await world.bot.store.ledger.quota(world.guild.id, user.id)
    return quota.used_today, quota.reserved


def assert_frames_sent(pixverse: Any, request: Any) -> None:
    """The body names the uploaded first and last pictures, in that order."""
    first = pixverse.uploads[request.json["first_frame_img"]]
    last = pixverse.uploads[request.json["last_frame_img"]]
    assert (first.kind, first.data) == ("image", FIRST)
    assert (last.kind, last.data) == ("image", LAST)


def text_input_id(modal: dict) -> str:
    [text_input] = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
    return text_input["custom_id"]


# --- accepted ---------------------------------------------------------------------------------


async def test_transition_uploads_both_frames_and_sends_their_ids(world):
    bot = await world.start_bot()
    handle = await transition(world, model="v4", seed=321)
    job = await finished(world, handle)

    assert job.kind == JobKind.TRANSITION and job.params.source is JobSource.FRAMES
    assert [r.route for r in work(bot.simulator)] == [
        "image_upload",
        "image_upload",
        "transition_generate",
    ]
    [request] = bot.simulator.generate_requests
    assert_frames_sent(bot.simulator, request)
    assert (request.json["first_frame_img"], request.json["last_frame_img"]) == (
        job.pixverse_img_id,
        job.pixverse_last_img_id,
    )
    assert request.json["prompt"] == "the day turns into night"
    assert (request.json["model"], request.json["seed"]) == ("v4", 321)
    assert "img_id" not in request.json and "aspect_ratio" not in request.json
    # PixVerse has both: neither file is kept any longer.
    assert await bot.store.jobs.get_input(job.id) is None
    assert await bot.store.jobs.get_input(job.id, LAST_FRAME) is None

    message = handle.original
    assert "transition" in message.content and f"#{job.id}" in message.content
    assert "Done" in status_text(message) and "Aspect ratio" not in status_text(message)
    [data] = message.files.values()
    assert data[4:8] == b"ftyp"
    assert {f"pixbot:reroll:{job.id}", f"pixbot:extend:{job.id}"} <= set(message.custom_ids())
    assert await ledger_state(bot.store, job.id) == "committed"
    assert await used(world, world.member) == (45, 0)  # priced like an image-to-video


async def test_a_second_file_that_lies_is_refused_and_nothing_is_charged(world):
    bot = await world.start_bot()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("night.txt", "not a picture")
    handle = await transition(world, last=("night.png", archive.getvalue(), "image/png"))

    response = await handle.response(timeout=8)
    assert response.accepted and response.ephemeral, response
    assert response.delay < 3
    text = response.content or ""
    assert "night.png" in text and "whatever its name says" in text and "attach" in text
    assert "day.png" not in text  # the first picture was fine
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 0
    assert await used(world, world.member) == (0, 0)
    assert work(bot.simulator) == []
    assert not world.fake.messages_in(world.channel, include_ephemeral=False)


async def test_a_second_file_declared_as_a_video_is_refused_before_any_download(world):
    bot = await world.start_bot()
    handle = await transition(world, last=("night.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4"))
    response = await handle.response(timeout=5)
    assert response.accepted and response.ephemeral, response
    assert "night.mp4" in (response.content or "") and "not an image" in (response.content or "")
    assert not [f for f in world.fake.file_downloads if f.filename in ("day.png", "night.mp4")]
    assert await used(world, world.member) == (0, 0)
    assert work(bot.simulator) == []


# --- the buttons --------------------------------------------------------------------------------


async def test_reroll_of_a_transition_reuses_both_frames_with_a_new_seed(world):
    bot = await world.start_bot()
    handle = await transition(world, seed=11)
    source = await finished(world, handle)

    click = await world.fake.click(handle.original, f"pixbot:reroll:{source.id}", user=world.other)
    job = await world.job_final((await accepted(world, click)).id)
    assert job.state is JobState.DONE, job.error
    assert job.kind == JobKind.REROLL and job.params.source is JobSource.FRAMES
    assert (job.pixverse_img_id, job.pixverse_last_img_id) == (
        source.pixverse_img_id,
        source.pixverse_last_img_id,
    )

    first, second = bot.simulator.generate_requests
    assert first.route == second.route == "transition_generate"
    for name in ("first_frame_img", "last_frame_img", "prompt", "model", "quality", "duration"):
        assert second.json[name] == first.json[name], name
    assert second.json["seed"] != first.json["seed"]
    assert len(requests(bot.simulator, "image_upload")) == 2  # PixVerse has them already
    assert await used(world, world.other) == (45, 0)


async def test_extend_of_a_transition_continues_its_pixverse_video(world):
    bot = await world.start_bot()
    handle = await transition(world)
    source = await finished(world, handle)

    click = await world.fake.click(handle.original, f"pixbot:extend:{source.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    submit = await world.fake.submit_modal(
        modal["custom_id"],
        {text_input_id(modal): "the stars come out"},
        user=world.other,
        channel=world.channel,
    )
    job = await world.job_final((await accepted(world, submit)).id)
    assert job.state is JobState.DONE, job.error
    assert job.kind == JobKind.EXTEND and job.parent_job_id == source.id

    [extend] = requests(bot.simulator, "extend_generate")
    assert extend.json["source_video_id"] == source.pixverse_video_id
    assert extend.json["prompt"] == "the stars come out"
    assert "first_frame_img" not in extend.json and "last_frame_img" not in extend.json
    assert len(requests(bot.simulator, "image_upload")) == 2


# --- restarts -----------------------------------------------------------------------------------


async def test_transition_uploading_at_a_restart_uploads_both_frames_and_submits_once(
    world, pixverse
):
    bot = await world.start_bot(pixverse=pixverse, runner=PARKED)
    handle = await transition(world)
    job = await accepted(world, handle)
    # As if the runner had claimed the job and died before PixVerse had either picture: only
    # the database's copies of the two files are left.
    assert await bot.store.jobs.transition(job.id, JobState.QUEUED, JobState.UPLOADING)
    await world.stop_bot()
    assert pixverse.requests == []

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    assert [r.route for r in work(pixverse)] == [
        "image_upload",
        "image_upload",
        "transition_generate",
    ]
    assert_frames_sent(pixverse, pixverse.generate_requests[0])
    assert len(pixverse.jobs) == 1
    assert await ledger_state(world.bot.store, job.id) == "committed"
    assert await used(world, world.member) == (45, 0)


async def test_transition_generating_at_a_restart_finishes_without_a_second_submit(world, pixverse):
    pixverse.config.gen_time = 1.5
    await world.start_bot(pixverse=pixverse)
    handle = await transition(world)
    job = await accepted(world, handle)
    async with asyncio.timeout(10):
        while (job := await world.bot.store.jobs.get(job.id)).state is not JobState.GENERATING:
            await asyncio.sleep(0.02)
    await world.stop_bot()
    assert "Done" not in status_text(handle.original)

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files)
    assert len(pixverse.generate_requests) == 1 and len(pixverse.jobs) == 1
    assert len(requests(pixverse, "image_upload")) == 2
    assert [m for m in world.fake.messages_in(world.channel) if not m.ephemeral] == [
        handle.original
    ]
    assert await used(world, world.member) == (45, 0)


async def test_transition_with_audio_on_v6_asks_for_native_audio_at_its_price(world):
    bot = await world.start_bot(daily_credits=500)
    handle = await transition(world, model="v6", quality="540p", duration=4, audio=True)
    job = await finished(world, handle)

    assert job.has_audio is True
    [request] = bot.simulator.generate_requests
    assert request.route == "transition_generate"
    assert request.json["generate_audio_switch"] is True
    assert "sound_effect_switch" not in request.json
    assert job.cost == 4 * 7 + 4 * 2  # v6 540p: 7 a second, audio 2 a second on top
    assert await used(world, world.member) == (job.cost, 0)
