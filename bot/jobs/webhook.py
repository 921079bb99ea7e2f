"""PixVerse's signed result webhooks: an early "look now" for the poller.

PixVerse POSTs ``{id, status, url, …}`` with ``Webhook-Timestamp``, ``Webhook-Nonce`` and
``Webhook-Signature`` = Base64(HMAC-SHA256(secret, "<ts>\\n<nonce>\\n<body as k=v&…>")).
A verified call only makes the runner poll that job at once: the result itself is always
read from ``video/result``, so a forged or replayed call can at worst cost one request, and
polling stays the fallback when webhooks never arrive. See docs/pixverse.md, "Webhooks".
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from bot.pixverse.signature import canonical_forms, sign

log = logging.getLogger(__name__)

MAX_SKEW = 300.0  # seconds a timestamp may differ from our clock
MAX_BODY = 64 * 1024
_NONCE_MEMORY = 10_000


class WebhookReceiver:
    """An aiohttp app that verifies PixVerse's calls and hands video ids to ``on_result``."""

    def __init__(
        self,
        secret: str,
        on_result: Callable[[int], object],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._on_result = on_result
        self._clock = clock
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        log.info("Receiving PixVerse webhooks on port %d", port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        timestamp = request.headers.get("Webhook-Timestamp", "")
        nonce = request.headers.get("Webhook-Nonce", "")
        signature = request.headers.get("Webhook-Signature", "")
        try:
            body = json.loads(raw)
            sent_at = float(timestamp)
        except ValueError:
            return web.Response(status=400, text="malformed")
        if not isinstance(body, dict) or not nonce or not signature:
            return web.Response(status=400, text="malformed")
        if abs(self._clock() - sent_at) > MAX_SKEW:
            return web.Response(status=401, text="stale")
        if not any(
            hmac.compare_digest(sign(self._secret, timestamp, nonce, form), signature)
            for form in canonical_forms(body)
        ):
            log.warning("Refused a PixVerse webhook with a bad signature")
            return web.Response(status=401, text="bad signature")
        if nonce in self._nonces:
            return web.Response(text="ok")  # a retry of a call already taken
        self._nonces[nonce] = None
        while len(self._nonces) > _NONCE_MEMORY:
            self._nonces.popitem(last=False)
        try:
            video_id = int(body["id"])
        except (KeyError, TypeError, ValueError):
            return web.Response(status=400, text="no id")
        self._on_result(video_id)
        # PixVerse retries unless the answer is HTTP 200 with the body exactly "ok"
        # (docs/pixverse.md, "Webhooks").
        return web.Response(text="ok")
