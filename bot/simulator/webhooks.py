"""PixVerse's result webhooks (docs/pixverse.md, "Webhooks"), sent by the simulator.

When a job reaches a terminal status (1, 7 or 8) the simulator POSTs
``{id, status, url, size, has_audio, credits}`` (the values ``video/result`` gives) to
``config.webhook_url`` with ``Webhook-Timestamp``, ``Webhook-Nonce``, ``Webhook-Signature``
and ``Ai-Trace-Id``. Anything but HTTP 200 with the body exactly ``ok`` is retried after
2 s, 10 s, 30 s and 1 min, then given up (the real service goes on for hours; a test run
does not need that).

Jobs stay lazy: one ``loop.call_at`` timer per job at its finish time (no task until it
fires), so thousands of jobs cost a heap entry each. ``webhook_loss_rate`` jobs never get
one; ``webhook_late_rate`` jobs get it ``webhook_late_delay`` seconds late. Every attempt is
recorded in ``SimState.webhooks``. A failed send is logged, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.pixverse.signature import canonical, sign
from bot.simulator.state import DONE, FAILED, MODERATED, Job, SimState, WebhookRecord

log = logging.getLogger("bot.simulator")

WEBHOOK_STATUSES = frozenset({DONE, MODERATED, FAILED})
# The first four of PixVerse's retry steps (docs/pixverse.md, "Webhooks").
RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0, 30.0, 60.0)
BODY_FIELDS = ("id", "status", "url", "size", "has_audio", "credits")
SEND_TIMEOUT = 10.0  # seconds one POST may take before it counts as unanswered
MAX_PARALLEL_SENDS = 64


class WebhookSender:
    """Schedules and sends the webhooks of one ``SimState``; started and stopped with the
    ``Simulator``. ``base_url`` gives the URL put in ``url`` (as the result endpoint does)."""

    def __init__(
        self,
        state: SimState,
        base_url: Callable[[], str],
        *,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self._state = state
        self._base_url = base_url
        self.retry_delays = retry_delays
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent: dict[int, int] = {}  # video id -> the status its webhook carried
        self._slots = asyncio.Semaphore(MAX_PARALLEL_SENDS)

    @property
    def pending(self) -> int:
        """Timers not yet fired plus sends (or retries) under way."""
        return len(self._timers) + len(self._tasks)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._state.listeners.append(self.schedule)
        # Jobs made before the start (tests drive the state directly) are not forgotten.
        for job in self._state.jobs.values():
            self.schedule(job)

    async def stop(self) -> None:
        """Cancel every timer and every send under way; wait for the sends to end."""
        with contextlib.suppress(ValueError):
            self._state.listeners.remove(self.schedule)
        self._loop = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- scheduling ----------------------------------------------------------------------

    def schedule(self, job: Job) -> None:
        """(Re)arm the job's timer at the moment its webhook is due."""
        loop = self._loop
        if loop is None or self._state.config.webhook_url is None or job.webhook_lost:
            return
        previous = self._timers.pop(job.video_id, None)
        if previous is not None:
            previous.cancel()
        due = job.terminal_at
        if due == float("inf"):
            return  # forced to keep generating: nothing to send until forced again
        delay = max(due - self._state.clock(), 0.0) + job.webhook_delay
        self._timers[job.video_id] = loop.call_at(loop.time() + delay, self._fire, job)

    def _fire(self, job: Job) -> None:
        self._timers.pop(job.video_id, None)
        status = job.status(self._state.clock())
        if status not in WEBHOOK_STATUSES or self._sent.get(job.video_id) == status:
            return
        self._sent[job.video_id] = status
        task = asyncio.get_running_loop().create_task(self._deliver(job, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending -------------------------------------------------------------------------

    async def _deliver(self, job: Job, status: int) -> None:
        try:
            for attempt, wait in enumerate((0.0, *self.retry_delays), start=1):
                if wait:
                    await asyncio.sleep(wait)
                url = self._state.config.webhook_url
                if url is None:
                    return
                async with self._slots:
                    if await self._attempt(url, job, status, attempt):
                        return
            log.warning("webhook for video %d given up after %d tries", job.video_id, attempt)
        except Exception:
            log.exception("webhook for video %d could not be sent", job.video_id)

    def body(self, job: Job) -> dict[str, Any]:
        """``{id, status, url, size, has_audio, credits}`` as ``video/result`` answers them."""
        result = self._state.result(job.owner, job.video_id, self._base_url())
        return {name: result[name] for name in BODY_FIELDS}

    def headers(self, body: dict[str, Any]) -> dict[str, str]:
        timestamp = str(int(self._state.wall().timestamp()))
        nonce = uuid.uuid4().hex  # 32 characters
        secret = self._state.config.webhook_secret or ""
        return {
            "Webhook-Timestamp": timestamp,
            "Webhook-Nonce": nonce,
            "Webhook-Signature": sign(secret, timestamp, nonce, canonical(body.items())),
            "Ai-Trace-Id": str(uuid.uuid4()),
            "Content-Type": "application/json",
        }

    async def _attempt(self, url: str, job: Job, status: int, attempt: int) -> bool:
        body = self.body(job)
        body["status"] = status  # the status this webhook announces, even if forced since
        record = WebhookRecord(
            video_id=job.video_id,
            status=status,
            attempt=attempt,
            at=self._state.clock(),
            late=job.webhook_delay > 0,
        )
        self._state.webhooks.append(record)
        session = self._session_for_send()
        try:
            async with session.post(url, json=body, headers=self.headers(body)) as response:
                text = await response.text()
                record.reply_status = response.status
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            log.info("webhook for video %d (try %d): %s", job.video_id, attempt, record.error)
            return False
        record.ok = response.status == 200 and text == "ok"
        if not record.ok:
            log.info(
                "webhook for video %d (try %d) answered HTTP %d %r",
                job.video_id,
                attempt,
                response.status,
                text[:80],
            )
        return record.ok

    def _session_for_send(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=MAX_PARALLEL_SENDS),
            )
        return self._session
