"""The aiohttp application and the ``Simulator`` that runs it on a loopback port.

Every API request goes through one middleware, in this order: record it (without its
API-KEY), apply a queued fault, check ``API-KEY`` (400012) and ``Ai-trace-id`` (400011),
run the endpoint, and turn an ApiError into PixVerse's HTTP 200 error envelope
(docs/pixverse.md, "Envelope and errors").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

from aiohttp import web

from bot.simulator import control, handlers
from bot.simulator.config import SimulatorConfig
from bot.simulator.errors import (
    EMPTY_PARAMETER,
    INVALID_ACCOUNT,
    MESSAGES,
    UPLOAD_MODERATION,
    ApiError,
    error_envelope,
)
from bot.simulator.faults import SERVED_FAULTS, Fault, FaultKind, Route
from bot.simulator.handlers import KEY_HEADER, RECORD, STATE, TRACE_HEADER, dump
from bot.simulator.params import Kind
from bot.simulator.state import Job, RecordedRequest, SimState, Upload, WebhookRecord
from bot.simulator.webhooks import WebhookSender

log = logging.getLogger("bot.simulator")

API = "/openapi/v2"
CLOSING: web.AppKey[asyncio.Event] = web.AppKey("simulator_closing", asyncio.Event)
# Handlers still running at stop() (e.g. an injected hang) get this long to finish.
SHUTDOWN_TIMEOUT = 1.0


async def _pause(app: web.Application, seconds: float) -> None:
    """Sleep, but wake up at once when the simulator stops."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[CLOSING].wait(), timeout=seconds)


def _fault_response(fault: Fault) -> web.Response:
    if fault.kind is FaultKind.HTTP_500:
        return web.Response(status=500, text=fault.message or "Internal Server Error")
    if fault.kind is FaultKind.HTTP_404:
        return web.Response(status=404, text=fault.message or "Not Found")
    if fault.kind is FaultKind.HTTP_429:
        seconds = fault.retry_after
        value = str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
        return web.Response(
            status=429, text=fault.message or "Too Many Requests", headers={"Retry-After": value}
        )
    message = fault.message or MESSAGES.get(fault.err_code, "error")
    if fault.err_code == UPLOAD_MODERATION:
        # Upload moderation is documented as HTTP 500 with lower-case keys
        # (docs/pixverse.md, "Envelope and errors").
        body = {"err_code": fault.err_code, "err_msg": message, "resp": ""}
        return web.Response(status=500, body=dump(body), content_type="application/json")
    return web.Response(
        body=dump(error_envelope(fault.err_code, message)), content_type="application/json"
    )


