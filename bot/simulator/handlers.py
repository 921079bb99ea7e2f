"""The PixVerse endpoints: each parses, asks the state, and answers.

Authentication, the trace-id check, recording and faults happen before these run (see
``server.py``); an ApiError raised here becomes an HTTP 200 error envelope there. The
endpoints are those of docs/pixverse.md, "Endpoints used".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from bot.pixverse.models import (
    TEMPLATE_PAGE_SIZES,
    TEMPLATE_QUERY_PAGE,
    TEMPLATE_QUERY_PAGE_SIZE,
    TEMPLATE_QUERY_TYPE,
    TEMPLATE_VIDEO_TYPE,
)
from bot.pixverse.rules import IMAGE_MAX_BYTES, VIDEO_MAX_BYTES
from bot.simulator.errors import (
    BAD_BINDING,
    EMPTY_PARAMETER,
    INVALID_PARAMETER,
    ApiError,
    envelope,
)
from bot.simulator.media import free_box_header, served_sample, served_video_size
from bot.simulator.params import Kind
from bot.simulator.state import RecordedRequest, SimState, Upload

log = logging.getLogger("bot.simulator")

STATE: web.AppKey[SimState] = web.AppKey("simulator_state", SimState)
RECORD: web.RequestKey[RecordedRequest] = web.RequestKey("simulator_record", RecordedRequest)
# Set by the `truncate` fault on a download: serve the first half of the video only.
HALF_VIDEO: web.RequestKey[bool] = web.RequestKey("simulator_half_video", bool)
# Matched case-insensitively (docs/pixverse.md, "Transport and trace ids").
TRACE_HEADER = "Ai-trace-id"
KEY_HEADER = "API-KEY"
# Bodies up to here are read (and measured) so an oversized upload gets PixVerse's own
# error code rather than a bare 413; the video limit is 50 MB (docs/pixverse.md,
# "Input limits").
MAX_BODY = 64 * 1024 * 1024
_CHUNK = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dump(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def json_body(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def ok(request: web.Request, resp: Any) -> web.Response:
    request[RECORD].err_code = 0
    return json_body(dump(envelope(resp)))


def base_url(request: web.Request) -> str:
    """Where the served files are: the configured public URL, else the host the client used,
    so the URL works from wherever the API answered."""
    configured = request.app[STATE].config.public_base_url
    return configured or f"{request.scheme}://{request.host}"


def api_key(request: web.Request) -> str:
    return request.headers[KEY_HEADER]  # present: checked by the middleware


def trace_id(request: web.Request) -> str:
    return request.headers[TRACE_HEADER]


# -- account ---------------------------------------------------------------------------


async def balance(request: web.Request) -> web.Response:
    return ok(request, request.app[STATE].balance(api_key(request)))


# -- uploads ---------------------------------------------------------------------------


@dataclass(slots=True)
class FormPart:
    filename: str | None
    size: int  # full size, even when `data` stopped at the limit
    data: bytes  # at most limit + 1 bytes: enough to know it is too large


async def read_form(request: web.Request, limit: int) -> dict[str, FormPart]:
    """The form fields, each kept up to ``limit + 1`` bytes and measured in full."""
    if request.content_type == "application/x-www-form-urlencoded":
        # A form holding only `image_url` / `file_url` may arrive url-encoded.
        fields = await request.post()
        parts = {name: FormPart(None, len(str(v)), str(v).encode()) for name, v in fields.items()}
    elif request.content_type.startswith("multipart/"):
        try:
            parts = await _read_multipart(request, limit)
        except (ValueError, AssertionError) as exc:
            message = f"invalid binding request: bad multipart body ({exc})"
            raise ApiError(BAD_BINDING, message) from None
    else:
        parts = {}
    request[RECORD].form = {
        name: {"filename": part.filename, "size": part.size} for name, part in parts.items()
    }
    return parts


async def _read_multipart(request: web.Request, limit: int) -> dict[str, FormPart]:
    parts: dict[str, FormPart] = {}
    total = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: not part of the documented form
        kept = bytearray()
        size = 0
        while chunk := await part.read_chunk(_CHUNK):
            size += len(chunk)
            total += len(chunk)
            if total > MAX_BODY:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=total)
            if len(kept) <= limit:
                kept += chunk[: limit + 1 - len(kept)]
        parts[part.name or ""] = FormPart(part.filename, size, bytes(kept))
    return parts


def _file_field(parts: dict[str, FormPart], field: str, url_field: str) -> bytes:
    part = parts.get(field)
    if part is not None and part.size:
        return part.data
    if url_field in parts:
        # PixVerse documents URL upload (docs/pixverse.md, "Endpoints used"), but the
        # simulator has no network to fetch it with.
        raise ApiError(INVALID_PARAMETER, "URL upload not supported by the simulator")
    raise ApiError(EMPTY_PARAMETER, f"{field} is required")


async def image_upload(request: web.Request) -> web.Response:
    parts = await read_form(request, IMAGE_MAX_BYTES)
    data = _file_field(parts, "image", "image_url")
    upload = request.app[STATE].upload_image(api_key(request), data)
    log.info("image %d uploaded (%s, %dx%d)", upload.id, upload.format, upload.width, upload.height)
    return ok(request, {"img_id": upload.id, "img_url": f"{base_url(request)}/media/{upload.name}"})


async def media_upload(request: web.Request) -> web.Response:
    parts = await read_form(request, VIDEO_MAX_BYTES)
    data = _file_field(parts, "file", "file_url")
    upload = request.app[STATE].upload_media(api_key(request), data)
    log.info(
        "media %d uploaded (%s %s, %d bytes)", upload.id, upload.kind, upload.format, upload.size
    )
    return ok(
        request,
        {
            "media_id": upload.id,
            "media_type": upload.kind,
            "url": f"{base_url(request)}/media/{upload.name}",
        },
    )


# -- generation ------------------------------------------------------------------------


def generate(kind: Kind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE]
        key, trace = api_key(request), trace_id(request)
        # A repeated trace id replays the earlier answer: no new job, no new charge
        # (docs/pixverse.md, "Transport and trace ids").
        replayed = state.replayed(key, trace)
        if replayed is not None:
            request[RECORD].err_code = 0
            log.info("trace id reused on %s generate: earlier answer replayed", kind.value)
            return json_body(replayed)
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise ApiError(BAD_BINDING, "invalid binding request: body is not JSON") from None
        # Sound for a finished video has its own body (docs/pixverse.md, "Sound").
        parsed = state.parse_sound(key, body) if kind is Kind.SOUND else state.parse(kind, body)
        job = state.submit(key, parsed, trace)
        params = job.params
        log.info(
            "video %d submitted: %s %s/%s/%ds/%s, %d credits",
            job.video_id,
            kind.value,
            params.model,
            params.quality.value,
            params.duration,
            params.motion.value,
            job.credits,
        )
        answer = dump(envelope({"video_id": job.video_id}))
        state.remember(key, trace, answer)
        request[RECORD].err_code = 0
        return json_body(answer)

    return handler


async def result(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw = request.match_info["video_id"]
    if not raw.isascii() or not raw.isdigit():
        raise ApiError(BAD_BINDING, f"invalid binding request: video id {raw!r} is not an integer")
    video_id = int(raw)
    key, trace = api_key(request), trace_id(request)
    if state.config.stale_get:
        # A poll reusing a trace id sees its first answer forever (docs/pixverse.md,
        # "Transport and trace ids").
        frozen = state.stale_result(key, trace, video_id)
        if frozen is not None:
            request[RECORD].err_code = 0
            return json_body(frozen)
    answer = dump(envelope(state.result(key, video_id, base_url(request))))
    if state.config.stale_get:
        state.remember_result(key, trace, video_id, answer)
    request[RECORD].err_code = 0
    return json_body(answer)


# -- effect templates ------------------------------------------------------------------


def _query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit():
        raise ApiError(BAD_BINDING, f"invalid binding request: {name} {raw!r} is not an integer")
    return int(raw)


async def effect_templates(request: web.Request) -> web.Response:
    """The account's activated templates, a page at a time (docs/pixverse.md, "Effects"):
    query ``type`` (1 video, 2 image), ``page`` from 1, ``pageSize`` 10/20/50/100; answered
    as PixVerse's restyle list answers: ``{total, data: [{template_id, name, …}]}``."""
    kind = _query_int(request, TEMPLATE_QUERY_TYPE, TEMPLATE_VIDEO_TYPE)
    page = _query_int(request, TEMPLATE_QUERY_PAGE, 1)
    size = _query_int(request, TEMPLATE_QUERY_PAGE_SIZE, 10)
    if kind not in (1, 2):
        raise ApiError(INVALID_PARAMETER, f"type must be 1 or 2, not {kind}")
    if page < 1:
        raise ApiError(INVALID_PARAMETER, f"page must be at least 1, not {page}")
    if size not in TEMPLATE_PAGE_SIZES:
        sizes = "/".join(map(str, TEMPLATE_PAGE_SIZES))
        raise ApiError(INVALID_PARAMETER, f"pageSize must be one of {sizes}, not {size}")
    templates = request.app[STATE].effect_templates(kind)
    shown = templates[(page - 1) * size : page * size]
    return ok(request, {"total": len(templates), "data": shown})


