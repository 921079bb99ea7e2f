"""An async PixVerse API client on one injected aiohttp session.

Shaped after discord.py's ``http.py``: URLs are built in one place, every answer is checked
for HTTP status *and* ErrCode, and failures become the exceptions of ``errors.py``.

Retries are bounded, with exponential backoff and jitter, and only for transient failures.
A generate POST is retried with the *same* ``Ai-trace-id``: PixVerse treats a repeated trace
id as the same request and does not start a second video (see docs/pixverse.md,
"Transport and trace ids"), so a retry after a lost answer cannot double-charge. Every
other call gets a fresh trace id per attempt.

Every call has a timeout: a connect limit and a read limit (a stalled connection fails in
seconds) under a total one (generous for uploads and downloads, whose bodies may be large
but keep moving). A 2xx answer that cannot be read -- a cut body, malformed JSON, no
envelope -- is an ``UnreadableAnswer``, retried like a lost answer: PixVerse may have acted.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from json import loads as json_loads
from typing import Any, TypeVar, cast

import aiohttp
import yarl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from bot.pixverse.errors import (
    PixVerseError,
    TransientError,
    UnreadableAnswer,
    error_for_code,
    error_for_http_status,
)
from bot.pixverse.hosts import HostAllowlist, pixverse_results
from bot.pixverse.models import (
    TEMPLATE_QUERY_PAGE,
    TEMPLATE_QUERY_PAGE_SIZE,
    TEMPLATE_QUERY_TYPE,
    TEMPLATE_VIDEO_TYPE,
    Balance,
    EffectTemplatePage,
    Envelope,
    ExtendRequest,
    GeneratedVideo,
    ImageToVideoRequest,
    SoundEffectRequest,
    TextToVideoRequest,
    TransitionRequest,
    UploadedImage,
    UploadedMedia,
    VideoResult,
)

log = logging.getLogger(__name__)

API_PREFIX = "/openapi/v2"
URL_CACHE_SIZE = 4096
# Redirects a result download follows, each checked against the allowlist like the first URL.
MAX_DOWNLOAD_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
ResponseT = TypeVar("ResponseT", bound=BaseModel)

# Who a request is for ("job 12"), named in the retry warnings. The runner sets it in each
# job's own task, so the client's signatures stay free of job ids.
job_label: ContextVar[str] = ContextVar("pixverse_job_label", default="")

# Told of every request sent, retries included: its endpoint ("/video/result/{id}", "download"),
# its seconds, and what it failed with (None when it was answered). The metrics implement
# it (bot/metrics), so the client imports none; it must return at once and never raise.
RequestObserver = Callable[[str, float, BaseException | None], None]


def new_trace_id() -> str:
    """A fresh trace id; PixVerse wants a unique UUID-like value per request
    (docs/pixverse.md, "Transport and trace ids"). A random (version 4) UUID, spelled out
    without ``uuid.UUID``'s checks: every poll makes one."""
    h = os.urandom(16).hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


class DownloadTooLarge(Exception):
    """The file is larger than the caller's limit; nothing past the limit was read."""

    def __init__(self, limit: int, size: int | None) -> None:
        super().__init__(f"file exceeds {limit} bytes")
        self.limit = limit
        self.size = size


