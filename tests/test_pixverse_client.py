"""The PixVerse client over real HTTP against the simulator on a loopback port."""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.pixverse import (
    AuthError,
    ConcurrencyLimit,
    DownloadTooLarge,
    EffectUnavailable,
    ExtendRequest,
    ImageToVideoRequest,
    InvalidInput,
    InvalidParameters,
    ModerationRejected,
    NotFound,
    OutOfCredits,
    PixVerseClient,
    PixVerseError,
    SoundEffectRequest,
    TextToVideoRequest,
    TransientError,
    TransitionRequest,
    UnreadableAnswer,
    VideoResult,
    VideoStatus,
    job_label,
    new_trace_id,
)
from bot.simulator import MODERATION_MARKER, NO_HD, Simulator, SimulatorConfig

KEY = "pv-sk-3f9a7c21e8d04b6a"  # distinctive, so a leak is easy to spot
START_CREDITS = 100_000
I2V_COST = 45  # v4.5 / 540p / 5 s / normal (docs/pixverse.md, "Credits")
NO_HD_TEMPLATE = 111_111_111_111_111


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 60, 10)).save(out, format="PNG")
    return out.getvalue()


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


MP4 = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2") + box(b"mdat", bytes(64))


def i2v(img_id: int, **options: Any) -> ImageToVideoRequest:
    fields = {"prompt": "a cat surfing", "model": "v4.5", "duration": 5, "quality": "540p"}
    return ImageToVideoRequest(**{**fields, **options}, img_id=img_id)


def extend_from(**source: int) -> ExtendRequest:
    return ExtendRequest(prompt="and then", model="v4.5", duration=5, quality="540p", **source)


def make_client(session: aiohttp.ClientSession, sim: Simulator, **kw: Any) -> PixVerseClient:
    options: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0}
    options.update(kw)
    api_key = options.pop("api_key", KEY)
    return PixVerseClient(session, base_url=sim.base_url, api_key=api_key, **options)


async def upload(client: PixVerseClient) -> int:
    image = await client.upload_image(png(), filename="cat.png", content_type="image/png")
    return image.img_id


async def wait_terminal(client: PixVerseClient, video_id: int) -> VideoResult:
    async with asyncio.timeout(5):
        while True:
            result = await client.result(video_id)
            if result.is_terminal:
                return result
            await asyncio.sleep(0.05)


def routed(sim: Simulator, route: str) -> list[Any]:
    return [r for r in sim.requests if r.route == route]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(gen_time=0.2, api_key=KEY)) as running:
        yield running


@pytest.fixture
def client(session: aiohttp.ClientSession, sim: Simulator) -> PixVerseClient:
    return make_client(session, sim)


# -- happy paths ---------------------------------------------------------------------------


async def test_image_to_video_flow_ends_in_a_downloadable_mp4(client: PixVerseClient) -> None:
    img_id = await upload(client)
    video_id = await client.image_to_video(i2v(img_id), trace_id=new_trace_id())

    result = await wait_terminal(client, video_id)
    assert result.status == VideoStatus.DONE
    assert result.video_url is not None
    data = await client.download(result.video_url, max_bytes=10_000_000)

    assert data[4:8] == b"ftyp"


async def test_result_is_generating_before_the_job_finishes(client: PixVerseClient) -> None:
    video_id = await client.image_to_video(i2v(await upload(client)), trace_id=new_trace_id())

    result = await client.result(video_id)

    assert result.status == VideoStatus.GENERATING
    assert result.video_url is None


async def test_moderated_prompt_ends_in_status_7_without_url(client: PixVerseClient) -> None:
    request = i2v(await upload(client), prompt=f"a cat {MODERATION_MARKER}")
    video_id = await client.image_to_video(request, trace_id=new_trace_id())

    result = await wait_terminal(client, video_id)

    assert result.status == VideoStatus.MODERATED
    assert result.video_url is None


