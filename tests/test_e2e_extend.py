"""/extend end to end: continue one of the bot's finished jobs (``source_video_id``) or an
uploaded clip (``video_media_id``); every wrong source is refused before anything is charged."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import png_bytes, status_text

from bot.pixverse.rules import Quality
from bot.simulator.media import sample_video
from bot.store.models import JobKind, JobParams, JobState, NewJob

PIXVERSE_WORK = {"image_upload", "media_upload", "img_generate", "text_generate", "extend_generate"}


async def extend(world: Any, user: Any = None, **options: Any) -> Any:
    options.setdefault("prompt", "the camera pulls back to reveal the city")
    return await world.fake.invoke(
        "extend", user=user or world.member, channel=world.channel, options=options
    )


async def finished_job(world: Any, user: Any = None, prompt: str = "a cat turns its head") -> Any:
    handle = await world.video(user=user, prompt=prompt)
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.job_final(await job_id(handle))
    assert job.state is JobState.DONE and job.pixverse_video_id is not None
    return job


async def job_id(handle: Any) -> int:
    message = await handle.wait_original(lambda m: "job #" in m.content)
    match = re.search(r"job #(\d+)", message.content)
    assert match, message.content
    return int(match.group(1))


def work_requests(bot: Any) -> list[Any]:
    return [r for r in bot.simulator.requests if r.route in PIXVERSE_WORK]


async def refusal(world: Any, handle: Any, *, jobs_before: int = 0, used: int = 0) -> str:
    """The ephemeral refusal; checks no extension was created, charged or sent."""
    response = await handle.response(timeout=5)
    assert response.accepted and response.type == 4 and response.ephemeral, response
    assert response.delay < 3
    bot = world.bot
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == jobs_before
    quota = await bot.store.ledger.quota(world.guild.id, world.member.id)
    assert (quota.used_today, quota.reserved) == (used, 0)
    assert not [r for r in bot.simulator.requests if r.route in ("media_upload", "extend_generate")]
    return response.content or ""


# --- accepted ---------------------------------------------------------------------------------


async def test_extend_finished_job_sends_its_video_id(world):
    bot = await world.start_bot()
    parent = await finished_job(world)
    uploads_before = len(work_requests(bot)) - 1  # everything but the first generate

    handle = await extend(world, job=parent.id)
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral and response.delay < 3
    child = await world.job_final(await job_id(handle))
    assert child.state is JobState.DONE
    assert child.parent_job_id == parent.id and child.kind == JobKind.EXTEND

    [request] = [r for r in bot.simulator.generate_requests if r.route == "extend_generate"]
    assert request.json["source_video_id"] == parent.pixverse_video_id
    assert "video_media_id" not in request.json
    assert request.json["prompt"] == "the camera pulls back to reveal the city"
    # The source is already at PixVerse: nothing is uploaded again.
    assert len(work_requests(bot)) - 2 == uploads_before
    await world.until(lambda: "Done" in status_text(handle.original))
    text = status_text(handle.original)
    assert "extension" in text and f"#{parent.id}" in text


async def test_extend_uploaded_video_uploads_it_then_extends_it(world):
    bot = await world.start_bot()
    handle = await extend(world, video=("clip.mp4", sample_video(), "video/mp4"))
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral and response.delay < 3
    job = await world.job_final(await job_id(handle))
    assert job.state is JobState.DONE and job.parent_job_id is None

    routes = [r.route for r in work_requests(bot)]
    assert routes == ["media_upload", "extend_generate"]
    [media] = [u for u in bot.simulator.uploads.values() if u.kind == "video"]
    assert media.data == sample_video()
    request = bot.simulator.generate_requests[-1]
    assert request.json["video_media_id"] == media.id == job.pixverse_media_id
    assert "source_video_id" not in request.json


# --- refused ----------------------------------------------------------------------------------


async def test_extend_with_both_video_and_job_is_refused(world):
    bot = await world.start_bot()
    parent = await finished_job(world)
    handle = await extend(world, job=parent.id, video=("clip.mp4", sample_video(), "video/mp4"))
    text = await refusal(world, handle, jobs_before=1, used=45)
    assert "exactly one" in text and "`video`" in text and "`job`" in text
    assert not [f for f in world.fake.file_downloads if f.filename == "clip.mp4"]
    assert len(bot.simulator.generate_requests) == 1


async def test_extend_with_neither_video_nor_job_is_refused(world):
    await world.start_bot()
    text = await refusal(world, await extend(world))
    assert "exactly one" in text


async def test_extend_unknown_job_is_refused(world):
    await world.start_bot()
    text = await refusal(world, await extend(world, job=4242))
    assert "no job #4242" in text and "/jobs" in text


async def test_extend_job_of_another_server_is_refused(world):
    bot = await world.start_bot()
    elsewhere = world.fake.add_guild("Elsewhere")
    job = await bot.store.jobs.create(
        NewJob(
            guild_id=elsewhere.id,
            channel_id=world.fake.add_channel(elsewhere, "general").id,
            user_id=world.member.id,
            params=JobParams(prompt="far away", model="v4.5", quality=Quality.P540, duration=5),
        )
    )
    await bot.store.jobs.finish_done(job.id, "https://example.invalid/v.mp4", pixverse_video_id=7)
    text = await refusal(world, await extend(world, job=job.id), jobs_before=0)
    assert f"no job #{job.id} in this server" in text


async def test_extend_unfinished_job_is_refused(world):
    bot = await world.start_bot()
    bot.simulator.config.gen_time = 60
    handle = await world.video()
    await handle.response(timeout=5)
    await world.until(lambda: "Generating" in status_text(handle.original))
    running = await job_id(handle)
    response = await (await extend(world, job=running)).response(timeout=5)
    assert response.ephemeral
    assert "generating" in response.content and "not finished" in response.content
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 1
    assert not [r for r in bot.simulator.requests if r.route == "extend_generate"]


async def test_extend_removed_job_is_refused(world):
    bot = await world.start_bot()
    parent = await finished_job(world)
    await bot.store.jobs.remove_result(parent.id, actor_id=world.admin.id, reason="rules")
    text = await refusal(world, await extend(world, job=parent.id), jobs_before=1)
    assert "removed by a moderator" in text


@pytest.mark.parametrize(
    "upload",
    [
        pytest.param(("cat.png", png_bytes(), "image/png"), id="an-image"),
        pytest.param(("clip.mp4", png_bytes(), "video/mp4"), id="an-image-named-mp4"),
        pytest.param(("clip.mp4", b"not a video at all" * 40, "video/mp4"), id="text-named-mp4"),
    ],
)
async def test_extend_with_a_non_video_attachment_is_refused(world, upload):
    await world.start_bot()
    text = await refusal(world, await extend(world, video=upload))
    assert upload[0] in text and "MP4, MOV or WebM" in text


def long_clip(seconds: int) -> bytes:
    """The sample clip with its movie header claiming ``seconds`` (timescale 1000)."""
    data = bytearray(sample_video())
    body = data.index(b"mvhd") + 4
    assert data[body] == 0  # version 0: 32-bit timescale and duration
    data[body + 16 : body + 20] = (seconds * 1000).to_bytes(4, "big")
    return bytes(data)


async def test_extend_with_a_clip_over_30_seconds_is_refused(world):
    await world.start_bot()
    text = await refusal(world, await extend(world, video=("long.mp4", long_clip(45), "video/mp4")))
    assert "long.mp4" in text and "45 s" in text and "30 s" in text and "trim" in text


# --- autocomplete -----------------------------------------------------------------------------


async def test_extend_autocomplete_offers_the_members_finished_jobs(world):
    bot = await world.start_bot()
    older = await finished_job(world, prompt="a lantern sways in the wind")
    newer = await finished_job(world, prompt="snow falls on a quiet street")
    theirs = await finished_job(world, user=world.other, prompt="their finished one")
    bot.simulator.config.gen_time = 60
    handle = await world.video(prompt="still generating")
    await handle.response(timeout=5)
    await world.until(lambda: "Generating" in status_text(handle.original))

    async def offered(user: Any, text: str = "") -> list[dict[str, Any]]:
        return await world.fake.autocomplete(
            "extend", focused="job", user=user, channel=world.channel, options={"job": text}
        )

    choices = await offered(world.member)
    assert [c["value"] for c in choices] == [newer.id, older.id]
    assert choices[0]["name"].startswith(f"#{newer.id}") and "snow falls" in choices[0]["name"]
    assert [c["value"] for c in await offered(world.member, "lantern")] == [older.id]
    assert [c["value"] for c in await offered(world.other)] == [theirs.id]