def _drop(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Close the connection so ``response`` is never sent (aiohttp quietly skips writing
    to an aborted transport)."""
    if request.transport is not None:
        request.transport.abort()
    return response


def _spoil(kind: FaultKind, response: web.StreamResponse) -> web.StreamResponse:
    """The served answer with its body cut, scrambled or stripped of the envelope; still a
    complete HTTP 200 (Content-Length matches what is sent)."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = response.body
    if kind is FaultKind.TRUNCATE:
        spoilt = body[: len(body) // 2]
    elif kind is FaultKind.GARBLE:
        spoilt = b"\x00\xff" + body[::-1]
    else:
        spoilt = b'{"status":"ok"}'
    return web.Response(status=200, body=spoilt, content_type=response.content_type)


def _check_headers(request: web.Request, state: SimState) -> None:
    if not state.key_accepted(request.headers.get(KEY_HEADER)):
        raise ApiError(INVALID_ACCOUNT, "Invalid API-KEY")
    # Required on every request (docs/pixverse.md, "Transport and trace ids"); the real code
    # for its absence is undocumented.
    if not request.headers.get(TRACE_HEADER, "").strip():
        raise ApiError(EMPTY_PARAMETER, "Ai-trace-id header is required")


def _record(request: web.Request, route: Route) -> RecordedRequest:
    return RecordedRequest(
        route=route.value,
        method=request.method,
        path=request.path_qs,
        headers={k: v for k, v in request.headers.items() if k.lower() != KEY_HEADER.lower()},
        trace_id=request.headers.get(TRACE_HEADER),
    )


@web.middleware
async def _api_middleware(request: web.Request, handler: handlers.Handler) -> web.StreamResponse:
    name = request.match_info.route.name
    if name is None or name.startswith(control.CONTROL_PREFIX):
        return await handler(request)
    route = Route(name)
    state = request.app[STATE]
    record = _record(request, route)
    if request.method == "POST" and not request.content_type.startswith("multipart/"):
        with contextlib.suppress(ValueError):
            record.json = await request.json()
    state.requests.append(record)
    request[RECORD] = record

    served: FaultKind | None = None
    response: web.StreamResponse
    fault = state.faults.take(route)
    if fault is not None:
        log.info("fault on %s: %s", route.value, fault.kind.value)
        if fault.kind is FaultKind.HANG:
            await _pause(request.app, fault.seconds)
        elif fault.kind in SERVED_FAULTS:
            served = fault.kind
            if route is Route.MEDIA:
                if fault.kind is FaultKind.DROP:  # a download has no side effect: cut it now
                    return _drop(request, web.Response(status=500))
                request[handlers.HALF_VIDEO] = True  # a video cut short, sent as complete
        else:
            response = _fault_response(fault)
            record.http_status = response.status
            record.err_code = fault.err_code if fault.kind is FaultKind.ERR_CODE else None
            return response

    try:
        if route is not Route.MEDIA:
            _check_headers(request, state)
        response = await handler(request)
    except ApiError as error:
        record.err_code = error.code
        response = web.Response(
            body=dump(error_envelope(error.code, error.message)), content_type="application/json"
        )
    record.http_status = response.status
    log.debug("%s %s -> %s %s", request.method, request.path, response.status, record.err_code)
    if served is FaultKind.DROP:
        # The request was served (a job may exist); its answer is lost on the way back.
        return _drop(request, response)
    if served is not None and route is not Route.MEDIA:
        # Served too, but the answer arrives unreadable.
        return _spoil(served, response)
    return response


def create_app(state: SimState) -> web.Application:
    """The simulator as an aiohttp application serving ``state``."""
    # An upload may be 50 MB (docs/pixverse.md, "Input limits"); leave room for the multipart
    # framing.
    app = web.Application(middlewares=[_api_middleware], client_max_size=handlers.MAX_BODY)
    app[STATE] = state
    app[CLOSING] = asyncio.Event()
    router = app.router
    router.add_get(f"{API}/account/balance", handlers.balance, name=Route.BALANCE)
    router.add_post(f"{API}/image/upload", handlers.image_upload, name=Route.IMAGE_UPLOAD)
    router.add_post(f"{API}/media/upload", handlers.media_upload, name=Route.MEDIA_UPLOAD)
    router.add_post(
        f"{API}/video/img/generate", handlers.generate(Kind.IMAGE), name=Route.IMG_GENERATE
    )
    router.add_post(
        f"{API}/video/text/generate", handlers.generate(Kind.TEXT), name=Route.TEXT_GENERATE
    )
    router.add_post(
        f"{API}/video/transition/generate",
        handlers.generate(Kind.TRANSITION),
        name=Route.TRANSITION_GENERATE,
    )
    router.add_post(
        f"{API}/video/extend/generate",
        handlers.generate(Kind.EXTEND),
        name=Route.EXTEND_GENERATE,
    )
    router.add_post(
        f"{API}/video/sound_effect/generate",
        handlers.generate(Kind.SOUND),
        name=Route.SOUND_EFFECT_GENERATE,
    )
    router.add_get(f"{API}/video/result/{{video_id}}", handlers.result, name=Route.RESULT)
    router.add_get(
        f"{API}/video/effects/templates/list",
        handlers.effect_templates,
        name=Route.EFFECT_TEMPLATES,
    )
    router.add_get("/media/{name:.+}", handlers.media, name=Route.MEDIA)
    control.add_control_routes(app)
    return app


class Simulator:
    """A PixVerse API on a local port, with a Python API for tests to steer and inspect it.

    ``async with Simulator(SimulatorConfig(gen_time=0.2)) as sim:`` starts it on a free
    loopback port; ``sim.base_url`` is what a client uses as PixVerse's base URL.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.state = SimState(config)
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self._base_url: str | None = None
        self._webhooks: WebhookSender | None = None

    @property
    def config(self) -> SimulatorConfig:
        return self.state.config

    # -- life cycle --------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = create_app(self.state)
        # aiohttp's access log is off: the middleware logs each request at DEBUG instead.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound_host, bound_port = runner.addresses[0][:2]
        if ":" in bound_host:
            bound_host = f"[{bound_host}]"
        if bound_host in ("0.0.0.0", "[::]"):  # noqa: S104 - only naming the wildcard
            bound_host = "127.0.0.1"
        self._app, self._runner = app, runner
        self._base_url = f"http://{bound_host}:{bound_port}"
        self._webhooks = WebhookSender(self.state, self._public_url)
        self._webhooks.start()
        log.info("PixVerse simulator listening at %s", self._base_url)

    def _public_url(self) -> str:
        return self.config.public_base_url or self.base_url

    async def stop(self) -> None:
        runner, app = self._runner, self._app
        if runner is None or app is None:
            return
        self._runner = self._app = None
        if self._webhooks is not None:
            await self._webhooks.stop()  # pending webhooks are cancelled, not sent
        app[CLOSING].set()  # wake injected hangs so shutdown is quick
        await runner.cleanup()
        log.info("PixVerse simulator stopped")

    async def __aenter__(self) -> Simulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; the API lives under ``/openapi/v2`` below it."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running")
        return self._base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    # -- introspection -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.state.requests

    @property
    def generate_requests(self) -> list[RecordedRequest]:
        return self.state.generate_requests

    @property
    def jobs(self) -> dict[int, Job]:
        return self.state.jobs

    @property
    def peak_generating(self) -> int:
        """The most jobs one account had generating at once so far."""
        return self.state.peak_generating

    @property
    def uploads(self) -> dict[int, Upload]:
        return self.state.uploads

    @property
    def webhooks(self) -> list[WebhookRecord]:
        """Every webhook attempt so far (docs/pixverse.md, "Webhooks"), in send order."""
        return self.state.webhooks

    @property
    def webhook_sender(self) -> WebhookSender | None:
        """The running sender (None when stopped); ``pending`` counts what is still due."""
        return self._webhooks

    @property
    def balance(self) -> int:
        """Credits left (monthly + package) on the configured key's account, or on the
        first account used when any key is accepted."""
        key = self.state.default_key()
        if key is None:
            return self.config.monthly_credits + self.config.balance
        return self.balance_of(key)

    def balance_of(self, api_key: str) -> int:
        answer = self.state.balance(api_key)
        return answer["credit_monthly"] + answer["credit_package"]

    def set_balance(self, credits: int, *, api_key: str | None = None) -> None:
        """Give an account exactly ``credits`` package credits (and no monthly ones)."""
        self.state.set_credits(credits, api_key)

    def status(self, video_id: int) -> int:
        return self.state.jobs[video_id].status(self.state.clock())

    def force_status(self, video_id: int, status: int) -> None:
        self.state.force_status(video_id, status)

    def finish_now(self, video_id: int) -> None:
        self.state.finish_now(video_id)

    # -- faults ------------------------------------------------------------------------

    def inject_fault(
        self,
        route: Route | str,
        kind: FaultKind | str,
        *,
        count: int = 1,
        retry_after: float = 1.0,
        seconds: float = 5.0,
        err_code: int = 500069,
        message: str | None = None,
    ) -> None:
        """Make the next ``count`` requests to ``route`` fail with ``kind``."""
        fault = Fault(
            kind=FaultKind(kind),
            retry_after=retry_after,
            seconds=seconds,
            err_code=err_code,
            message=message,
        )
        self.state.faults.add(Route(route), fault, count)

    def clear_faults(self, route: Route | str | None = None) -> None:
        self.state.faults.clear(Route(route) if route is not None else None)

    @property
    def stale_get(self) -> bool:
        return self.config.stale_get

    @stale_get.setter
    def stale_get(self, enabled: bool) -> None:
        self.config.stale_get = enabled

    def __repr__(self) -> str:
        return f"Simulator(base_url={self._base_url!r}, jobs={len(self.state.jobs)})"