async def test_extend_an_uploaded_video_by_media_id(client: PixVerseClient, sim: Simulator) -> None:
    media = await client.upload_media(MP4, filename="clip.mp4", content_type="video/mp4")
    assert media.media_type == "video"

    video_id = await client.extend(extend_from(video_media_id=media.media_id), trace_id="t-1")

    assert sim.jobs[video_id].params.video_media_id == media.media_id


async def test_extend_a_finished_video_by_source_video_id(
    client: PixVerseClient, sim: Simulator
) -> None:
    source = await client.image_to_video(i2v(await upload(client)), trace_id=new_trace_id())
    sim.finish_now(source)

    video_id = await client.extend(extend_from(source_video_id=source), trace_id=new_trace_id())

    assert video_id != source
    assert sim.jobs[video_id].params.source_video_id == source


async def test_text_to_video_sends_an_aspect_ratio(client: PixVerseClient, sim: Simulator) -> None:
    request = TextToVideoRequest(prompt="a lighthouse", model="v4", duration=5, quality="360p")

    video_id = await client.text_to_video(request, trace_id=new_trace_id())

    assert video_id in sim.jobs
    assert sim.generate_requests[-1].json["aspect_ratio"] == "16:9"


async def test_balance_reports_credits_and_goes_down_by_the_price(
    client: PixVerseClient,
) -> None:
    before = await client.balance()
    await client.image_to_video(i2v(await upload(client)), trace_id=new_trace_id())

    after = await client.balance()

    assert before.total == START_CREDITS
    assert after.total == START_CREDITS - I2V_COST


