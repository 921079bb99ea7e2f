"""/video refusals and acceptance end to end: every bad input gets an ephemeral reply that says
what to change, nothing is charged and nothing reaches PixVerse; good input is accepted
publicly within Discord's 3 seconds."""

from __future__ import annotations

import functools
import io
from typing import Any

import pytest
from conftest import png_bytes, status_text
from fakediscord import permissions
from PIL import Image

from bot.simulator import SimulatorConfig

PIXVERSE_WORK = {"image_upload", "media_upload", "img_generate", "text_generate", "extend_generate"}
MIB = 1024 * 1024


@functools.cache
def huge_png() -> bytes:
    """8000×8000 (64 megapixels): over the 50-megapixel limit, yet small once compressed."""
    out = io.BytesIO()
    Image.new("1", (8000, 8000), 1).save(out, format="PNG")
    return out.getvalue()


@functools.cache
def wide_jpeg() -> bytes:
    """6000×3000: a side over PixVerse's 4,000 px, under 50 megapixels."""
    out = io.BytesIO()
    Image.new("RGB", (6000, 3000), (200, 80, 40)).save(out, format="JPEG", quality=80)
    return out.getvalue()


def callback_text(data: dict[str, Any] | None) -> str:
    data = data or {}
    parts = [data.get("content") or ""]
    for embed in data.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields", [])]
    return "\n".join(parts)


async def refusal(world: Any, handle: Any) -> str:
    """The refusal's text, after checking it is ephemeral and nothing was charged or sent."""
    response = await handle.response(timeout=5)
    assert response.accepted
    assert response.type == 4, f"expected an immediate reply, got {response!r}"
    assert response.ephemeral, response.content
    assert response.delay < 3
    await assert_nothing_happened(world, handle.user)
    return response.content or ""


async def assert_nothing_happened(world: Any, user: Any) -> None:
    bot = world.bot
    quota = await bot.store.ledger.quota(world.guild.id, user.id)
    assert (quota.used_today, quota.reserved) == (0, 0)
    assert await bot.store.jobs.count_for_user(world.guild.id, user.id) == 0
    assert not [r for r in bot.simulator.requests if r.route in PIXVERSE_WORK]
    assert not world.fake.messages_in(world.channel, include_ephemeral=False)


# --- the file ---------------------------------------------------------------------------------


async def test_text_file_named_png_is_refused_by_its_bytes(world):
    await world.start_bot()
    handle = await world.video(image=("cat.png", b"just some notes\n" * 50, "image/png"))
    text = await refusal(world, handle)
    assert "cat.png" in text and "PNG, JPEG or WebP" in text


async def test_gif_is_refused(world):
    await world.start_bot()
    gif = png_bytes(fmt="GIF")
    handle = await world.video(image=("dance.gif", gif, "image/gif"))
    text = await refusal(world, handle)
    assert "dance.gif" in text and "PNG, JPEG or WebP" in text


async def test_gif_renamed_to_png_is_refused(world):
    await world.start_bot()
    handle = await world.video(image=("dance.png", png_bytes(fmt="GIF"), "image/png"))
    text = await refusal(world, handle)
    assert "whatever its name says" in text


async def test_image_over_50_megapixels_is_refused(world):
    await world.start_bot()
    handle = await world.video(image=("big.png", huge_png(), "image/png"))
    text = await refusal(world, handle)
    assert "50 megapixels" in text and "smaller" in text


async def test_file_over_20_mb_is_refused_before_download(world):
    await world.start_bot()
    data = b"\x89PNG\r\n\x1a\n" + bytes(21 * MIB)
    handle = await world.video(image=("huge.png", data, "image/png"))
    text = await refusal(world, handle)
    assert "huge.png" in text and "20.0 MB" in text and "smaller" in text
    assert world.fake.file_downloads == []


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"prompt": "a" * 2049}, ["2049 characters", "2048", "shorten"], id="prompt"),
        pytest.param(
            {"negative_prompt": "b" * 2049},
            ["negative prompt", "2049", "shorten"],
            id="negative-prompt",
        ),
        pytest.param({"quality": "1080p", "duration": 8}, ["1080p", "choose 5 s"], id="1080p-8s"),
        pytest.param({"motion": "fast", "duration": 8}, ["Fast motion", "5 s"], id="fast-8s"),
        pytest.param(
            {"model": "v5", "motion": "fast"}, ["v5 has no fast motion", "normal"], id="v5-fast"
        ),
        pytest.param({"seed": 2_147_483_648}, ["seed", "2147483647"], id="seed-out-of-range"),
        pytest.param({"seed": -1}, ["seed", "between 0"], id="negative-seed"),
        pytest.param({"effect": "Dance party"}, ["no effect", "Kiss kiss"], id="unknown-effect"),
    ],
)
async def test_bad_option_is_refused(world, options, expected):
    await world.start_bot()
    handle = await world.video(strict=False, **options)
    text = await refusal(world, handle)
    for words in expected:
        assert words in text, text


# --- the member and the server ----------------------------------------------------------------


async def test_not_enough_credits_is_refused_with_the_numbers(world):
    await world.start_bot(daily_credits=40)
    handle = await world.video()
    text = await refusal(world, handle)
    assert "costs 45 credits" in text and "40 left" in text


async def test_blocked_member_is_refused(world):
    bot = await world.start_bot()
    await bot.store.admin.block(world.guild.id, world.admin.id, world.member.id, "spamming")
    handle = await world.video()
    text = await refusal(world, handle)
    assert "blocked" in text and "spamming" in text


