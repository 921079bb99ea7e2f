"""PixVerse's signed result webhooks: an early "look now" for the poller.

PixVerse POSTs ``{id, status, url, …}`` with ``Webhook-Timestamp``, ``Webhook-Nonce`` and
``Webhook-Signature`` = Base64(HMAC-SHA256(secret, "<ts>\\n<nonce>\\n<body as k=v&…>")).
A verified call only makes the runner poll that job at once: the result itself is always
read from ``video/result``, and polling stays the fallback when webhooks never arrive. See
docs/pixverse.md, "Webhooks".

Every check runs before any work, and a refused call does nothing: the timestamp must be
within ``MAX_SKEW`` of our clock, the signature must match, and a nonce already taken is
refused as a replay. Nonces are remembered until their timestamp leaves the window (after
that the timestamp check refuses the copy anyway), at most ``NONCE_MEMORY`` of them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from bot.pixverse.signature import verify

log = logging.getLogger(__name__)

MAX_SKEW = 300.0  # seconds a timestamp may differ from our clock
MAX_BODY = 64 * 1024
# Far more signed calls than five minutes bring at any plan's concurrency; past it the
# oldest nonce is forgotten first (the worst a replay then costs is one extra poll).
NONCE_MEMORY = 10_000
MAX_NONCE = 128  # PixVerse's nonces are 32 characters


class NonceMemory:
    """The nonces of recently taken calls, each until its timestamp leaves the window."""

    def __init__(self, limit: int = NONCE_MEMORY) -> None:
        self._limit = limit
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._until

    def add(self, nonce: str, until: float, now: float) -> None:
        self._forget_expired(now)
        self._until[nonce] = until
        while len(self._until) > self._limit:
            self._until.popitem(last=False)

    def _forget_expired(self, now: float) -> None:
        # Insertion order is close to expiry order (timestamps are near our clock), so the
        # expired ones are at the front; a straggler behind a live one waits its turn.
        while self._until:
            nonce, until = next(iter(self._until.items()))
            if until > now:
                return
            del self._until[nonce]


class WebhookReceiver:
    """An aiohttp app that verifies PixVerse's calls and hands video ids to ``on_result``."""

    def __init__(
        self,
        secret: str,
        on_result: Callable[[int], object],
        *,
        clock: Callable[[], float] = time.time,
        nonce_memory: int = NONCE_MEMORY,
    ) -> None:
        self._secret = secret
        self._on_result = on_result
        self._clock = clock
        self._nonces = NonceMemory(nonce_memory)
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        # The secret never appears in a repr.
        return f"WebhookReceiver(nonces={len(self._nonces)})"

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
        timestamp = request.headers.get("Webhook-Timestamp", "")
        nonce = request.headers.get("Webhook-Nonce", "")
        signature = request.headers.get("Webhook-Signature", "")
        if not nonce or len(nonce) > MAX_NONCE or not signature:
            return web.Response(status=400, text="malformed")
        try:
            sent_at = float(timestamp)
        except ValueError:
            return web.Response(status=400, text="malformed")
        now = self._clock()
        # Checked before the body is read: a stale call costs nothing. "nan" compares false
        # with everything, hence the isfinite.
        if not math.isfinite(sent_at) or abs(now - sent_at) > MAX_SKEW:
            log.info("Refused a PixVerse webhook with a stale timestamp")
            return web.Response(status=401, text="stale")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="malformed")
        if not isinstance(body, dict):
            return web.Response(status=400, text="malformed")
        if not verify(self._secret, timestamp, nonce, body, signature):
            log.warning("Refused a PixVerse webhook with a bad signature")
            return web.Response(status=401, text="bad signature")
        if nonce in self._nonces:
            # PixVerse resends only when it did not hear "ok"; the first copy was acted on,
            # and polling is the fallback, so refusing the copy loses nothing.
            log.info("Refused a replayed PixVerse webhook")
            return web.Response(status=409, text="replayed")
        # Kept a second past the window's end, so no instant exists where the timestamp is
        # still taken and the nonce already forgotten.
        self._nonces.add(nonce, until=sent_at + MAX_SKEW + 1, now=now)
        try:
            video_id = int(body["id"])
        except (KeyError, TypeError, ValueError):
            return web.Response(status=400, text="no id")
        self._on_result(video_id)
        # PixVerse retries unless the answer is HTTP 200 with the body exactly "ok"
        # (docs/pixverse.md, "Webhooks").
        return web.Response(text="ok")