async def test_download_larger_than_max_bytes_raises(session: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(gen_time=0, api_key=KEY, video_size_bytes=200_000)
    async with Simulator(config) as sim:
        client = make_client(session, sim)
        video_id = await client.image_to_video(i2v(await upload(client)), trace_id="t-big")
        result = await wait_terminal(client, video_id)
        assert result.video_url is not None

        with pytest.raises(DownloadTooLarge) as caught:
            await client.download(result.video_url, max_bytes=100_000)

    assert caught.value.limit == 100_000


# -- request bodies ------------------------------------------------------------------------


async def test_generate_body_sends_ids_as_json_integers(
    client: PixVerseClient, sim: Simulator
) -> None:
    img_id = await upload(client)
    source = await client.image_to_video(i2v(img_id), trace_id=new_trace_id())
    sim.finish_now(source)
    await client.extend(extend_from(source_video_id=source), trace_id=new_trace_id())

    i2v_body, extend_body = (r.json for r in sim.generate_requests)

    assert type(i2v_body["img_id"]) is int and i2v_body["img_id"] == img_id
    assert type(extend_body["source_video_id"]) is int and extend_body["source_video_id"] == source


async def test_generate_body_leaves_out_options_that_are_none(
    client: PixVerseClient, sim: Simulator
) -> None:
    await client.image_to_video(i2v(await upload(client)), trace_id=new_trace_id())

    body = sim.generate_requests[-1].json

    assert set(body) == {"prompt", "model", "duration", "quality", "img_id"}


async def test_generate_body_carries_the_seed_when_given(
    client: PixVerseClient, sim: Simulator
) -> None:
    request = i2v(await upload(client), seed=42, negative_prompt="blur", motion_mode="normal")

    video_id = await client.image_to_video(request, trace_id=new_trace_id())

    body = sim.generate_requests[-1].json
    assert body["seed"] == 42
    assert body["negative_prompt"] == "blur"
    assert body["motion_mode"] == "normal"
    assert sim.jobs[video_id].seed == 42


# -- trace ids ------------------------------------------------------------------------------


async def test_generate_sends_the_callers_trace_id(client: PixVerseClient, sim: Simulator) -> None:
    trace = new_trace_id()

    await client.image_to_video(i2v(await upload(client)), trace_id=trace)

    assert [r.trace_id for r in sim.generate_requests] == [trace]


async def test_generate_retried_after_a_lost_answer_creates_one_job(
    client: PixVerseClient, sim: Simulator
) -> None:
    img_id = await upload(client)
    trace = new_trace_id()
    # `drop`: the server creates the job, then the connection closes before the answer.
    sim.inject_fault("img_generate", "drop")

    video_id = await client.image_to_video(i2v(img_id), trace_id=trace)

    assert [r.trace_id for r in sim.generate_requests] == [trace, trace]
    assert list(sim.jobs) == [video_id]
    assert sim.balance == START_CREDITS - I2V_COST


async def test_every_other_request_gets_a_fresh_trace_id(
    client: PixVerseClient, sim: Simulator
) -> None:
    await upload(client)
    img_id = await upload(client)
    video_id = await client.image_to_video(i2v(img_id), trace_id=new_trace_id())
    for _ in range(3):
        await client.result(video_id)
    await client.balance()
    await client.balance()

    traces = [r.trace_id for r in sim.requests if r.route != "img_generate"]

    assert len(traces) == 7
    assert None not in traces
    assert len(set(traces)) == len(traces)


async def test_each_retry_of_a_poll_gets_a_fresh_trace_id(
    client: PixVerseClient, sim: Simulator
) -> None:
    video_id = await client.image_to_video(i2v(await upload(client)), trace_id=new_trace_id())
    sim.inject_fault("result", "http_500", count=2)

    await client.result(video_id)

    traces = [r.trace_id for r in routed(sim, "result")]
    assert len(traces) == 3
    assert len(set(traces)) == 3


# -- transient failures ----------------------------------------------------------------------


async def test_http_500_is_retried_until_success(client: PixVerseClient, sim: Simulator) -> None:
    sim.inject_fault("balance", "http_500", count=2)

    balance = await client.balance()

    assert balance.total == START_CREDITS
    assert [r.http_status for r in routed(sim, "balance")] == [500, 500, 200]


async def test_http_429_waits_for_retry_after(client: PixVerseClient, sim: Simulator) -> None:
    # Backoff alone would wait at most backoff_cap (0.05 s): a longer wait is Retry-After's.
    sim.inject_fault("balance", "http_429", retry_after=0.15)
    started = time.monotonic()

    await client.balance()

    assert time.monotonic() - started >= 0.15
    assert [r.http_status for r in routed(sim, "balance")] == [429, 200]


async def test_high_load_error_code_is_retried(client: PixVerseClient, sim: Simulator) -> None:
    sim.inject_fault("balance", "err_code", err_code=500069)

    await client.balance()

    assert [r.err_code for r in routed(sim, "balance")] == [500069, 0]


async def test_hang_shorter_than_the_timeout_is_just_slow(
    session: aiohttp.ClientSession, sim: Simulator
) -> None:
    client = make_client(session, sim, timeout=2.0)
    sim.inject_fault("balance", "hang", seconds=0.1)

    await client.balance()

    assert len(routed(sim, "balance")) == 1


async def test_hang_longer_than_the_timeout_gives_up_after_max_attempts(
    session: aiohttp.ClientSession, sim: Simulator
) -> None:
    client = make_client(session, sim, timeout=0.2, max_attempts=3)
    sim.inject_fault("balance", "hang", count=3, seconds=10)
    started = time.monotonic()

    with pytest.raises(TransientError):
        await client.balance()

    assert time.monotonic() - started < 3
    assert len(routed(sim, "balance")) == 3


async def test_http_500_on_every_attempt_raises_transient_error(
    client: PixVerseClient, sim: Simulator
) -> None:
    sim.inject_fault("balance", "http_500", count=4)

    with pytest.raises(TransientError) as caught:
        await client.balance()

    assert caught.value.http_status == 500
    assert len(routed(sim, "balance")) == 4


# -- every call: hangs, 5xx and resets -----------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One way of calling the client: the simulator route it reaches, the client method it
    uses, and the call itself given the ids ``ready_ids`` prepared."""

    route: str
    method: str
    invoke: Callable[[PixVerseClient, dict[str, Any], str], Awaitable[Any]]


def generate(route: str, method: str, request: Callable[[dict[str, Any]], Any]) -> Call:
    """A generate call: ``method`` with the request made from the ids, and the trace id."""
    return Call(
        route, method, lambda c, ids, trace: getattr(c, method)(request(ids), trace_id=trace)
    )


EVERY_CALL: dict[str, Call] = {
    "balance": Call("balance", "balance", lambda c, ids, trace: c.balance()),
    "image_upload": Call(
        "image_upload",
        "upload_image",
        lambda c, ids, trace: c.upload_image(png(), filename="cat.png", content_type="image/png"),
    ),
    "media_upload": Call(
        "media_upload",
        "upload_media",
        lambda c, ids, trace: c.upload_media(MP4, filename="clip.mp4", content_type="video/mp4"),
    ),
    "effect_templates": Call(
        "effect_templates", "effect_templates", lambda c, ids, trace: c.effect_templates()
    ),
    "img_generate": generate("img_generate", "image_to_video", lambda ids: i2v(ids["img"])),
    "text_generate": generate(
        "text_generate",
        "text_to_video",
        lambda ids: TextToVideoRequest(
            prompt="a lighthouse", model="v4.5", duration=5, quality="540p"
        ),
    ),
    "transition_generate": generate(
        "transition_generate",
        "transition",
        lambda ids: TransitionRequest(
            prompt="day to night",
            model="v4.5",
            duration=5,
            quality="540p",
            first_frame_img=ids["img"],
            last_frame_img=ids["img2"],
        ),
    ),
    "extend_generate": generate(
        "extend_generate", "extend", lambda ids: extend_from(source_video_id=ids["video"])
    ),
    "extend_generate_media": generate(
        "extend_generate", "extend", lambda ids: extend_from(video_media_id=ids["media"])
    ),
    "sound_effect_generate": generate(
        "sound_effect_generate",
        "sound_effect",
        lambda ids: SoundEffectRequest(source_video_id=ids["video"], description="waves"),
    ),
    "sound_effect_generate_media": generate(
        "sound_effect_generate",
        "sound_effect",
        lambda ids: SoundEffectRequest(video_media_id=ids["media"]),
    ),
    "result": Call("result", "result", lambda c, ids, trace: c.result(ids["video"])),
    "media": Call(
        "media", "download", lambda c, ids, trace: c.download(ids["url"], max_bytes=10_000_000)
    ),
}
GETS = {"balance", "effect_templates", "result", "media"}
GENERATES = {name for name, call in EVERY_CALL.items() if call.route.endswith("_generate")}


def test_every_public_client_call_is_in_the_table() -> None:
    # A new endpoint without a row here would go untested for hangs, 5xx and resets.
    public = {
        name
        for name, member in inspect.getmembers(PixVerseClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert public == {call.method for call in EVERY_CALL.values()}


async def ready_ids(client: PixVerseClient, sim: Simulator) -> dict[str, Any]:
    """What the calls need: two uploaded images, an uploaded video, and a finished video
    with its URL."""
    img, img2 = await upload(client), await upload(client)
    media = await client.upload_media(MP4, filename="clip.mp4", content_type="video/mp4")
    video = await client.image_to_video(i2v(img), trace_id=new_trace_id())
    sim.finish_now(video)
    url = (await wait_terminal(client, video)).video_url
    assert url is not None
    return {"img": img, "img2": img2, "media": media.media_id, "video": video, "url": url}


@pytest.mark.parametrize("name", list(EVERY_CALL))
async def test_a_hung_call_fails_after_the_read_timeout_and_each_retry_is_logged(
    session: aiohttp.ClientSession,
    sim: Simulator,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = EVERY_CALL[name]
    ids = await ready_ids(make_client(session, sim), sim)
    # The totals are long: only the read limit can end these calls quickly.
    client = make_client(
        session, sim, timeout=60.0, upload_timeout=60.0, read_timeout=0.2, max_attempts=2
    )
    sent_before = len(routed(sim, call.route))
    sim.inject_fault(call.route, "hang", count=2, seconds=30)
    caplog.set_level(logging.WARNING, logger="bot.pixverse")
    token = job_label.set("job 41")
    started = time.monotonic()
    try:
        with pytest.raises(TransientError):
            await call.invoke(client, ids, new_trace_id())
    finally:
        job_label.reset(token)

    assert time.monotonic() - started < 3
    assert len(routed(sim, call.route)) - sent_before == 2
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "for job 41" in warning and "attempt 1 of 2" in warning


@pytest.mark.parametrize("kind", ["http_500", "drop"])
@pytest.mark.parametrize("name", list(EVERY_CALL))
async def test_every_call_recovers_from_one_fault(
    session: aiohttp.ClientSession, sim: Simulator, name: str, kind: str
) -> None:
    call = EVERY_CALL[name]
    client = make_client(session, sim)
    ids = await ready_ids(client, sim)
    jobs_before = set(sim.jobs)
    sent_before = len(routed(sim, call.route))
    trace = new_trace_id()
    sim.inject_fault(call.route, kind)

    answer = await asyncio.wait_for(call.invoke(client, ids, trace), 10)

    sent = routed(sim, call.route)[sent_before:]
    assert len(sent) == 2
    assert answer is not None
    if name in GENERATES:
        # The retry carried the same trace id, so the reset answer was replayed: one job.
        assert [r.trace_id for r in sent] == [trace, trace]
        assert set(sim.jobs) - jobs_before == {answer}
    else:
        assert set(sim.jobs) == jobs_before
    if name == "media":
        assert answer[4:8] == b"ftyp"


@pytest.mark.parametrize("kind", ["http_500", "drop"])
@pytest.mark.parametrize("name", list(EVERY_CALL))
async def test_every_call_gives_up_with_a_transient_error_when_the_fault_persists(
    session: aiohttp.ClientSession, sim: Simulator, name: str, kind: str
) -> None:
    call = EVERY_CALL[name]
    ids = await ready_ids(make_client(session, sim), sim)
    jobs_before = set(sim.jobs)
    client = make_client(session, sim, max_attempts=3)
    sent_before = len(routed(sim, call.route))
    # aiohttp itself resends an idempotent GET once when the connection drops under it:
    # with one fault for each request the call could make, the fault lasts to the end.
    is_get = name in GETS
    sends = 3 * (2 if kind == "drop" and is_get else 1)
    sim.inject_fault(call.route, kind, count=sends)

    with pytest.raises(TransientError) as caught:
        await asyncio.wait_for(call.invoke(client, ids, new_trace_id()), 10)

    assert caught.value.retryable
    assert len(routed(sim, call.route)) - sent_before == sends
    new_jobs = set(sim.jobs) - jobs_before
    # A dropped generate was served each time, with one trace id: one job, never three.
    assert len(new_jobs) == (1 if name in GENERATES and kind == "drop" else 0)


async def test_a_hung_poll_without_a_shorter_read_limit_fails_at_the_total_timeout(
    session: aiohttp.ClientSession, sim: Simulator
) -> None:
    # A read limit no shorter than the total one is left out (it could never fire first):
    # the total still ends a call whose answer never comes.
    ready = make_client(session, sim)
    video = await ready.image_to_video(i2v(await upload(ready)), trace_id=new_trace_id())
    client = make_client(session, sim, timeout=0.3, read_timeout=30.0, max_attempts=2)
    sim.inject_fault("result", "hang", count=2, seconds=30)
    started = time.monotonic()

    with pytest.raises(TransientError):
        await client.result(video)

    assert time.monotonic() - started < 3


async def test_upload_that_keeps_its_answer_coming_is_not_cut_by_the_read_timeout(
    session: aiohttp.ClientSession, sim: Simulator
) -> None:
    # A hang shorter than the read limit is only slow, even when the total is what matters.
    client = make_client(session, sim, upload_timeout=5.0, read_timeout=1.0)
    sim.inject_fault("image_upload", "hang", seconds=0.3)

    await upload(client)

    assert len(routed(sim, "image_upload")) == 1


# -- unreadable 2xx answers are retried, a generate with its trace id ------------------------


@pytest.mark.parametrize("kind", ["truncate", "garble", "bare"])
async def test_unreadable_generate_answer_is_resent_with_the_same_trace_id(
    client: PixVerseClient, sim: Simulator, kind: str
) -> None:
    img_id = await upload(client)
    trace = new_trace_id()
    sim.inject_fault("img_generate", kind)

    video_id = await client.image_to_video(i2v(img_id), trace_id=trace)

    assert [r.trace_id for r in sim.generate_requests] == [trace, trace]
    assert list(sim.jobs) == [video_id]  # the first request made it; the second replayed it
    assert sim.balance == START_CREDITS - I2V_COST


@pytest.mark.parametrize("kind", ["truncate", "garble", "bare"])
async def test_unreadable_answers_on_every_try_raise_unreadable_answer(
    client: PixVerseClient, sim: Simulator, kind: str
) -> None:
    sim.inject_fault("balance", kind, count=4)

    with pytest.raises(UnreadableAnswer) as caught:
        await client.balance()

    assert caught.value.retryable and caught.value.http_status == 200
    assert len(routed(sim, "balance")) == 4


async def test_unreadable_poll_and_upload_answers_are_asked_again(
    client: PixVerseClient, sim: Simulator
) -> None:
    sim.inject_fault("image_upload", "truncate")
    img_id = await upload(client)
    video_id = await client.image_to_video(i2v(img_id), trace_id=new_trace_id())
    sim.inject_fault("result", "garble", count=2)

    result = await client.result(video_id)

    assert result.id == video_id
    assert len(routed(sim, "image_upload")) == 2
    assert len(routed(sim, "result")) == 3


async def test_envelope_with_a_resp_of_the_wrong_shape_is_unreadable(
    session: aiohttp.ClientSession, sim: Simulator
) -> None:
    from aiohttp import web

    async def wrong_shape(request: web.Request) -> web.Response:
        return web.json_response({"ErrCode": 0, "ErrMsg": "success", "Resp": {"oops": 1}})

    app = web.Application()
    app.router.add_post("/openapi/v2/video/img/generate", wrong_shape)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = PixVerseClient(
        session,
        base_url=f"http://127.0.0.1:{port}",
        api_key=KEY,
        max_attempts=2,
        backoff_base=0.01,
        backoff_cap=0.02,
    )
    try:
        with pytest.raises(UnreadableAnswer):
            await client.image_to_video(i2v(1), trace_id=new_trace_id())
    finally:
        await runner.cleanup()


# -- refusals -------------------------------------------------------------------------------


async def test_wrong_api_key_raises_auth_error(
    session: aiohttp.ClientSession, sim: Simulator
) -> None:
    client = make_client(session, sim, api_key="not-the-key")

    with pytest.raises(AuthError) as caught:
        await client.balance()

    assert caught.value.code == 400012


async def test_unknown_source_video_raises_invalid_parameters(client: PixVerseClient) -> None:
    with pytest.raises(InvalidParameters) as caught:
        await client.extend(extend_from(source_video_id=123), trace_id=new_trace_id())

    assert caught.value.code == 400017


async def test_too_long_prompt_refused_by_pixverse_raises_invalid_parameters(
    client: PixVerseClient,
) -> None:
    valid = i2v(await upload(client))
    # The model refuses a long prompt itself; skip its check to hear PixVerse's answer.
    request = ImageToVideoRequest.model_construct(**{**valid.model_dump(), "prompt": "x" * 2049})

    with pytest.raises(InvalidParameters) as caught:
        await client.image_to_video(request, trace_id=new_trace_id())

    assert caught.value.code == 400018


async def test_non_image_upload_raises_invalid_input(client: PixVerseClient) -> None:
    with pytest.raises(InvalidInput) as caught:
        await client.upload_image(b"just some text", filename="cat.png", content_type="image/png")

    assert caught.value.code == 500032


async def test_moderation_error_code_raises_moderation_rejected(
    client: PixVerseClient, sim: Simulator
) -> None:
    img_id = await upload(client)
    sim.inject_fault("img_generate", "err_code", err_code=500054)

    with pytest.raises(ModerationRejected) as caught:
        await client.image_to_video(i2v(img_id), trace_id=new_trace_id())

    assert caught.value.code == 500054


async def test_upload_moderation_as_http_500_is_not_retried(
    client: PixVerseClient, sim: Simulator
) -> None:
    # HTTP 500 with lower-case keys (docs/pixverse.md, "Envelope and errors"); the ErrCode
    # wins over the status.
    sim.inject_fault("image_upload", "err_code", err_code=500052)

    with pytest.raises(ModerationRejected) as caught:
        await upload(client)

    assert (caught.value.code, caught.value.http_status) == (500052, 500)
    assert len(routed(sim, "image_upload")) == 1


async def test_concurrency_limit_raises_concurrency_limit(session: aiohttp.ClientSession) -> None:
    async with Simulator(SimulatorConfig(gen_time=30, api_key=KEY, max_concurrent=1)) as sim:
        client = make_client(session, sim)
        img_id = await upload(client)
        await client.image_to_video(i2v(img_id), trace_id=new_trace_id())

        with pytest.raises(ConcurrencyLimit) as caught:
            await client.image_to_video(i2v(img_id), trace_id=new_trace_id())

    assert caught.value.code == 500044


async def test_empty_balance_raises_out_of_credits(client: PixVerseClient, sim: Simulator) -> None:
    img_id = await upload(client)
    sim.set_balance(0)

    with pytest.raises(OutOfCredits) as caught:
        await client.image_to_video(i2v(img_id), trace_id=new_trace_id())

    assert caught.value.code == 500090


async def test_unknown_video_id_raises_not_found(client: PixVerseClient) -> None:
    with pytest.raises(NotFound) as caught:
        await client.result(999)

    assert caught.value.code == 500008


async def test_template_not_activated_raises_effect_unavailable(client: PixVerseClient) -> None:
    request = i2v(await upload(client), template_id=1)

    with pytest.raises(EffectUnavailable) as caught:
        await client.image_to_video(request, trace_id=new_trace_id())

    assert caught.value.code == 500070


async def test_effect_without_hd_raises_effect_unavailable(
    session: aiohttp.ClientSession,
) -> None:
    config = SimulatorConfig(api_key=KEY, activated_templates={NO_HD_TEMPLATE: NO_HD})
    async with Simulator(config) as sim:
        client = make_client(session, sim)
        request = i2v(await upload(client), template_id=NO_HD_TEMPLATE, quality="720p")

        with pytest.raises(EffectUnavailable) as caught:
            await client.image_to_video(request, trace_id=new_trace_id())

    assert caught.value.code == 500071


@pytest.mark.parametrize("err_code", [400017, 500044, 500054, 500070, 500090, 123456])
async def test_refused_generate_is_sent_once(
    client: PixVerseClient, sim: Simulator, err_code: int
) -> None:
    img_id = await upload(client)
    sim.inject_fault("img_generate", "err_code", err_code=err_code)

    with pytest.raises(PixVerseError) as caught:
        await client.image_to_video(i2v(img_id), trace_id=new_trace_id())

    assert not caught.value.retryable
    assert len(sim.generate_requests) == 1
    assert sim.jobs == {}


async def test_wrong_key_is_sent_once(session: aiohttp.ClientSession, sim: Simulator) -> None:
    client = make_client(session, sim, api_key="not-the-key")

    with pytest.raises(AuthError):
        await client.balance()

    assert len(sim.requests) == 1


# -- the API key stays secret ----------------------------------------------------------------


def test_api_key_is_not_in_the_client_repr() -> None:
    client = PixVerseClient(None, base_url="http://127.0.0.1:1", api_key=KEY)  # type: ignore[arg-type]

    assert KEY not in repr(client)


async def failing_calls(session: aiohttp.ClientSession, sim: Simulator) -> list[BaseException]:
    """Run one call into each kind of failure and return what was raised."""
    client = make_client(session, sim)
    img_id = await upload(client)
    sim.inject_fault("balance", "http_500", count=4)
    sim.inject_fault("image_upload", "err_code", err_code=500052)
    sim.inject_fault("img_generate", "err_code", err_code=500054)
    sim.inject_fault("result", "http_429", count=4, retry_after=0.01)
    calls: list[Callable[[], Awaitable[object]]] = [
        client.balance,
        lambda: upload(client),
        lambda: client.image_to_video(i2v(img_id), trace_id=new_trace_id()),
        lambda: client.result(1),
        lambda: client.extend(extend_from(source_video_id=5), trace_id=new_trace_id()),
        make_client(session, sim, api_key="wrong-key").balance,
    ]
    raised: list[BaseException] = []
    for call in calls:
        with pytest.raises(PixVerseError) as caught:
            await call()
        raised.append(caught.value)
    return raised


async def test_api_key_is_not_in_raised_errors(
    session: aiohttp.ClientSession, sim: Simulator
) -> None:
    raised = await failing_calls(session, sim)

    assert len(raised) == 6
    for error in raised:
        assert KEY not in str(error)
        assert KEY not in repr(error)


async def test_api_key_is_not_in_the_logs(
    session: aiohttp.ClientSession, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    await failing_calls(session, sim)

    assert any("retrying" in r.getMessage() for r in caplog.records)  # the retries were logged
    assert KEY not in caplog.text


# -- effect templates ----------------------------------------------------------------------


async def test_effect_templates_are_listed_a_page_at_a_time(
    session: aiohttp.ClientSession,
) -> None:
    templates = {100 + n: frozenset() for n in range(1, 13)}
    config = SimulatorConfig(api_key=KEY, activated_templates=templates, template_names={})
    async with Simulator(config) as sim:
        client = make_client(session, sim)
        first = await client.effect_templates(page=1, page_size=10)
        second = await client.effect_templates(page=2, page_size=10)
        [request, _] = routed(sim, "effect_templates")

    assert [t.template_id for t in first.templates] == list(range(101, 111))
    assert [(t.template_id, t.name) for t in second.templates] == [
        (111, "Effect 111"),
        (112, "Effect 112"),
    ]
    assert first.total == second.total == 12
    assert request.method == "GET"
    assert "type=1" in request.path and "page=1" in request.path and "pageSize=10" in request.path


async def test_a_page_size_pixverse_does_not_offer_is_refused(client: PixVerseClient) -> None:
    with pytest.raises(InvalidParameters) as caught:
        await client.effect_templates(page=1, page_size=7)
    assert caught.value.code == 400017


# --- sound (docs/pixverse.md, "Sound") ---------------------------------------------------


async def test_sound_effect_on_a_finished_video_sends_the_description_field(
    client: PixVerseClient, sim: Simulator
) -> None:
    from bot.pixverse import SoundEffectRequest
    from bot.pixverse.models import SOUND_DESCRIPTION_FIELD

    source = await client.image_to_video(i2v(await upload(client)), trace_id=new_trace_id())
    assert (await wait_terminal(client, source)).has_audio is False
    request = SoundEffectRequest(source_video_id=source, description="waves")
    video_id = await client.sound_effect(request, trace_id=new_trace_id())
    done = await wait_terminal(client, video_id)
    assert done.status == VideoStatus.DONE and done.has_audio is True
    [sent] = routed(sim, "sound_effect_generate")
    assert sent.json == {"source_video_id": source, SOUND_DESCRIPTION_FIELD: "waves"}


def test_sound_effect_request_sends_an_empty_description_and_needs_one_source() -> None:
    from bot.pixverse import SoundEffectRequest
    from bot.pixverse.models import SOUND_DESCRIPTION_FIELD

    assert SoundEffectRequest(source_video_id=7).body() == {
        "source_video_id": 7,
        SOUND_DESCRIPTION_FIELD: "",
    }
    with pytest.raises(ValueError, match="exactly one"):
        SoundEffectRequest()
    with pytest.raises(ValueError, match="exactly one"):
        SoundEffectRequest(source_video_id=7, video_media_id=8)


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (True, True),
        (False, False),
        (None, None),
        (1, True),
        (0, False),
        ("true", True),
        ("maybe", None),
        ([1], None),
        ({"a": 1}, None),
        (2, None),
    ],
)
def test_an_odd_has_audio_is_not_said_rather_than_an_unreadable_result(value, read) -> None:
    result = VideoResult.model_validate({"id": 1, "status": 1, "has_audio": value})
    assert result.has_audio is read
