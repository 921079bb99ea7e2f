"""The metrics server: ``GET /metrics`` (Prometheus' text format, or OpenMetrics when the
scraper asks) and ``GET /healthz`` (200 when the gateway is connected and the database
answers, else 503 saying which part failed), on ``METRICS_HOST:METRICS_PORT``.

It listens on loopback unless the operator says otherwise: the numbers and the health of
the bot are the operator's business, and nothing here needs a key.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from bot.metrics.collect import Metrics, Sources

log = logging.getLogger(__name__)

# A database that takes longer than this to answer "SELECT 1" is not answering.
CHECK_TIMEOUT = 2.0


class MetricsUnavailable(Exception):
    """The metrics server cannot listen where the settings say (one line for the operator)."""


async def health(sources: Sources, *, within: float = CHECK_TIMEOUT) -> dict[str, str]:
    """Each part's state: "ok", or why not; the database gets ``within`` seconds to answer.
    Only the kind of a database error is named: its message may carry a path or an address
    that is nobody's business on a health check."""
    gateway = sources.gateway().problem or "ok"
    try:
        async with asyncio.timeout(within):
            await sources.store.db.fetch_one("SELECT 1")
    except TimeoutError:
        database = f"no answer within {within:g} s"
    except Exception as exc:
        database = f"not answering ({type(exc).__name__})"
    else:
        database = "ok"
    return {"gateway": gateway, "database": database}


class MetricsServer:
    def __init__(
        self, metrics: Metrics, sources: Sources, *, within: float = CHECK_TIMEOUT
    ) -> None:
        self._metrics = metrics
        self._sources = sources
        self._within = within
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._expose)
        app.router.add_get("/healthz", self._health)
        return app

    async def start(self, host: str, port: int) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsUnavailable(
                f"METRICS_PORT {port} on METRICS_HOST {host} cannot be served "
                f"({exc.strerror or exc}): choose a free port or another address"
            ) from None
        self._runner = runner
        log.info("Serving metrics at http://%s:%d/metrics and /healthz", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _expose(self, request: web.Request) -> web.Response:
        await self._metrics.refresh(self._sources, within=self._within)
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(
            body=encoder(self._metrics.registry), headers={"Content-Type": content_type}
        )

    async def _health(self, request: web.Request) -> web.Response:
        parts = await health(self._sources, within=self._within)
        healthy = all(state == "ok" for state in parts.values())
        return web.json_response(
            {"status": "ok" if healthy else "unhealthy", **parts}, status=200 if healthy else 503
        )
