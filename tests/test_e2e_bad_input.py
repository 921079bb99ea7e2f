"""Bad input and Discord's edges, end to end (issue 9, item 2 and the Discord part of item 1):
invisible and control characters in prompts, files that lie about what they are, commands from
DMs, other members' job ids, pages past the end, unknown or forged buttons, and Discord's 429
and 5xx on the replies that carry a refusal. Every bad input gets an ephemeral answer that says
what to change; nothing is charged and nothing reaches PixVerse."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
import zlib
from typing import Any

import pytest
from conftest import png_bytes, status_text
from fakediscord.models import walk_components
from PIL import Image

from bot.simulator.media import sample_video
from bot.store.models import JobState

PIXVERSE_WORK = {"image_upload", "media_upload", "img_generate", "text_generate", "extend_generate"}
CALLBACK = r"^/interactions/\d+/[^/]+/callback$"
FOLLOWUP = r"^/webhooks/\d+/[^/]+$"
# Characters a member cannot see, or that would flip or colour a public message.
INVISIBLES = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u202a\u202b\u202c\u202d\u202e"
INVISIBLES += "\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


# --- helpers ----------------------------------------------------------------------------------


def pixverse_work(world: Any) -> int:
    return len([r for r in world.bot.simulator.requests if r.route in PIXVERSE_WORK])


async def assert_nothing_happened(world: Any, user: Any, pixverse_before: int = 0) -> None:
    bot = world.bot
    quota = await bot.store.ledger.quota(world.guild.id, user.id)
    assert (quota.used_today, quota.reserved) == (0, 0)
    assert await bot.store.jobs.count_for_user(world.guild.id, user.id) == 0
    assert pixverse_work(world) == pixverse_before


async def refusal(world: Any, handle: Any) -> str:
    """The text of the interaction's one answer, after checking it is an ephemeral refusal
    sent within Discord's 3 seconds and that nothing was charged, posted or sent to PixVerse
    (by a member who had no job before)."""
    response = await handle.response(timeout=8)
    assert response.accepted, response
    assert response.type == 4, f"expected an immediate reply, got {response!r}"
    assert response.ephemeral, response.content
    assert response.delay < 3
    await assert_nothing_happened(world, handle.user)
    assert not world.fake.messages_in(world.channel, include_ephemeral=False)
    return response.content or ""


def image(fmt: str = "PNG", size: tuple[int, int] = (64, 48), **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, format=fmt, **save)
    return out.getvalue()


def noisy(fmt: str) -> bytes:
    """A picture that does not compress away, so cutting it in half loses pixel data."""
    out = io.BytesIO()
    Image.effect_noise((400, 300), 80).convert("RGB").save(out, format=fmt)
    return out.getvalue()


def animated(fmt: str, frames: int = 3) -> bytes:
    pictures = [Image.new("RGB", (64, 48), (60 * n, 90, 30)) for n in range(frames)]
    out = io.BytesIO()
    pictures[0].save(out, format=fmt, save_all=True, append_images=pictures[1:], duration=100)
    return out.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes that declare a 10-gigapixel picture."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(64 * 1024), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("cat.png", png_bytes())
    return out.getvalue()


async def run(world: Any, name: str, user: Any = None, **options: Any):
    return await world.fake.invoke(
        name, user=user or world.member, channel=world.channel, options=options
    )


async def finished_video(world: Any, **options: Any) -> tuple[Any, Any]:
    handle = await world.video(**options)
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.job_final((await world.latest_job()).id)
    assert job.state is JobState.DONE
    await world.until(lambda: handle.original.files)
    return job, handle.original


def button_message(world: Any, *custom_ids: str) -> Any:
    """A bot message carrying buttons with these custom ids: what a member would press on an
    old result after the database was lost, or on a forged or stale component."""
    buttons = [{"type": 2, "style": 2, "label": "Press", "custom_id": cid} for cid in custom_ids]
    return world.fake.create_channel_message(
        world.channel,
        {"content": "an old result", "components": [{"type": 1, "components": buttons}]},
        [],
        route="test",
    )


# --- prompts: invisible and control characters ------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param(INVISIBLES, id="zero-width-and-bidi"),
        pytest.param("\u200b" * 40, id="zero-width-spaces"),
        pytest.param(" \u00a0\u3000\u2003 ", id="unicode-spaces"),
        pytest.param("\u3164\u3164\u2800", id="hangul-filler-braille-blank"),
        pytest.param("\x00\x07\x1b[31m\x1b[0m\x7f", id="controls-and-ansi"),
        pytest.param("\u0301\u0301\ufe0f", id="marks-with-nothing-to-sit-on"),
        pytest.param("\U000e0041\U000e0042", id="tag-characters"),
    ],
)
async def test_prompt_with_nothing_visible_is_refused(world, prompt):
    await world.start_bot()
    handle = await world.video(prompt=prompt)
    text = await refusal(world, handle)
    assert "prompt is empty" in text and "invisible" in text and "describe" in text
    assert world.fake.file_downloads == []


async def test_control_characters_never_reach_pixverse_or_the_status_message(world):
    bot = await world.start_bot()
    prompt = "a \x1b[31mred\x1b[0m fox\x00 leaps\x07 \u202eover\u202c the\u200b log\x1b]0;pwn\x07"
    negative = "\u2067blur\u2069\x1b[1m, noise\x08"
    handle = await world.video(prompt=prompt, negative_prompt=negative)
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral
    job = await world.job_final((await world.latest_job()).id)
    assert job.state is JobState.DONE
    assert job.params.prompt == "a red fox leaps over the log"
    assert job.params.negative_prompt == "blur, noise"

    [request] = bot.simulator.generate_requests
    assert request.json["prompt"] == "a red fox leaps over the log"
    assert request.json["negative_prompt"] == "blur, noise"
    await world.until(lambda: "Done" in status_text(handle.original))
    for snapshot in handle.original.history:
        shown = str(snapshot.content) + str(snapshot.embeds)
        for bad in ("\x1b", "\x00", "\x07", "\x08", "\u202e", "\u2067", "\u200b", "[31m"):
            assert bad not in shown
    assert "a red fox leaps over the log" in status_text(handle.original)


async def test_moderation_log_shows_the_cleaned_prompt(world):
    log = world.fake.add_channel(world.guild, "mod-log")
    await world.start_bot()
    done = await run(world, "mod log-channel", world.admin, channel=log)
    assert (await done.response(timeout=5)).ephemeral
    job, _ = await finished_video(world, prompt="a heron\u202e fishing\x1b[5m at\u200b dawn")
    await world.until(lambda: world.fake.messages_in(log))
    [entry] = world.fake.messages_in(log)
    text = status_text(entry)
    assert "a heron fishing at dawn" in text and f"#{job.id}" in text
    assert not any(bad in text for bad in ("\u202e", "\x1b", "\u200b"))


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param("a b\u200bad cat", id="zero-width-space"),
        pytest.param("a b\u200dad cat", id="zero-width-joiner"),
        pytest.param("a b\u00adad cat", id="soft-hyphen"),
        pytest.param("a \u202ebad\u202c cat", id="bidi-override"),
        pytest.param("a b\x1b[0mad cat", id="ansi-escape"),
    ],
)
async def test_invisible_characters_do_not_dodge_the_word_filter(world, prompt):
    await world.start_bot()
    added = await run(world, "mod filter add", world.admin, word="bad")
    assert (await added.response(timeout=5)).ephemeral
    handle = await world.video(prompt=prompt)
    text = await refusal(world, handle)
    assert "“bad”" in text and "rephrase" in text


async def test_prompt_length_is_counted_without_the_invisible_characters(world):
    bot = await world.start_bot()
    # 2048 visible characters padded with invisible ones: within the limit once cleaned.
    handle = await world.video(prompt="a" * 2048 + "\u200b" * 30, strict=False)
    assert not (await handle.response(timeout=5)).ephemeral
    await world.job_final((await world.latest_job()).id)
    [request] = bot.simulator.generate_requests
    assert request.json["prompt"] == "a" * 2048


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"prompt": "a" * 2049 + "\u200b" * 5}, "2049 characters", id="prompt"),
        pytest.param(
            {"negative_prompt": "b" * 2049 + "\x1b[0m"}, "negative prompt is 2049", id="negative"
        ),
    ],
)
async def test_over_long_prompt_is_refused_by_its_visible_length(world, options, expected):
    await world.start_bot()
    handle = await world.video(strict=False, **options)
    text = await refusal(world, handle)
    assert expected in text and "2048" in text and "shorten" in text


async def test_extend_form_with_nothing_visible_is_refused_and_controls_are_stripped(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)
    click = await world.fake.click(message, f"pixbot:extend:{source.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    [field] = [c for c in walk_components(modal["components"]) if c.get("type") == 4]

    before = pixverse_work(world)
    empty = await world.fake.submit_modal(
        modal["custom_id"], {field["custom_id"]: INVISIBLES}, user=world.other
    )
    response = await empty.response(timeout=5)
    assert response.accepted and response.ephemeral and response.delay < 3
    assert "prompt is empty" in response.content and "invisible" in response.content
    await assert_nothing_happened(world, world.other, before)

    submit = await world.fake.submit_modal(
        modal["custom_id"],
        {field["custom_id"]: "the cat\u202e jumps\x1b[2J\x00 onto\u200b the table"},
        user=world.other,
    )
    assert not (await submit.response(timeout=5)).ephemeral
    job = await world.job_final((await world.latest_job(world.other)).id)
    assert job.state is JobState.DONE
    [extend] = [r for r in bot.simulator.requests if r.route == "extend_generate"]
    assert extend.json["prompt"] == "the cat jumps onto the table"


# --- files that lie ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        pytest.param(("cat.png", zip_bytes(), "image/png"), "whatever its name says", id="zip"),
        pytest.param(
            ("cat.png", b"<!doctype html><html><body>hi</body></html>", "text/html"),
            "whatever its name says",
            id="html",
        ),
        pytest.param(
            ("dance.png", animated("GIF"), "image/png"),
            "whatever its name says",
            id="animated-gif-named-png",
        ),
        pytest.param(("cat.jpg", noisy("JPEG")[:6000], "image/jpeg"), "damaged", id="cut-jpeg"),
        pytest.param(("cat.png", noisy("PNG")[:6000], "image/png"), "damaged", id="cut-png"),
        pytest.param(("cat.webp", noisy("WEBP")[:3000], "image/webp"), "damaged", id="cut-webp"),
        pytest.param(("bomb.png", png_bomb(), "image/png"), "too many pixels", id="bomb"),
        pytest.param(
            ("big.png", png_bomb(9000, 9000), "image/png"), "81 megapixels", id="over-50-mp"
        ),
        pytest.param(
            ("moving.webp", animated("WEBP"), "image/webp"), "animated WebP", id="animated-webp"
        ),
        pytest.param(
            ("moving.png", animated("PNG"), "image/png"), "animated PNG", id="animated-png"
        ),
    ],
)
async def test_file_that_lies_is_refused(world, upload, expected):
    await world.start_bot()
    handle = await world.video(image=upload)
    text = await refusal(world, handle)
    assert upload[0] in text and expected in text, text
    # Each refusal says what to attach instead.
    assert "attach" in text or "export" in text


async def test_empty_file_is_refused_before_download(world):
    await world.start_bot()
    handle = await world.video(image=("cat.png", b"", "image/png"))
    text = await refusal(world, handle)
    assert "cat.png" in text and "empty (0 bytes)" in text and "attach" in text
    assert world.fake.file_downloads == []


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        pytest.param(
            ("clip.mp4", png_bytes(), "video/mp4"), "whatever its name says", id="png-named-mp4"
        ),
        pytest.param(("cat.png", png_bytes(), "image/png"), "is not a video", id="png"),
        pytest.param(("clip.mp4", b"", "video/mp4"), "MP4, MOV or WebM", id="empty"),
    ],
)
async def test_image_sent_as_extend_video_is_refused(world, upload, expected):
    await world.start_bot()
    handle = await world.fake.invoke(
        "extend",
        user=world.member,
        channel=world.channel,
        options={"prompt": "and then it rains"},
        attachments={"video": upload},
    )
    text = await refusal(world, handle)
    assert upload[0] in text and expected in text, text


@pytest.mark.parametrize(
    ("command", "attachments"),
    [
        pytest.param("video", {"image": ("cat.png", png_bytes(), "image/png")}, id="video"),
        pytest.param("extend", {"video": ("clip.mp4", sample_video(), "video/mp4")}, id="extend"),
        pytest.param(
            "transition",
            {
                "first": ("cat.png", png_bytes(), "image/png"),
                "last": ("dog.png", png_bytes(80, 60), "image/png"),
            },
            id="transition",
        ),
    ],
)
async def test_an_attachment_download_that_hangs_is_refused_within_its_time_limit(
    world, monkeypatch, command, attachments
):
    bot = await world.start_bot()
    # The limit (60 s in use) is shortened below the bot's defer point: the refusal is the
    # interaction's immediate ephemeral answer, not a "thinking…" left forever. Set on the
    # module the bot loaded (loading an extension makes a new module object).
    monkeypatch.setattr(bot.extensions["cogs.generate"], "ATTACHMENT_TIMEOUT", 0.3)
    world.fake.hang_attachments(5.0)
    handle = await world.fake.invoke(
        command,
        user=world.member,
        channel=world.channel,
        options={"prompt": "a cat in the rain"},
        attachments=attachments,
    )
    text = await refusal(world, handle)
    [first, *_] = attachments.values()
    assert f"could not download `{first[0]}` from Discord" in text, text
    assert "attach it again" in text
    assert world.fake.attachments_hung == 1 and world.fake.file_downloads == []


# --- commands from DMs, other members' ids, pages past the end --------------------------------


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("video", {"prompt": "a cat", "image": ("cat.png", png_bytes(), "image/png")}),
        ("jobs", {}),
        ("cancel", {"job": 1}),
        ("quota", {}),
        ("status", {}),
    ],
)
async def test_command_from_a_dm_is_refused_clearly(world, command, options):
    # Synced globally, as in production: Discord's client hides guild-only commands in DMs,
    # but an older client or a stale definition still sends them.
    await world.start_bot(dev_guild_id=None)
    dm = world.fake.dm_channel(world.member)
    handle = await world.fake.invoke(command, user=world.member, channel=dm, options=options)
    response = await handle.response(timeout=5)
    assert response.accepted and response.type == 4 and response.ephemeral
    assert response.content == "This command works in servers only."
    assert world.fake.file_downloads == []
    assert not [r for r in world.bot.simulator.requests if r.route in PIXVERSE_WORK]


async def test_another_members_job_id_in_cancel_reveals_nothing(world):
    bot = await world.start_bot()
    theirs = await world.video(user=world.other, prompt="their secret dragon")
    assert not (await theirs.response(timeout=5)).ephemeral
    job = await world.latest_job(world.other)
    missing = job.id + 1000

    about_theirs = await (await run(world, "cancel", job=job.id)).response(timeout=5)
    about_none = await (await run(world, "cancel", job=missing)).response(timeout=5)
    assert about_theirs.ephemeral and about_none.ephemeral
    # The same answer as for an id that does not exist: no state, prompt or owner.
    assert about_theirs.content == about_none.content.replace(f"#{missing}", f"#{job.id}")
    assert "dragon" not in about_theirs.content and "<@" not in about_theirs.content
    assert "not yours" in about_theirs.content and "/jobs" in about_theirs.content
    assert (await bot.store.jobs.get(job.id)).state is not JobState.CANCELLED


async def test_jobs_page_past_the_end_says_so(world):
    await world.start_bot()
    _, _ = await finished_video(world, prompt="the only job")
    response = await (await run(world, "jobs", page=7)).response(timeout=5)
    assert response.ephemeral
    assert "There is no page 7" in response.content and "1 page(s)" in response.content
    [embed] = response.data["embeds"]
    assert "the only job" in embed["description"]
    assert "Page 1 of 1" in embed["footer"]["text"]


# --- unknown or forged buttons ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("custom_id", "expected"),
    [
        pytest.param("pixbot:reroll:424242", "Job #424242 no longer exists", id="reroll-gone"),
        pytest.param("pixbot:extend:424242", "Job #424242 no longer exists", id="extend-gone"),
        pytest.param("pixbot:sound:424242", "Job #424242 no longer exists", id="sound-gone"),
        pytest.param("pixbot:sound:abc", "no longer exists", id="sound-malformed"),
        pytest.param(f"pixbot:reroll:{2**70}", "no longer exists", id="id-past-sqlite"),
        pytest.param("pixbot:reroll:abc", "no longer exists", id="malformed"),
        pytest.param("pixbot:reroll:", "no longer exists", id="no-id"),
        pytest.param("pixbot:explode:1", "no longer exists", id="unknown-action"),
        pytest.param("someone-elses:button", "no longer exists", id="never-made"),
    ],
)
async def test_unknown_or_forged_button_is_answered_ephemerally(world, custom_id, expected):
    await world.start_bot()
    message = button_message(world, custom_id)
    click = await world.fake.click(message, custom_id, user=world.other)
    response = await click.response(timeout=5)
    assert response.accepted and response.type == 4 and response.ephemeral, response
    assert expected in response.content and "nothing was charged" in response.content
    assert len(click.callbacks) == 1
    await assert_nothing_happened(world, world.other)


@pytest.mark.parametrize(
    ("custom_id", "values", "expected"),
    [
        pytest.param(
            "pixbot:extend-modal:999999",
            {"prompt": "and then"},
            "Job #999999 no longer exists",
            id="extend-gone",
        ),
        pytest.param(
            "pixbot:sound-modal:999999",
            {"sound": "rain"},
            "Job #999999 no longer exists",
            id="sound-gone",
        ),
        pytest.param(
            "pixbot:sound-modal:abc", {"sound": "rain"}, "no longer exists", id="malformed"
        ),
        pytest.param(
            "pixbot:extend-modal:", {"prompt": "and then"}, "no longer exists", id="no-id"
        ),
        pytest.param(
            f"pixbot:extend-modal:{2**70}", {"prompt": "x"}, "no longer exists", id="id-past-sqlite"
        ),
        pytest.param("pixbot:sound-modal:1", {}, "Job #1 no longer exists", id="empty-form"),
    ],
)
async def test_forged_or_stale_form_is_answered_ephemerally(world, custom_id, values, expected):
    # A form the bot never opened (or opened for a job that is gone): the same answer as a
    # button's, never "This interaction failed".
    await world.start_bot()
    submit = await world.fake.submit_modal(
        custom_id, values, user=world.other, channel=world.channel, forged=True
    )
    response = await submit.response(timeout=5)
    assert response.accepted and response.type == 4 and response.ephemeral, response
    assert expected in response.content and "nothing was charged" in response.content
    assert len(submit.callbacks) == 1
    await assert_nothing_happened(world, world.other)
    assert not world.fake.messages_in(world.channel, include_ephemeral=False)


async def test_buttons_of_a_result_after_its_database_was_lost_are_answered(world):
    await world.start_bot()
    source, message = await finished_video(world)
    # Forms opened before the loss are submitted after it.
    forms = {}
    for action, field in (("extend", "prompt"), ("sound", "sound")):
        click = await world.fake.click(message, f"pixbot:{action}:{source.id}", user=world.other)
        forms[(await click.wait_modal(timeout=5))["custom_id"]] = {field: "and then"}
    await world.stop_bot()
    # The result message and its buttons outlive the database they pointed into.
    await world.start_bot(database_path=world.tmp_path / "new" / "bot.sqlite3")
    for action in ("reroll", "extend", "sound"):
        click = await world.fake.click(message, f"pixbot:{action}:{source.id}", user=world.other)
        response = await click.response(timeout=5)
        assert response.ephemeral and f"Job #{source.id} no longer exists" in response.content
        assert click.modal is None
    for custom_id, values in forms.items():
        submit = await world.fake.submit_modal(custom_id, values, user=world.other)
        response = await submit.response(timeout=5)
        assert response.ephemeral and f"Job #{source.id} no longer exists" in response.content
    await assert_nothing_happened(world, world.other)


# --- Discord 429 and 5xx on the replies -------------------------------------------------------


def bad_file() -> tuple[str, bytes, str]:
    return ("cat.png", b"not a picture at all" * 10, "image/png")


@pytest.mark.parametrize(
    "fault",
    [pytest.param(("429", 0.3), id="429"), pytest.param(("status", 503), id="503")],
)
async def test_ephemeral_refusal_hit_by_a_discord_error_still_arrives(world, fault):
    await world.start_bot()
    kind, arg = fault
    if kind == "429":
        rule = world.fake.rate_limit("POST", CALLBACK, retry_after=arg)
    else:
        rule = world.fake.inject_fault("POST", CALLBACK, "status", status=arg)
    handle = await world.video(image=bad_file())
    text = await refusal(world, handle)
    assert rule.hits == 1
    assert "whatever its name says" in text


@pytest.mark.parametrize(
    "fault",
    [pytest.param(("429", 0.3), id="429"), pytest.param(("status", 503), id="503")],
)
async def test_followup_refusal_hit_by_a_discord_error_still_arrives(world, monkeypatch, fault):
    # The image takes "long" to prepare, so the bot defers first and the refusal is a followup.
    monkeypatch.setattr("bot.ui.intake.DEFER_AFTER", 0.001)
    await world.start_bot()
    kind, arg = fault
    if kind == "429":
        rule = world.fake.rate_limit("POST", FOLLOWUP, retry_after=arg)
    else:
        rule = world.fake.inject_fault("POST", FOLLOWUP, "status", status=arg)
    handle = await world.video(image=bad_file())
    [followup] = await handle.wait_followups(1, timeout=8)
    assert rule.hits == 1
    assert followup.ephemeral and "whatever its name says" in followup.content
    assert handle.original is not None and handle.original.deleted
    await assert_nothing_happened(world, world.member)


@pytest.mark.parametrize("arrived", [False, True], ids=["lost-on-the-way", "answer-lost"])
async def test_ephemeral_refusal_whose_connection_drops_arrives_once(world, arrived):
    # discord.py does not retry a dropped connection; the bot tries once more. When the
    # first attempt did arrive, the second is refused as already acknowledged: one answer.
    await world.start_bot()
    rule = world.fake.inject_fault("POST", CALLBACK, "drop", after_apply=arrived)
    handle = await world.video(image=bad_file())
    text = await refusal(world, handle)
    assert rule.hits == 1 and "whatever its name says" in text
    await asyncio.sleep(0.5)  # any second answer would have come by now
    assert len([c for c in handle.callbacks if c.accepted]) == 1
    assert handle.followups == []


async def test_followup_refusal_whose_connection_drops_still_arrives(world, monkeypatch):
    monkeypatch.setattr("bot.ui.intake.DEFER_AFTER", 0.001)
    await world.start_bot()
    rule = world.fake.inject_fault("POST", FOLLOWUP, "drop")
    handle = await world.video(image=bad_file())
    [followup] = await handle.wait_followups(1, timeout=8)
    assert rule.hits == 1
    assert followup.ephemeral and "whatever its name says" in followup.content
    await assert_nothing_happened(world, world.member)


@pytest.mark.parametrize(
    "fault",
    [pytest.param(("429", 0.3), id="429"), pytest.param(("status", 503), id="503")],
)
async def test_accepted_job_whose_reply_hit_a_discord_error_is_shown_and_charged_once(world, fault):
    bot = await world.start_bot()
    kind, arg = fault
    if kind == "429":
        rule = world.fake.rate_limit("POST", CALLBACK, retry_after=arg)
    else:
        rule = world.fake.inject_fault("POST", CALLBACK, "status", status=arg)
    handle = await world.video()
    response = await handle.response(timeout=8)
    assert response.accepted and not response.ephemeral and response.delay < 3
    job = await world.job_final((await world.latest_job()).id)
    assert rule.hits == 1 and job.state is JobState.DONE
    # The job waited for its reply: the reply is its status message and shows the video. (A
    # job that finished first found no message, posted its result as a new one and left the
    # late reply showing "Queued".)
    assert len([c for c in handle.callbacks if c.accepted]) == 1
    assert job.status_message_id == handle.original.id
    await world.until(lambda: "Done" in status_text(handle.original) and handle.original.files)
    assert world.fake.messages_in(world.channel, include_ephemeral=False) == [handle.original]
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 1
    assert (await bot.store.ledger.quota(world.guild.id, world.member.id)).used_today == 45
    assert len(bot.simulator.generate_requests) == 1


@pytest.mark.parametrize("arrived", [False, True], ids=["lost-on-the-way", "answer-lost"])
async def test_accepted_job_whose_reply_connection_drops_is_shown_and_charged_once(world, arrived):
    # The status message may or may not have arrived: the bot asks again, and keeps the job
    # exactly when the member sees it (a second callback after an arrived one is refused as
    # already acknowledged).
    bot = await world.start_bot()
    rule = world.fake.inject_fault("POST", CALLBACK, "drop", after_apply=arrived)
    handle = await world.video()
    response = await handle.response(timeout=8)
    assert response.accepted and not response.ephemeral
    job = await world.job_final((await world.latest_job()).id)
    assert rule.hits == 1 and job.state is JobState.DONE
    assert job.status_message_id == handle.original.id
    assert len([c for c in handle.callbacks if c.accepted]) == 1
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 1
    assert (await bot.store.ledger.quota(world.guild.id, world.member.id)).used_today == 45
    assert len(bot.simulator.generate_requests) == 1
    await world.until(lambda: "Done" in status_text(handle.original))
