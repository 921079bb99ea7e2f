"""The queue's pause while the PixVerse account is out of credits (ErrCode 500090).

Running out of credits is the operator's problem, not the members': the job that met 500090
goes back to the queue with its place, its trace id and its reservation, no job starts
until the account has credits again, and each waiting member is told once why. A probe
asks for the balance every ``probe_every`` seconds and lifts the pause by itself when it
covers the cheapest job that was refused. The operator hears of both through
``OperatorNotices`` (the Discord side posts to every server's log channel), so nothing here
knows Discord.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.pixverse import Balance

log = logging.getLogger(__name__)

WAITING_TEXT = (
    "the bot's PixVerse account is out of credits; your job starts when the operator tops it up"
)
PAUSED_NOTICE = (
    "⏸️ The bot's PixVerse account is out of credits: no new video starts until it is topped "
    "up. Queued jobs keep their place and their reserved credits; videos already generating "
    "finish. The bot checks the balance every {every} and resumes by itself."
)
RESUMED_NOTICE = (
    "▶️ The bot's PixVerse account has credits again ({credits}): the queue is moving; "
    "waiting jobs start in their turn."
)


class OperatorNotices(Protocol):
    async def notice(self, text: str) -> None:
        """Tell the operators (every server's moderation log) something about the bot."""
        ...


class CreditPause:
    """Whether the queue is paused for credits, who has been told, and the probe."""

    def __init__(
        self,
        balance: Callable[[], Awaitable[Balance]],
        notices: OperatorNotices | None,
        *,
        probe_every: float,
        on_resume: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._balance = balance
        self._notices = notices
        self._probe_every = probe_every
        self._on_resume = on_resume
        self._clock = clock
        self.since: float | None = None  # unix seconds; None when not paused
        self._needed = 1  # credits the cheapest refused job needs
        self._told: set[int] = set()
        self._probe: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def active(self) -> bool:
        return self.since is not None

    def pause(self, needed: int) -> None:
        """A submit met 500090: stop starting jobs until the balance covers ``needed``."""
        if self._stopping:
            return
        if self.active:
            self._needed = max(1, min(self._needed, needed))
            return
        self.since = self._clock()
        self._needed = max(1, needed)
        log.warning(
            "PixVerse says the account is out of credits (500090): the queue is paused; "
            "checking the balance every %.0fs",
            self._probe_every,
        )
        self._announce(PAUSED_NOTICE.format(every=_every(self._probe_every)))
        self._probe = asyncio.create_task(self._probe_loop(), name="credit-probe")
        self._probe.add_done_callback(_log_crash)

    def tell(self, job_id: int) -> bool:
        """True the first time a waiting job is to be told of the pause (once per pause)."""
        if not self.active or job_id in self._told:
            return False
        self._told.add(job_id)
        return True

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._tasks, *([self._probe] if self._probe else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _probe_loop(self) -> None:
        while self.active and not self._stopping:
            await asyncio.sleep(self._probe_every)
            # Every pass is guarded: a failed probe (PixVerse down, a bug) waits for the next.
            try:
                balance = await self._balance()
            except Exception as exc:
                log.warning("Balance probe failed (%r); the queue stays paused", exc)
                continue
            if balance.total >= self._needed:
                self._resume(balance.total)
                return
            log.info(
                "Still out of credits (%d, %d needed); the queue stays paused",
                balance.total,
                self._needed,
            )

    def _resume(self, credits: int) -> None:
        paused_for = self._clock() - (self.since or self._clock())
        self.since = None
        self._told.clear()
        log.warning(
            "PixVerse account has %d credits: the queue resumes after %.0fs", credits, paused_for
        )
        self._announce(RESUMED_NOTICE.format(credits=credits))
        self._on_resume()

    def _announce(self, text: str) -> None:
        if self._notices is None:
            return
        task = asyncio.create_task(self._notices.notice(text), name="operator-notice")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)


def _every(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return "minute" if minutes == 1 else f"{minutes} minutes"
    return f"{seconds:g} seconds"


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Background task %s crashed", task.get_name(), exc_info=exc)
