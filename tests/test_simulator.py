"""The PixVerse simulator, driven over real HTTP on a loopback port."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib
from json import dumps, loads
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.pixverse.catalogue import shipped_catalogue
from bot.pixverse.rules import Combination, Motion, Quality, RuleViolation
from bot.simulator import (
    MODERATION_MARKER,
    NO_HD,
    SimState,
    Simulator,
    SimulatorConfig,
)
from bot.simulator.__main__ import build_config, parse_args
from bot.simulator.params import Kind

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key"
START = 100_000
NO_HD_TEMPLATE = 111_111_111_111_111
PLAIN_TEMPLATE = 222_222_222_222_222


# -- helpers -------------------------------------------------------------------------------


def png(width: int = 64, height: int = 48, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, format=fmt)
    return out.getvalue()


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


MP4 = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2") + box(b"mdat", bytes(64))
WEBM = b"\x1a\x45\xdf\xa3" + bytes(64)
WAV = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + bytes(32)


def headers(key: str | None = KEY, trace: str | None = "fresh") -> dict[str, str]:
    out = {}
    if key is not None:
        out["API-KEY"] = key
    if trace == "fresh":
        out["Ai-trace-id"] = str(uuid.uuid4())
    elif trace is not None:
        out["Ai-trace-id"] = trace
    return out


def i2v(img_id: Any, **extra: Any) -> dict[str, Any]:
    body = {"img_id": img_id, "prompt": "a cat surfing", "model": "v4.5", "duration": 5}
    body["quality"] = "540p"
    body.update(extra)
    return body


class Api:
    """A thin test client: every call returns (HTTP status, parsed body or text)."""

    def __init__(self, session: aiohttp.ClientSession, sim: Simulator) -> None:
        self.session = session
        self.sim = sim
        self.base = f"{sim.base_url}/openapi/v2"

    async def _answer(self, response: aiohttp.ClientResponse) -> tuple[int, Any]:
        text = await response.text()
        try:
            return response.status, loads(text)
        except ValueError:
            return response.status, text

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        hdrs = kw.pop("hdrs", None) or headers(**kw)
        async with self.session.get(self.base + path, headers=hdrs) as response:
            return await self._answer(response)

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        hdrs = kw.pop("hdrs", None) or headers(**kw)
        async with self.session.post(self.base + path, headers=hdrs, json=body) as response:
            return await self._answer(response)

    async def upload(
        self, path: str, field: str, data: bytes | str, filename: str = "x.png", **kw: Any
    ) -> tuple[int, Any]:
        form = aiohttp.FormData()
        if isinstance(data, str):
            form.add_field(field, data)
        else:
            # A stream, not bytes: aiohttp warns that big raw bytes would block the loop.
            form.add_field(
                field, io.BytesIO(data), filename=filename, content_type="application/octet-stream"
            )
        async with self.session.post(self.base + path, headers=headers(**kw), data=form) as resp:
            return await self._answer(resp)

    async def image(self, data: bytes | None = None, **kw: Any) -> int:
        status, body = await self.upload("/image/upload", "image", data or png(), **kw)
        assert status == 200 and body["ErrCode"] == 0, body
        return body["Resp"]["img_id"]

    async def generate(self, kind: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        status, answer = await self.post(f"/video/{kind}/generate", body, **kw)
        assert status == 200, answer
        return answer

    async def video(self, **extra: Any) -> int:
        answer = await self.generate("img", i2v(await self.image(), **extra))
        assert answer["ErrCode"] == 0, answer
        return answer["Resp"]["video_id"]

    async def result(self, video_id: int, **kw: Any) -> dict[str, Any]:
        status, answer = await self.get(f"/video/result/{video_id}", **kw)
        assert status == 200 and answer["ErrCode"] == 0, answer
        return answer["Resp"]

    async def wait(self, video_id: int, polls: int = 100) -> dict[str, Any]:
        """Poll every 50 ms until the job leaves status 5 (at most ``polls`` times)."""
        for _ in range(polls):
            resp = await self.result(video_id)
            if resp["status"] != 5:
                return resp
            await asyncio.sleep(0.05)
        raise AssertionError(f"video {video_id} still generating")

    async def balance(self, **kw: Any) -> int:
        status, answer = await self.get("/account/balance", **kw)
        assert status == 200 and answer["ErrCode"] == 0, answer
        return answer["Resp"]["credit_monthly"] + answer["Resp"]["credit_package"]


def err(answer: Any) -> int:
    return answer["ErrCode"]


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(
        gen_time=0.2,
        seed=7,
        balance=START,
        activated_templates={NO_HD_TEMPLATE: NO_HD, PLAIN_TEMPLATE: frozenset()},
    )


@pytest.fixture
async def sim(config: SimulatorConfig):
    async with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
async def api(sim: Simulator):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield Api(session, sim)


# -- the happy path --------------------------------------------------------------------


async def test_upload_generate_poll_and_download_a_real_mp4(api: Api):
    img_id = await api.image(png(640, 360))
    answer = await api.generate("img", i2v(img_id, seed=42))
    assert answer == {
        "ErrCode": 0,
        "ErrMsg": "success",
        "Resp": {"video_id": answer["Resp"]["video_id"]},
    }
    video_id = answer["Resp"]["video_id"]
    assert isinstance(video_id, int) and len(str(video_id)) == 15

    first = await api.result(video_id)
    assert first["status"] == 5 and first["url"] == ""
    done = await api.wait(video_id)
    assert done["status"] == 1
    assert (done["outputWidth"], done["outputHeight"]) == (960, 540)  # follows the 16:9 image
    assert done["seed"] == 42 and done["credits"] == 45 and done["prompt"] == "a cat surfing"
    for stamp in (done["create_time"], done["modify_time"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert done["url"].startswith(api.sim.base_url + "/media/")
    assert done["url"].endswith("_seed42.mp4")

    async with api.session.get(done["url"]) as response:
        data = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/mp4"
        assert response.content_length == len(data)
    assert data[4:8] == b"ftyp"
    assert len(data) < 50_000


async def test_balance_is_charged_at_submit(api: Api):
    assert await api.balance() == START
    await api.video(quality="720p")
    assert await api.balance() == START - 60  # 720p 5 s normal (docs/pixverse.md, "Credits")
    assert api.sim.balance == START - 60


async def test_text_to_video_follows_the_aspect_ratio(api: Api):
    body = {"prompt": "a lighthouse", "model": "v5", "duration": 8, "quality": "1080p"}
    answer = await api.generate("text", {**body, "aspect_ratio": "9:16"})
    assert err(answer) == 0
    resp = await api.result(answer["Resp"]["video_id"])
    assert (resp["outputWidth"], resp["outputHeight"]) == (1080, 1920)
    assert resp["credits"] == 240 and resp["aspect_ratio"] == "9:16"


async def test_served_upload_url_returns_the_uploaded_bytes(api: Api):
    data = png()
    _, answer = await api.upload("/image/upload", "image", data)
    async with api.session.get(answer["Resp"]["img_url"]) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/png"
        assert await response.read() == data


# -- headers -------------------------------------------------------------------------------


async def test_any_non_empty_key_is_accepted_when_none_is_configured(api: Api):
    assert await api.balance(key="whatever") == START


@pytest.mark.parametrize("key", [None, ""])
async def test_missing_key_is_refused_with_400012(api: Api, key: str | None):
    status, answer = await api.get("/account/balance", key=key)
    assert status == 200
    assert answer["ErrCode"] == 400012 and answer["ErrMsg"] == "Invalid API-KEY"


async def test_wrong_key_is_refused_when_one_is_configured(api: Api):
    api.sim.config.api_key = "the-real-key"
    status, answer = await api.get("/account/balance", key="guess")
    assert (status, err(answer)) == (200, 400012)
    assert await api.balance(key="the-real-key") == START


async def test_missing_trace_id_is_refused_with_400011(api: Api):
    status, answer = await api.get("/account/balance", trace=None)
    assert status == 200 and err(answer) == 400011
    assert answer["ErrMsg"] == "Ai-trace-id header is required"


async def test_trace_header_name_is_case_insensitive(api: Api):
    hdrs = {"API-KEY": KEY, "AI-TRACE-ID": str(uuid.uuid4())}
    _, answer = await api.get("/account/balance", hdrs=hdrs)
    assert err(answer) == 0


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"img_id": "QUOTED"}, 400013),
        ({"model": "v9"}, 400013),
        ({"model": 4}, 400013),
        ({"quality": "4k"}, 400013),
        ({"motion_mode": "slow"}, 400013),
        ({"style": "oil_paint"}, 400013),
        ({"duration": "5"}, 400013),
        ({"duration": 5.0}, 400013),
        ({"seed": -1}, 400013),
        ({"seed": 2_147_483_648}, 400013),
        ({"seed": "7"}, 400013),
        ({"seed": True}, 400013),
        ({"template_id": "1"}, 400013),
        ({"camera_movement": "barrel_roll"}, 400013),
        ({"water_mark": "yes"}, 400013),
        ({"prompt": ""}, 400011),
        ({"prompt": "   "}, 400011),
        ({"prompt": None}, 400011),
        ({"model": None}, 400011),
        ({"quality": ""}, 400011),
        ({"img_id": None}, 400011),
        ({"prompt": "x" * 2049}, 400018),
        ({"negative_prompt": "x" * 2049}, 400019),
        ({"duration": 6}, 400017),
        ({"camera_movement": "zoom_in", "model": "v5"}, 400017),
        ({"img_id": 999}, 400032),
    ],
)
async def test_bad_image_to_video_parameters_get_pixverse_codes(api: Api, change, code):
    body = i2v(await api.image())
    if change.get("img_id") == "QUOTED":
        change = {"img_id": str(body["img_id"])}
    body.update(change)
    answer = await api.generate("img", body)
    assert err(answer) == code, answer
    assert api.sim.jobs == {}


async def test_longest_prompts_are_accepted(api: Api):
    answer = await api.generate(
        "img", i2v(await api.image(), prompt="x" * 2048, negative_prompt="y" * 2048)
    )
    assert err(answer) == 0


@pytest.mark.parametrize(
    ("change", "code"),
    [({"aspect_ratio": "2:1"}, 400013), ({"aspect_ratio": None}, 400011)],
)
async def test_text_to_video_needs_a_known_aspect_ratio(api: Api, change, code):
    body = {"prompt": "p", "model": "v4", "duration": 5, "quality": "360p", "aspect_ratio": "1:1"}
    body.update(change)
    assert err(await api.generate("text", body)) == code


async def test_a_body_that_is_not_json_is_a_binding_error(api: Api):
    async with api.session.post(
        api.base + "/video/img/generate", headers=headers(), data=b"{not json"
    ) as response:
        assert (await response.json())["ErrCode"] == 400013


async def test_an_image_of_another_key_is_an_invalid_image_id(api: Api):
    img_id = await api.image(key="someone-else")
    assert err(await api.generate("img", i2v(img_id))) == 400032


@pytest.mark.parametrize(
    ("model", "quality", "duration", "motion"),
    [
        ("v4.5", "1080p", 8, "normal"),
        ("v4", "540p", 8, "fast"),
        ("v5", "540p", 5, "fast"),
        ("v3.5", "1080p", 5, "fast"),
    ],
)
async def test_combination_rules_give_400017_with_the_rule_message(
    api: Api, model, quality, duration, motion
):
    body = i2v(await api.image(), model=model, quality=quality, duration=duration)
    body["motion_mode"] = motion
    answer = await api.generate("img", body)
    assert err(answer) == 400017
    with pytest.raises(RuleViolation) as rule:
        shipped_catalogue().check(Combination(model, Quality(quality), duration, Motion(motion)))
    assert answer["ErrMsg"] == str(rule.value)


async def test_v5_allows_1080p_for_8_seconds(api: Api):
    answer = await api.generate(
        "img", i2v(await api.image(), model="v5", quality="1080p", duration=8)
    )
    assert err(answer) == 0


async def test_unactivated_template_gives_500070(api: Api):
    answer = await api.generate("img", i2v(await api.image(), template_id=123))
    assert err(answer) == 500070


async def test_template_without_hd_refuses_720p_with_500071(api: Api):
    img_id = await api.image()
    answer = await api.generate("img", i2v(img_id, template_id=NO_HD_TEMPLATE, quality="720p"))
    assert err(answer) == 500071
    ok = await api.generate("img", i2v(img_id, template_id=NO_HD_TEMPLATE, quality="540p"))
    assert err(ok) == 0
    hd = await api.generate("img", i2v(img_id, template_id=PLAIN_TEMPLATE, quality="1080p"))
    assert err(hd) == 0


# -- replay cache --------------------------------------------------------------------------


async def test_same_trace_id_replays_the_answer_without_a_new_job_or_charge(api: Api):
    body = i2v(await api.image())
    trace = str(uuid.uuid4())
    first = await api.generate("img", body, trace=trace)
    again = await api.generate("img", body, trace=trace)
    assert first == again and err(first) == 0
    assert len(api.sim.jobs) == 1
    assert await api.balance() == START - 45
    fresh = await api.generate("img", body)
    assert fresh["Resp"]["video_id"] != first["Resp"]["video_id"]
    assert len(api.sim.jobs) == 2


async def test_replay_is_per_api_key(api: Api):
    trace = str(uuid.uuid4())
    mine = await api.generate("img", i2v(await api.image()), trace=trace)
    other_image = await api.image(key="other")
    theirs = await api.generate("img", i2v(other_image), key="other", trace=trace)
    assert mine["Resp"]["video_id"] != theirs["Resp"]["video_id"]


async def test_refused_answers_are_not_replayed(api: Api):
    trace = str(uuid.uuid4())
    body = i2v(await api.image())
    refused = await api.generate("img", {**body, "quality": "8k"}, trace=trace)
    assert err(refused) == 400013
    accepted = await api.generate("img", body, trace=trace)
    assert err(accepted) == 0


async def test_a_lost_answer_is_recovered_by_retrying_with_the_same_trace_id(api: Api):
    body = i2v(await api.image())
    trace = str(uuid.uuid4())
    api.sim.inject_fault("img_generate", "drop")
    with pytest.raises(aiohttp.ClientError):
        await api.generate("img", body, trace=trace)
    assert len(api.sim.jobs) == 1  # served, answer lost
    retried = await api.generate("img", body, trace=trace)
    assert retried["Resp"]["video_id"] == next(iter(api.sim.jobs))
    assert await api.balance() == START - 45


# -- outcomes and refunds ------------------------------------------------------------------


async def test_moderation_marker_ends_in_status_7_and_refunds(api: Api):
    video_id = await api.video(prompt=f"a cat {MODERATION_MARKER}")
    assert await api.balance() == START - 45
    done = await api.wait(video_id)
    assert done["status"] == 7 and done["url"] == ""
    assert await api.balance() == START


async def test_failure_rate_one_ends_in_status_8_and_refunds(api: Api):
    api.sim.config.failure_rate = 1.0
    video_id = await api.video()
    assert (await api.wait(video_id))["status"] == 8
    assert await api.balance() == START


async def test_failures_are_reproducible_with_a_seed():
    def outcomes() -> list[int]:
        state = SimState(SimulatorConfig(seed=3, failure_rate=0.5, gen_time=0, max_concurrent=99))
        image = state.upload_image(KEY, png())
        body = i2v(image.id)
        return [state.submit(KEY, state.parse(Kind.IMAGE, body), str(n)).outcome for n in range(20)]

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {1, 8}


async def test_insufficient_balance_gives_500090(api: Api):
    img_id = await api.image()
    api.sim.set_balance(40)
    answer = await api.generate("img", i2v(img_id))
    assert err(answer) == 500090
    assert api.sim.jobs == {}


async def test_monthly_credits_are_spent_first_and_refunded_to_their_pool(api: Api):
    api.sim.config.monthly_credits = 30
    api.sim.config.failure_rate = 1.0
    video_id = await api.video()
    _, answer = await api.get("/account/balance")
    assert (answer["Resp"]["credit_monthly"], answer["Resp"]["credit_package"]) == (0, START - 15)
    await api.wait(video_id)
    _, answer = await api.get("/account/balance")
    assert (answer["Resp"]["credit_monthly"], answer["Resp"]["credit_package"]) == (30, START)


async def test_concurrency_limit_gives_500044_until_a_job_ends(api: Api):
    api.sim.config.max_concurrent = 2
    api.sim.config.gen_time = 60
    img_id = await api.image()
    first = (await api.generate("img", i2v(img_id)))["Resp"]["video_id"]
    await api.generate("img", i2v(img_id))
    refused = await api.generate("img", i2v(img_id))
    assert err(refused) == 500044
    assert await api.balance() == START - 90  # the refused one is not charged
    api.sim.finish_now(first)
    assert err(await api.generate("img", i2v(img_id))) == 0


def test_the_most_jobs_generating_at_once_is_recorded():
    now = [1000.0]
    state = SimState(SimulatorConfig(gen_time=10, max_concurrent=50), clock=lambda: now[0])
    image = state.upload_image(KEY, png())

    def submit(n: int) -> None:
        state.submit(KEY, state.parse(Kind.IMAGE, i2v(image.id)), f"trace-{n}")

    assert state.peak_generating == 0
    for n in range(3):
        submit(n)
    assert state.peak_generating == 3
    now[0] += 11  # all three done
    submit(3)
    submit(4)
    assert state.peak_generating == 3  # two at once now; the peak stays
    for n in range(5, 7):
        submit(n)
    assert state.peak_generating == 4


async def test_concurrency_is_counted_per_key(api: Api):
    api.sim.config.max_concurrent = 1
    api.sim.config.gen_time = 60
    await api.video()
    assert err(await api.generate("img", i2v(await api.image(key="b")), key="b")) == 0


async def test_force_status_and_finish_now(api: Api):
    api.sim.config.gen_time = 60
    video_id = await api.video()
    api.sim.force_status(video_id, 8)
    assert (await api.result(video_id))["status"] == 8
    assert await api.balance() == START
    other = await api.video()
    api.sim.finish_now(other)
    assert api.sim.status(other) == 1
    assert (await api.result(other))["url"]


async def test_status_is_computed_from_the_clock_without_tasks():
    now = [1000.0]
    state = SimState(SimulatorConfig(gen_time=10, max_concurrent=5000), clock=lambda: now[0])
    image = state.upload_image(KEY, png())
    jobs = [state.submit(KEY, state.parse(Kind.IMAGE, i2v(image.id)), str(n)) for n in range(2000)]
    assert all(job.status(now[0]) == 5 for job in jobs)
    now[0] += 10
    assert all(job.status(now[0]) == 1 for job in jobs)
    assert state.generating(state.account(KEY)) == 0


async def test_unknown_video_id_gives_500008(api: Api):
    _, answer = await api.get("/video/result/400000000000999")
    assert err(answer) == 500008
    _, answer = await api.get("/video/result/abc")
    assert err(answer) == 400013


async def test_a_job_of_another_key_is_not_found(api: Api):
    video_id = await api.video()
    _, answer = await api.get(f"/video/result/{video_id}", key="intruder")
    assert err(answer) == 500008


async def test_unknown_media_is_404(api: Api):
    async with api.session.get(api.sim.base_url + "/media/nothing_seed1.mp4") as response:
        assert response.status == 404


# -- extend --------------------------------------------------------------------------------


def extend_body(**ids: Any) -> dict[str, Any]:
    return {"prompt": "and then", "model": "v4.5", "duration": 5, "quality": "540p", **ids}


async def test_extend_a_finished_video_by_source_video_id(api: Api):
    source = await api.video()
    await api.wait(source)
    answer = await api.generate("extend", extend_body(source_video_id=source, seed=9))
    assert err(answer) == 0
    done = await api.wait(answer["Resp"]["video_id"])
    assert done["status"] == 1 and done["seed"] == 9


async def test_extend_needs_a_finished_source_of_this_key(api: Api):
    api.sim.config.gen_time = 60
    unfinished = await api.video()
    assert err(await api.generate("extend", extend_body(source_video_id=unfinished))) == 400017
    assert err(await api.generate("extend", extend_body(source_video_id=12345))) == 400017
    api.sim.finish_now(unfinished)
    answer = await api.generate("extend", extend_body(source_video_id=unfinished), key="other")
    assert err(answer) == 400017


async def test_extend_an_uploaded_video_by_video_media_id(api: Api):
    _, uploaded = await api.upload("/media/upload", "file", MP4, filename="clip.mp4")
    media = uploaded["Resp"]
    assert media["media_type"] == "video" and media["url"].startswith(api.sim.base_url)
    answer = await api.generate("extend", extend_body(video_media_id=media["media_id"]))
    assert err(answer) == 0


@pytest.mark.parametrize("both", [True, False])
async def test_extend_needs_exactly_one_source(api: Api, both: bool):
    source = await api.video()
    await api.wait(source)
    _, uploaded = await api.upload("/media/upload", "file", MP4, filename="clip.mp4")
    ids = {"source_video_id": source, "video_media_id": uploaded["Resp"]["media_id"]}
    answer = await api.generate("extend", extend_body(**(ids if both else {})))
    assert err(answer) == 400017
    assert "exactly one" in answer["ErrMsg"]


async def test_extend_refuses_an_audio_media(api: Api):
    _, uploaded = await api.upload("/media/upload", "file", WAV, filename="a.wav")
    assert uploaded["Resp"]["media_type"] == "audio"
    answer = await api.generate("extend", extend_body(video_media_id=uploaded["Resp"]["media_id"]))
    assert err(answer) == 400017
    assert answer["ErrMsg"] == "Invalid media_type: not a video resource"


async def test_extend_refuses_a_quoted_source_id(api: Api):
    answer = await api.generate("extend", extend_body(source_video_id="400000000000001"))
    assert err(answer) == 400013


# -- text to video and transitions ------------------------------------------------------------


def t2v(**extra: Any) -> dict[str, Any]:
    body = {"prompt": "a lighthouse", "model": "v4.5", "duration": 5, "quality": "540p"}
    return {**body, "aspect_ratio": "16:9", **extra}


async def test_text_to_video_refuses_a_ratio_the_model_lacks_as_the_catalogue_says(api: Api):
    answer = await api.generate("text", t2v(aspect_ratio="21:9"))
    assert err(answer) == 400017
    with pytest.raises(RuleViolation) as rule:
        shipped_catalogue().check_aspect_ratio("v4.5", "21:9")
    assert answer["ErrMsg"] == str(rule.value)
    assert await api.balance() == START


async def test_text_to_video_makes_21_9_on_v6(api: Api):
    answer = await api.generate("text", t2v(model="v6", aspect_ratio="21:9", quality="360p"))
    assert err(answer) == 0
    done = await api.wait(answer["Resp"]["video_id"])
    assert (done["outputWidth"], done["outputHeight"]) == (840, 360)
    assert done["aspect_ratio"] == "21:9" and done["credits"] == 25


def frames(first: Any, last: Any, **extra: Any) -> dict[str, Any]:
    body = {"prompt": "day to night", "model": "v4.5", "duration": 5, "quality": "540p"}
    return {**body, "first_frame_img": first, "last_frame_img": last, **extra}


async def test_transition_from_two_uploaded_images_follows_the_first(api: Api):
    first = await api.image(png(480, 640))
    last = await api.image(png(640, 480))
    answer = await api.generate("transition", frames(first, last, seed=3))
    assert err(answer) == 0
    done = await api.wait(answer["Resp"]["video_id"])
    assert done["status"] == 1 and done["seed"] == 3 and done["credits"] == 45
    assert (done["outputWidth"], done["outputHeight"]) == (540, 720)  # 3:4, as the first
    assert await api.balance() == START - 45
    [request] = api.sim.generate_requests
    assert request.route == "transition_generate"


@pytest.mark.parametrize("missing", ["first_frame_img", "last_frame_img", "prompt"])
async def test_transition_needs_both_frames_and_a_prompt(api: Api, missing: str):
    body = frames(await api.image(), await api.image())
    del body[missing]
    assert err(await api.generate("transition", body)) == 400011


async def test_transition_frames_must_be_images_of_this_key(api: Api):
    mine = await api.image()
    theirs = await api.image(key="someone-else")
    _, uploaded = await api.upload("/media/upload", "file", MP4, filename="clip.mp4")
    video = uploaded["Resp"]["media_id"]
    for first, last in ((mine, theirs), (theirs, mine), (mine, video), (mine, 987654)):
        assert err(await api.generate("transition", frames(first, last))) == 400032, (first, last)
    assert err(await api.generate("transition", frames(mine, str(mine)))) == 400013
    assert await api.balance() == START


async def test_transition_checks_the_combination_from_the_catalogue(api: Api):
    body = frames(await api.image(), await api.image(), quality="1080p", duration=8)
    answer = await api.generate("transition", body)
    assert err(answer) == 400017


# -- uploads -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
async def test_each_image_format_is_accepted(api: Api, fmt: str):
    await api.image(png(fmt=fmt))
    upload = next(iter(api.sim.uploads.values()))
    assert upload.format == fmt.lower() and (upload.width, upload.height) == (64, 48)


async def test_non_image_bytes_named_png_give_500032(api: Api):
    _, answer = await api.upload("/image/upload", "image", b"GIF89a" + bytes(100))
    assert err(answer) == 500032


async def test_unreadable_image_gives_500031(api: Api):
    _, answer = await api.upload("/image/upload", "image", png()[:40])
    assert err(answer) == 500031


async def test_image_over_4000_px_gives_500030(api: Api):
    _, answer = await api.upload("/image/upload", "image", png(4001, 8))
    assert err(answer) == 500030
    assert err((await api.upload("/image/upload", "image", png(4000, 8)))[1]) == 0


async def test_huge_dimensions_are_read_from_the_header_only(api: Api):
    # A valid PNG header claiming 60000x60000: measured and refused, never decoded.
    tiny = png(1, 1)
    ihdr = b"IHDR" + struct.pack(">II", 60000, 60000) + tiny[24:29]
    fake = tiny[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + tiny[33:]
    _, answer = await api.upload("/image/upload", "image", fake)
    assert err(answer) == 500030


async def test_image_over_20_mb_gives_500030(api: Api):
    data = png()[:8] + bytes(20 * 1024 * 1024)
    _, answer = await api.upload("/image/upload", "image", data)
    assert err(answer) == 500030


async def test_image_url_upload_is_refused_without_network(api: Api):
    _, answer = await api.upload("/image/upload", "image_url", "https://example.com/a.png")
    assert err(answer) == 400017
    assert answer["ErrMsg"] == "URL upload not supported by the simulator"


async def test_upload_without_a_file_gives_400011(api: Api):
    _, answer = await api.upload("/image/upload", "other", b"x")
    assert err(answer) == 400011


async def test_media_upload_records_field_sizes_and_accepts_webm(api: Api):
    _, answer = await api.upload("/media/upload", "file", WEBM, filename="c.webm")
    assert answer["Resp"]["media_type"] == "video"
    assert api.sim.requests[-1].form == {"file": {"filename": "c.webm", "size": len(WEBM)}}


async def test_media_upload_refuses_what_is_not_a_video(api: Api):
    _, answer = await api.upload("/media/upload", "file", png(), filename="c.mp4")
    assert err(answer) == 400017
    assert "not a video" in answer["ErrMsg"]


async def test_media_upload_over_50_mb_is_refused(api: Api):
    data = MP4 + bytes(50 * 1024 * 1024)
    status, answer = await api.upload("/media/upload", "file", data, filename="big.mp4")
    assert status == 200 and err(answer) == 400017


# -- served video size ---------------------------------------------------------------------


async def test_video_is_padded_to_video_size_bytes_with_a_free_box(api: Api):
    size = 26 * 1024 * 1024  # over Discord's 25 MB upload limit
    api.sim.config.video_size_bytes = size
    done = await api.wait(await api.video())
    async with api.session.get(done["url"]) as response:
        assert response.content_length == size
        data = await response.read()
    assert len(data) == size and data[4:8] == b"ftyp"
    offset = 0
    kinds = []
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        kinds.append(kind)
        offset += length
    assert offset == size and kinds[-1] == b"free" and b"moov" in kinds


# -- faults --------------------------------------------------------------------------------


async def test_http_500_fault_answers_plain_text_for_count_requests(api: Api):
    api.sim.inject_fault("balance", "http_500", count=2)
    for _ in range(2):
        status, body = await api.get("/account/balance")
        assert status == 500 and isinstance(body, str)
    assert await api.balance() == START


async def test_429_fault_carries_retry_after(api: Api):
    api.sim.inject_fault("result", "http_429", retry_after=3)
    async with api.session.get(api.base + "/video/result/1", headers=headers()) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "3"


@pytest.mark.parametrize("code", [500044, 500069, 500054])
async def test_err_code_fault_answers_that_code_and_creates_nothing(api: Api, code: int):
    img_id = await api.image()
    api.sim.inject_fault("img_generate", "err_code", err_code=code)
    answer = await api.generate("img", i2v(img_id))
    assert err(answer) == code and answer["ErrMsg"]
    assert api.sim.jobs == {} and await api.balance() == START
    assert err(await api.generate("img", i2v(img_id))) == 0


async def test_upload_moderation_fault_uses_the_http_500_lower_case_form(api: Api):
    api.sim.inject_fault("image_upload", "err_code", err_code=500052)
    status, body = await api.upload("/image/upload", "image", png())
    assert status == 500 and body["err_code"] == 500052 and body["resp"] == ""


async def test_hang_fault_delays_then_answers(api: Api):
    api.sim.inject_fault("balance", "hang", seconds=0.4)
    started = time.monotonic()
    assert await api.balance() == START
    assert time.monotonic() - started >= 0.4


async def test_hang_outlives_a_client_timeout_and_stop_is_prompt(api: Api):
    api.sim.inject_fault("result", "hang", seconds=30)
    with pytest.raises(TimeoutError):
        async with api.session.get(
            api.base + "/video/result/1",
            headers=headers(),
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pass
    started = time.monotonic()
    await api.sim.stop()
    assert time.monotonic() - started < 3


async def test_media_faults_apply_to_downloads(api: Api):
    done = await api.wait(await api.video())
    api.sim.inject_fault("media", "http_500")
    async with api.session.get(done["url"]) as response:
        assert response.status == 500


@pytest.mark.parametrize("kind", ["truncate", "garble", "bare"])
async def test_spoilt_answer_faults_serve_the_request_then_spoil_a_200(api: Api, kind: str):
    body = i2v(await api.image())
    trace = str(uuid.uuid4())
    api.sim.inject_fault("img_generate", kind)
    async with api.session.post(
        api.base + "/video/img/generate", json=body, headers=headers(trace=trace)
    ) as response:
        assert response.status == 200
        raw = await response.read()
    with pytest.raises((ValueError, KeyError)):  # not JSON, or JSON without the envelope
        assert loads(raw)["ErrCode"] == 0
    assert len(api.sim.jobs) == 1 and await api.balance() == START - 45  # it was served
    replayed = await api.generate("img", body, trace=trace)
    assert replayed["Resp"]["video_id"] == next(iter(api.sim.jobs))
    assert len(api.sim.jobs) == 1 and await api.balance() == START - 45


async def test_truncate_fault_on_a_download_serves_half_the_video_as_a_complete_200(api: Api):
    done = await api.wait(await api.video())
    async with api.session.get(done["url"]) as response:
        whole = await response.read()
    api.sim.inject_fault("media", "truncate")
    async with api.session.get(done["url"]) as response:
        assert response.status == 200
        half = await response.read()
    assert half == whole[: len(whole) // 2]
    async with api.session.get(done["url"]) as response:
        assert await response.read() == whole


async def test_404_fault_answers_not_found_for_count_downloads(api: Api):
    done = await api.wait(await api.video())
    api.sim.inject_fault("media", "http_404", count=2)
    statuses = []
    for _ in range(3):
        async with api.session.get(done["url"]) as response:
            statuses.append(response.status)
    assert statuses == [404, 404, 200]


async def test_balance_over_the_control_endpoint_empties_and_refills_the_account(api: Api):
    control = api.sim.base_url + "/_sim"
    img_id = await api.image()
    async with api.session.post(control + "/balance", json={"credits": 0}) as response:
        assert response.status == 200
    assert await api.balance() == 0
    assert err(await api.generate("img", i2v(img_id))) == 500090
    async with api.session.post(control + "/balance", json={"credits": -1}) as response:
        assert response.status == 400
    async with api.session.post(control + "/balance", json={"credits": 100}) as response:
        assert response.status == 200
    assert err(await api.generate("img", i2v(img_id))) == 0
    assert await api.balance() == 55


async def test_faults_over_the_control_endpoint(api: Api):
    control = api.sim.base_url + "/_sim"
    fault = {"route": "text_generate", "kind": "http_429", "retry_after": 2, "count": 1}
    async with api.session.post(control + "/faults", json=fault) as response:
        assert response.status == 200
    async with api.session.post(control + "/faults", json={"route": "nope", "kind": "hang"}) as r:
        assert r.status == 400
    async with api.session.get(control + "/state") as response:
        state = await response.json()
    assert state["faults"][0]["route"] == "text_generate"
    body = {"prompt": "p", "model": "v4", "duration": 5, "quality": "540p", "aspect_ratio": "1:1"}
    status, _ = await api.post("/video/text/generate", body)
    assert status == 429
    async with api.session.post(control + "/faults", json={**fault, "count": 5}) as response:
        assert response.status == 200
    async with api.session.delete(control + "/faults") as response:
        assert response.status == 200
    assert err(await api.generate("text", body)) == 0


async def test_config_and_jobs_over_the_control_endpoint(api: Api):
    control = api.sim.base_url + "/_sim"
    async with api.session.post(control + "/config", json={"gen_time": 60}) as response:
        assert response.status == 200
    async with api.session.post(control + "/config", json={"api_key": "x"}) as response:
        assert response.status == 400
    async with api.session.post(control + "/config", json={"failure_rate": 2}) as response:
        assert response.status == 400
    video_id = await api.video()
    async with api.session.post(f"{control}/jobs/{video_id}", json={"finish": True}) as response:
        assert (await response.json())["status"] == 1
    async with api.session.post(f"{control}/jobs/{video_id}", json={"status": 6}) as response:
        assert (await response.json())["status"] == 6
    async with api.session.get(control + "/state") as response:
        state = await response.json()
    assert state["jobs"] == {str(video_id): 6} and state["config"]["gen_time"] == 60


async def test_stale_get_freezes_polls_that_reuse_a_trace_id(api: Api):
    api.sim.stale_get = True
    video_id = await api.video()
    trace = str(uuid.uuid4())
    assert (await api.result(video_id, trace=trace))["status"] == 5
    api.sim.finish_now(video_id)
    assert (await api.result(video_id, trace=trace))["status"] == 5
    assert (await api.result(video_id))["status"] == 1


# -- introspection -------------------------------------------------------------------------


async def test_requests_are_recorded_without_the_api_key(api: Api):
    video_id = await api.video()
    await api.result(video_id)
    routes = [r.route for r in api.sim.requests]
    assert routes == ["image_upload", "img_generate", "result"]
    for request in api.sim.requests:
        assert all(name.lower() != "api-key" for name in request.headers)
        assert request.trace_id and request.err_code == 0 and request.http_status == 200
    (generate,) = api.sim.generate_requests
    assert generate.json["prompt"] == "a cat surfing"
    assert api.sim.requests[0].form["image"]["size"] > 0
    assert KEY not in repr(api.sim.jobs) and KEY not in repr(api.sim.uploads)


# -- configuration and CLI -----------------------------------------------------------------


def test_empty_api_key_means_any_key():
    assert SimulatorConfig(api_key="").api_key is None


def test_cli_flags_build_the_config(monkeypatch):
    monkeypatch.setenv("PIXVERSE_API_KEY", "from-env")
    args = parse_args(["--port", "0", "--gen-time", "0.5", "--template-no-hd", "77", "--seed", "1"])
    config = build_config(args)
    assert config.api_key == "from-env" and config.gen_time == 0.5 and config.seed == 1
    assert config.activated_templates[77] == NO_HD
    assert build_config(parse_args(["--api-key", "flag"])).api_key == "flag"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _call(url: str, key: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url, headers={"API-KEY": key, "Ai-trace-id": str(uuid.uuid4())}
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        return loads(response.read())


def test_cli_serves_until_sigterm_and_exits_0():
    port = _free_port()
    secret = "cli-secret-key"
    env = {**os.environ, "PIXVERSE_API_KEY": secret, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.simulator", "--port", str(port), "--gen-time", "0.1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/openapi/v2/account/balance"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                answer = _call(url, secret)
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1].decode()
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        assert answer["ErrCode"] == 0
        assert _call(url, "wrong")["ErrCode"] == 400012
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert process.returncode == 0
    log = stderr.decode()
    assert f"http://127.0.0.1:{port}" in log
    assert secret not in log


def test_the_sample_video_is_committed_and_small():
    data = (ROOT / "bot" / "simulator" / "assets" / "sample.mp4").read_bytes()
    assert data[4:8] == b"ftyp" and len(data) < 50_000
    assert b"avc1" in data  # H.264


def test_control_fault_body_round_trips():
    from bot.simulator.faults import Fault

    route, fault, count = Fault.from_json(
        loads(dumps({"route": "media", "kind": "hang", "seconds": 2, "count": 3}))
    )
    assert (route, fault.kind, fault.seconds, count) == ("media", "hang", 2.0, 3)


# -- sound (docs/pixverse.md, "Sound") ---------------------------------------------------


async def download(api: Api, url: str) -> bytes:
    async with api.session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_sound_effect_on_a_finished_video_is_a_new_video_with_sound(api: Api):
    from bot.jobs.mp4 import problem, tracks

    source = await api.video(duration=8)
    await api.wait(source)
    before = await api.balance()
    body = {"source_video_id": source, "sound_effect_content": "thunder far away"}
    answer = await api.generate("sound_effect", body)
    assert err(answer) == 0, answer
    video_id = answer["Resp"]["video_id"]
    assert video_id != source
    assert await api.balance() == before - 20  # 10 per started 5 s of the 8 s source
    done = await api.wait(video_id)
    assert (done["status"], done["has_audio"], done["credits"]) == (1, True, 20)
    assert done["prompt"] == "thunder far away" and done["duration"] == 8
    data = await download(api, done["url"])
    assert problem(data) is None
    assert [t.handler for t in tracks(data)] == ["vide", "soun"]
    silent = await api.result(source)
    assert silent["has_audio"] is False
    assert [t.handler for t in tracks(await download(api, silent["url"]))] == ["vide"]


async def test_sound_effect_takes_the_description_as_prompt_too_or_none(api: Api):
    source = await api.video()
    await api.wait(source)
    for body, expected in (
        ({"source_video_id": source, "prompt": "wind"}, "wind"),
        ({"source_video_id": source}, ""),
        ({"source_video_id": source, "sound_effect_content": ""}, ""),
    ):
        answer = await api.generate("sound_effect", body)
        assert err(answer) == 0, answer
        assert (await api.result(answer["Resp"]["video_id"]))["prompt"] == expected
    both = {"source_video_id": source, "prompt": "wind", "sound_effect_content": "rain"}
    assert err(await api.generate("sound_effect", both)) == 400017


async def test_sound_effect_needs_a_finished_video_of_this_key(api: Api):
    api.sim.config.gen_time = 60
    unfinished = await api.video()
    before = await api.balance()
    for body, key in (
        ({"source_video_id": 12345}, KEY),
        ({"source_video_id": unfinished}, KEY),
        ({"source_video_id": unfinished}, "other"),
    ):
        answer = await api.generate("sound_effect", body, key=key)
        assert err(answer) == 400017, answer
    api.sim.finish_now(unfinished)
    other = await api.generate("sound_effect", {"source_video_id": unfinished}, key="other")
    assert err(other) == 400017
    assert err(await api.generate("sound_effect", {})) == 400011
    assert await api.balance() == before


async def test_sound_effect_on_an_uploaded_video(api: Api):
    _, uploaded = await api.upload("/media/upload", "file", MP4, filename="clip.mp4")
    answer = await api.generate("sound_effect", {"video_media_id": uploaded["Resp"]["media_id"]})
    assert err(answer) == 0, answer


@pytest.mark.parametrize(
    ("model", "switch", "credits"),
    [("v6", "generate_audio_switch", 5 * 7 + 5 * 2), ("v4.5", "sound_effect_switch", 45 + 10)],
)
async def test_a_video_made_with_audio_has_sound(api: Api, model: str, switch: str, credits: int):
    from bot.jobs.mp4 import tracks

    video_id = await api.video(model=model, **{switch: True})
    done = await api.wait(video_id)
    assert (done["has_audio"], done["credits"]) == (True, credits)
    assert [t.codec for t in tracks(await download(api, done["url"]))] == ["avc1", "mp4a"]