# -- served files ----------------------------------------------------------------------


async def media(request: web.Request) -> web.StreamResponse:
    """A finished video (the sample, with a sound track when audio was asked for, padded to
    ``video_size_bytes``) or an uploaded file. Like PixVerse's CDN, it needs neither key nor
    trace id (docs/pixverse.md, "Result and status codes")."""
    state = request.app[STATE]
    item = state.served(request.match_info["name"])
    if item is None:
        raise web.HTTPNotFound(text="not found")
    if isinstance(item, Upload):
        return web.Response(body=item.data, content_type=item.content_type)
    audio = item.params.audio
    if request.get(HALF_VIDEO):
        return _half_video(state.config.video_size_bytes, audio)
    return await _stream_video(request, state.config.video_size_bytes, audio)


def _half_video(video_size_bytes: int | None, audio: bool) -> web.Response:
    """The first half of the served video, as a complete HTTP 200 (a CDN that lost the
    rest): its last box claims more bytes than the file holds."""
    whole = served_video_size(video_size_bytes, audio=audio)
    sample = served_sample(audio)
    data = sample + (free_box_header(whole - len(sample)) if whole > len(sample) else b"")
    data += bytes(max(0, whole - len(data)))
    return web.Response(body=data[: whole // 2], content_type="video/mp4")


async def _stream_video(
    request: web.Request, video_size_bytes: int | None, audio: bool
) -> web.StreamResponse:
    sample = served_sample(audio)
    total = served_video_size(video_size_bytes, audio=audio)
    response = web.StreamResponse()
    response.content_type = "video/mp4"
    response.content_length = total
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    await response.write(sample)
    padding = total - len(sample)
    if padding:
        header = free_box_header(padding)
        await response.write(header)
        remaining = padding - len(header)
        zeros = bytes(_CHUNK)
        while remaining > 0:
            step = min(remaining, _CHUNK)
            await response.write(zeros[:step])
            remaining -= step
    await response.write_eof()
    return response