async def test_third_job_at_once_is_refused(world):
    bot = await world.start_bot(simulator=SimulatorConfig(gen_time=60, seed=7))
    running = [await world.video() for _ in range(2)]
    for accepted in running:
        assert not (await accepted.response(timeout=5)).ephemeral
    # Both are at PixVerse (and the runner is idle again) before the third arrives.
    await world.until(lambda: all("Generating" in status_text(h.original) for h in running))
    handle = await world.video()
    response = await handle.response(timeout=5)
    assert response.ephemeral
    assert "2 jobs" in response.content and "limit is 2" in response.content
    assert "/cancel" in response.content
    quota = await bot.store.ledger.quota(world.guild.id, world.member.id)
    assert quota.reserved == 90 and quota.used_today == 0
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 2
    assert len(bot.simulator.generate_requests) == 2


@pytest.mark.parametrize(
    ("missing", "name"),
    [(permissions.SEND_MESSAGES, "Send Messages"), (permissions.ATTACH_FILES, "Attach Files")],
)
async def test_channel_without_bot_permission_is_refused(world, missing, name):
    await world.start_bot()
    world.fake.set_bot_permissions(world.channel, permissions.DEFAULT_BOT & ~missing)
    handle = await world.video()
    text = await refusal(world, handle)
    assert name in text and "another channel" in text
    assert world.fake.file_downloads == []


# --- accepted input ---------------------------------------------------------------------------


async def test_accept_reply_is_public_fast_and_names_everything(world):
    await world.start_bot()
    prompt = "a red fox leaps over a frozen stream at dawn"
    handle = await world.video(prompt=prompt, model="v4", quality="720p", duration=5, seed=1234)
    response = await handle.response(timeout=5)
    assert response.accepted and response.type == 4
    assert not response.ephemeral
    assert response.delay < 3
    job = await world.latest_job()
    text = callback_text(response.data)
    assert f"<@{world.member.id}>" in text
    assert f"#{job.id}" in text
    assert prompt[:30] in text
    for shown in ("Model: v4", "Quality: 720p", "Duration: 5 s", "Seed: 1234", "Queued"):
        assert shown in text, text
    assert (response.data or {}).get("allowed_mentions", {}).get("parse") == []


async def test_image_with_a_side_over_4000_px_is_scaled_not_refused(world):
    bot = await world.start_bot()
    handle = await world.video(image=("wide.jpg", wide_jpeg(), "image/jpeg"))
    response = await handle.response(timeout=8)
    assert response.accepted and not response.ephemeral
    job = await world.latest_job()
    assert (await world.job_final(job.id)).state.value == "done"
    [upload] = [u for u in bot.simulator.uploads.values() if u.kind == "image"]
    assert (upload.width, upload.height) == (4000, 2000)
    await world.until(lambda: "Done" in status_text(handle.original))
    assert "6000×3000" in status_text(handle.original)
    assert "4000×2000" in status_text(handle.original)


async def test_style_with_another_model_is_left_out_and_said(world):
    bot = await world.start_bot()
    handle = await world.video(model="v4.5", style="anime")
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral
    job = await world.latest_job()
    await world.job_final(job.id)
    [request] = bot.simulator.generate_requests
    assert "style" not in request.json
    assert "only works with model v3.5" in callback_text(response.data)
    await world.until(lambda: "Done" in status_text(handle.original))
    assert "only works with model v3.5" in status_text(handle.original)


async def test_style_with_v35_is_sent(world):
    bot = await world.start_bot()
    handle = await world.video(model="v3.5", style="clay")
    assert not (await handle.response(timeout=5)).ephemeral
    await world.job_final((await world.latest_job()).id)
    [request] = bot.simulator.generate_requests
    assert request.json["style"] == "clay"


async def test_refusal_after_a_slow_preparation_is_ephemeral(world, monkeypatch):
    # The image takes "long" to prepare, so the bot defers publicly first; the refusal that
    # follows (its bytes are no picture) must still be ephemeral, and no public "thinking…"
    # message may stay behind.
    monkeypatch.setattr("bot.ui.intake.DEFER_AFTER", 0.001)
    await world.start_bot()
    handle = await world.video(image=("cat.png", b"just some text, not a picture", "image/png"))
    first = await handle.response(timeout=5)
    assert first.type == 5 and first.delay < 3
    [followup] = await handle.wait_followups(1, timeout=5)
    assert followup.ephemeral
    assert "whatever its name says" in followup.content
    assert handle.original is not None and handle.original.deleted
    await assert_nothing_happened(world, world.member)


async def test_slow_preparation_is_accepted_in_the_deferred_message(world, monkeypatch):
    monkeypatch.setattr("bot.ui.intake.DEFER_AFTER", 0.001)
    await world.start_bot()
    handle = await world.video()
    first = await handle.response(timeout=5)
    assert first.type == 5 and not first.ephemeral
    message = await handle.wait_original(lambda m: "job #" in m.content)
    job = await world.latest_job()
    assert f"job #{job.id}" in message.content
    assert not message.ephemeral and not message.deleted
    assert f"<@{world.member.id}>" in message.content
    await world.job_final(job.id)


async def test_no_credits_is_refused_before_the_image_is_downloaded(world):
    await world.start_bot(daily_credits=40)
    handle = await world.video()
    response = await handle.response(timeout=5)
    assert response.ephemeral and "costs 45 credits" in response.content
    assert world.fake.file_downloads == []
    await assert_nothing_happened(world, world.member)