class PixVerseClient:
    """Talks to one PixVerse base URL with one API key. Create once and share."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 30.0,
        upload_timeout: float = 600.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        observer: RequestObserver | None = None,
    ) -> None:
        self._session = session
        self._observer = observer
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        # sock_read runs from the end of the request body to the first byte of the answer,
        # then between reads: a hung server fails in ``read_timeout``, while a large upload
        # or download that keeps moving is only bounded by the total.
        # A read limit no shorter than the total one could never fire first: left out, it
        # spares aiohttp a timer per answer (and one more per chunk read).
        self._timeout = aiohttp.ClientTimeout(
            total=timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout if read_timeout < timeout else None,
        )
        self._upload_timeout = aiohttp.ClientTimeout(
            total=upload_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._max_attempts = max(1, max_attempts)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._urls: dict[str, yarl.URL] = {}

    def __repr__(self) -> str:
        # The key never appears in a repr, a log line or an exception.
        return f"PixVerseClient(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    # -- endpoints -----------------------------------------------------------------------

    async def balance(self) -> Balance:
        return await self._call("GET", "/account/balance", Balance)

    async def upload_image(self, data: bytes, *, filename: str, content_type: str) -> UploadedImage:
        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            # A stream, not bytes: aiohttp copies large bytes bodies on the event loop.
            body.add_field("image", io.BytesIO(data), filename=filename, content_type=content_type)
            return body

        return await self._call("POST", "/image/upload", UploadedImage, form=form, upload=True)

    async def upload_media(self, data: bytes, *, filename: str, content_type: str) -> UploadedMedia:
        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
            return body

        return await self._call("POST", "/media/upload", UploadedMedia, form=form, upload=True)

    async def effect_templates(
        self, *, page: int = 1, page_size: int = 100, template_type: int = TEMPLATE_VIDEO_TYPE
    ) -> EffectTemplatePage:
        """One page of PixVerse's effect templates (docs/pixverse.md, "Effects")."""
        query = {
            TEMPLATE_QUERY_TYPE: str(template_type),
            TEMPLATE_QUERY_PAGE: str(page),
            TEMPLATE_QUERY_PAGE_SIZE: str(page_size),
        }
        return await self._call(
            "GET", "/video/effects/templates/list", EffectTemplatePage, query=query
        )

    async def image_to_video(self, request: ImageToVideoRequest, *, trace_id: str) -> int:
        return await self._generate("/video/img/generate", request.body(), trace_id)

    async def text_to_video(self, request: TextToVideoRequest, *, trace_id: str) -> int:
        return await self._generate("/video/text/generate", request.body(), trace_id)

    async def transition(self, request: TransitionRequest, *, trace_id: str) -> int:
        return await self._generate("/video/transition/generate", request.body(), trace_id)

    async def extend(self, request: ExtendRequest, *, trace_id: str) -> int:
        return await self._generate("/video/extend/generate", request.body(), trace_id)

    async def sound_effect(self, request: SoundEffectRequest, *, trace_id: str) -> int:
        """Sound for a finished video: a new video, polled like any other."""
        return await self._generate("/video/sound_effect/generate", request.body(), trace_id)

    async def result(self, video_id: int) -> VideoResult:
        return await self._call(
            "GET", f"/video/result/{int(video_id)}", VideoResult, endpoint="/video/result/{id}"
        )

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Stream a finished video, refusing to hold more than ``max_bytes`` in memory.

        The result URL is PixVerse's CDN, which needs no key: the key is not sent there.
        A URL on any other host is refused unfetched (``DownloadRefused``), and so is a
        redirect to one: aiohttp would follow a redirect without asking, so redirects are
        followed here, at most ``MAX_DOWNLOAD_REDIRECTS``, each target checked first.
        """
        allowed = pixverse_results(self._base_url)
        allowed.check(url, "a result video")

        async def attempt() -> bytes:
            target = url
            # One deadline for all the hops, as for a single request.
            async with asyncio.timeout(self._upload_timeout.total):
                for _hop in range(MAX_DOWNLOAD_REDIRECTS + 1):
                    async with self._session.get(
                        target, allow_redirects=False, timeout=self._upload_timeout
                    ) as response:
                        if response.status in _REDIRECTS:
                            target = _redirect_target(response, allowed)
                            continue
                        return await _read_video(response, max_bytes)
            # Not retried here: a CDN that sends the bot round in circles will do so again.
            raise PixVerseError(
                f"video download redirected more than {MAX_DOWNLOAD_REDIRECTS} times"
            )

        return await self._with_retries("download", attempt, "download")

    # -- plumbing ------------------------------------------------------------------------

    async def _generate(self, path: str, body: dict[str, Any], trace_id: str) -> int:
        generated = await self._call("POST", path, GeneratedVideo, json=body, trace_id=trace_id)
        return generated.video_id

    async def _call(
        self,
        method: str,
        path: str,
        model: type[ResponseT],
        *,
        json: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        trace_id: str | None = None,
        upload: bool = False,
        endpoint: str | None = None,
    ) -> ResponseT:
        url = self._url(path)
        timeout = self._upload_timeout if upload else self._timeout

        async def attempt() -> ResponseT:
            headers = {
                "API-KEY": self._api_key,
                # A fixed trace id only where a repeat must be recognised as the same request.
                "Ai-trace-id": trace_id or new_trace_id(),
            }
            # A FormData body can be sent once only, so each attempt builds its own.
            data = form() if form is not None else None
            async with self._session.request(
                method, url, headers=headers, json=json, data=data, params=query, timeout=timeout
            ) as response:
                body = await response.read()
                if response.status < 300 and (answer := _answer(body, model)) is not None:
                    return answer
                return _unwrap(response, _json(body), model)

        return await self._with_retries(f"{method} {path}", attempt, endpoint or path)

    def _url(self, path: str) -> yarl.URL:
        # Parsed once per path: a job's result is polled a dozen times, and parsing a URL
        # is a good part of a poll's cost.
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            url = self._urls[path] = yarl.URL(f"{self._base_url}{API_PREFIX}{path}")
        return url

    async def _with_retries(
        self, what: str, attempt: Callable[[], Awaitable[Any]], endpoint: str
    ) -> Any:
        for number in range(1, self._max_attempts + 1):
            try:
                return await self._observed(endpoint, attempt)
            except (TimeoutError, aiohttp.ClientError) as exc:
                error: TransientError = TransientError(
                    f"PixVerse did not answer {what}: {type(exc).__name__}"
                )
            except TransientError as exc:
                error = exc
            if number == self._max_attempts:
                raise error
            delay = self._backoff(number, error.retry_after)
            label = job_label.get()
            log.warning(
                "PixVerse %s%s failed (%s); attempt %d of %d, retrying in %.1fs",
                what,
                f" for {label}" if label else "",
                error.message,
                number,
                self._max_attempts,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _observed(self, endpoint: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
        if self._observer is None:
            return await attempt()
        started = time.monotonic()
        try:
            result = await attempt()
        except Exception as exc:
            self._observer(endpoint, time.monotonic() - started, exc)
            raise
        self._observer(endpoint, time.monotonic() - started, None)
        return result

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self._backoff_cap * 4)
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter"


async def _read_video(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.status != 200:
        raise error_for_http_status(
            response.status, f"video download answered HTTP {response.status}"
        )
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise DownloadTooLarge(max_bytes, declared)
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        received += len(chunk)
        if received > max_bytes:
            raise DownloadTooLarge(max_bytes, declared)
        chunks.append(chunk)
    return b"".join(chunks)


def _redirect_target(response: aiohttp.ClientResponse, allowed: HostAllowlist) -> str:
    """Where a redirect points, if ``allowed`` permits it (else ``DownloadRefused``, with
    nothing fetched there). A relative Location is resolved against the URL redirected."""
    location = response.headers.get("Location")
    if not location:
        raise PixVerseError(f"video download answered HTTP {response.status} without a Location")
    try:
        target = str(response.url.join(yarl.URL(location)))
    except ValueError:
        target = ""  # unparseable: refused below like any host off the list
    allowed.check(target, "a result video")
    return target


def _json(body: bytes) -> Any:
    # The bytes straight to the parser: JSON is UTF-8, and decoding to text first costs a
    # copy on every poll. Undecodable bytes are a ValueError too: no envelope.
    try:
        return json_loads(body)
    except ValueError:
        return None


_ANSWERS: dict[type[BaseModel], type[BaseModel]] = {}


def _answer(body: bytes, model: type[ResponseT]) -> ResponseT | None:
    """The usual answer -- a 2xx whose envelope has ErrCode 0 and a ``Resp`` that is a valid
    ``model`` -- validated from the bytes in one pass (a poll's commonest case); None for
    anything else, which ``_unwrap`` then reads the long way and judges."""
    answer = _ANSWERS.get(model)
    if answer is None:
        answer = _ANSWERS[model] = create_model(
            f"{model.__name__}Answer",
            __config__=ConfigDict(extra="ignore"),
            err_code=(int, Field(alias="ErrCode")),
            err_msg=(str, Field(default="", alias="ErrMsg")),
            resp=(model, Field(alias="Resp")),
        )
    try:
        parsed = answer.model_validate_json(body)
    except ValidationError:
        return None
    if getattr(parsed, "err_code", None) != 0:
        return None
    return cast("ResponseT", getattr(parsed, "resp", None))


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _unwrap(response: aiohttp.ClientResponse, payload: Any, model: type[ResponseT]) -> ResponseT:
    envelope: Envelope | None = None
    if isinstance(payload, dict):
        try:
            envelope = Envelope.model_validate(payload)
        except ValidationError:
            envelope = None
    # A non-zero ErrCode wins over the HTTP status: PixVerse documents moderation as HTTP 500
    # with an envelope (docs/pixverse.md, "Envelope and errors"), and that must not be
    # retried as a server error.
    if envelope is not None and envelope.err_code != 0:
        raise error_for_code(envelope.err_code, envelope.err_msg, http_status=response.status)
    if response.status >= 300:
        raise error_for_http_status(
            response.status,
            f"PixVerse answered HTTP {response.status} without a valid envelope",
            retry_after=_retry_after(response),
        )
    # A 2xx that cannot be read is no refusal: PixVerse may have done the work (and charged
    # for it), so the request is sent again as it was (docs/pixverse.md, "Transport and
    # trace ids").
    if envelope is None:
        raise UnreadableAnswer(
            f"PixVerse answered HTTP {response.status} without a readable envelope",
            http_status=response.status,
        )
    try:
        return model.model_validate(envelope.resp)
    except ValidationError as exc:
        raise UnreadableAnswer(
            f"PixVerse answered an unreadable {model.__name__}: {exc.error_count()} problem(s)",
            http_status=response.status,
        ) from None
