"""The queue's pause while the PixVerse account is out of credits (ErrCode 500090).

Running out of credits is the operator's problem, not the members': the job that met 500090
goes back to the queue with its place, its trace id and its reservation, no job starts
until the account has credits again, and each waiting member is told once why. A probe
asks for the balance every ``probe_every`` seconds and lifts the pause by itself when it
covers the cheapest job that was refused. The pause and who was told are kept in the
database (``bot.store.pause``): a restart, or another process on the same database, holds
it too. The operator hears of both through ``OperatorNotices`` (the Discord side posts to
every server's log channel), so nothing here knows Discord.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from bot.pixverse import Balance
from bot.store.pause import CreditPauseRecord, Paused

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
    """Whether the queue is paused for credits, who has been told, and the probe.

    The pause itself lives in the database (``bot.store.pause``): a restart finds it (no
    submit until a probe finds credits), and with several processes each one follows it —
    ``refresh`` adopts a pause another process began and drops one another process lifted.
    Only the process that began a pause, and the one whose probe lifted it, tell operators."""

    def __init__(
        self,
        record: CreditPauseRecord,
        balance: Callable[[], Awaitable[Balance]],
        notices: OperatorNotices | None,
        *,
        probe_every: float,
        on_resume: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._record = record
        self._balance = balance
        self._notices = notices
        self._probe_every = probe_every
        self._on_resume = on_resume
        self._clock = clock
        self.since: float | None = None  # unix seconds; None when not paused
        self._needed = 1  # credits the cheapest refused job needs
        self._persisted = False  # the database holds this pause (a failed write retries)
        self._told: set[int] = set()  # jobs known told (here or by another process)
        self._probe: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def active(self) -> bool:
        return self.since is not None

    async def restore(self) -> None:
        """At start: a pause the database holds goes on (no submit, the probe runs)."""
        self._stopping = False
        paused = await self._record.current()
        if paused is not None:
            self._adopt(paused)
            log.warning(
                "The queue is still paused: the PixVerse account was out of credits (500090) "
                "at %s; checking the balance every %.0fs",
                _when(paused.since),
                self._probe_every,
            )

    async def refresh(self) -> None:
        """Follow the database (several processes): a pause begun elsewhere stops this
        process's submits too; one lifted elsewhere lets its queue move."""
        paused = await self._record.current()
        if paused is None:
            if not self.active:
                return
            if not self._persisted:
                await self._persist()  # its first write failed: the pause still holds here
                return
            log.warning("Another process found credits on the PixVerse account: the queue resumes")
            self._clear()
            self._on_resume()
            return
        if self.since != paused.since:
            if not self.active:
                log.warning(
                    "Another process met 500090 (PixVerse account out of credits): the queue "
                    "is paused here too"
                )
            self._told.clear()
        self._adopt(paused)

    async def pause(self, needed: int) -> None:
        """A submit met 500090: stop starting jobs until the balance covers ``needed``."""
        if self._stopping:
            return
        needed = max(1, needed)
        if not self.active:
            # Held here at once, whatever the database says: no submit until a probe.
            self.since = self._clock()
            self._needed = needed
            self._persisted = False
            self._told.clear()
            self._start_probe()
        else:
            self._needed = min(self._needed, needed)
        await self._persist()

    async def _persist(self) -> None:
        assert self.since is not None
        try:
            paused, began = await self._record.begin(self._needed, self.since)
        except Exception:
            log.warning("Could not save the pause for credits; it holds here", exc_info=True)
            return
        if paused.since != self.since:
            self._told.clear()  # another process's pause, with its own members told
        self._adopt(paused)
        if began:
            log.warning(
                "PixVerse says the account is out of credits (500090): the queue is paused; "
                "checking the balance every %.0fs",
                self._probe_every,
            )
            self._announce(PAUSED_NOTICE.format(every=_every(self._probe_every)))

    async def tell(self, job_ids: Iterable[int]) -> list[int]:
        """Of these waiting jobs, those to be told of the pause now: each job once per pause,
        across restarts and processes (marked told in the database before it is told)."""
        if not self.active:
            return []
        fresh = [job_id for job_id in job_ids if job_id not in self._told]
        if not fresh:
            return []
        told = await self._record.tell(fresh) if self._persisted else fresh
        self._told.update(fresh)  # told now, or already by another process or before a restart
        return told

    async def stop(self) -> None:
        """Stop the probe; the pause stays in the database for the next start."""
        self._stopping = True
        tasks = [*self._tasks, *([self._probe] if self._probe else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._probe = None

    def _adopt(self, paused: Paused) -> None:
        self.since = paused.since
        self._needed = paused.needed
        self._persisted = True
        self._start_probe()

    def _start_probe(self) -> None:
        if self._stopping or (self._probe is not None and not self._probe.done()):
            return
        self._probe = asyncio.create_task(self._probe_loop(), name="credit-probe")
        self._probe.add_done_callback(_log_crash)

    async def _probe_loop(self) -> None:
        while self.active and not self._stopping:
            await asyncio.sleep(self._probe_every)
            since = self.since
            if since is None:
                return  # lifted by another process meanwhile
            # Every pass is guarded: a failed probe (PixVerse down, a bug) waits for the next.
            try:
                balance = await self._balance()
                if balance.total < self._needed:
                    log.info(
                        "Still out of credits (%d, %d needed); the queue stays paused",
                        balance.total,
                        self._needed,
                    )
                    continue
                lifted = await self._record.end(since) if self._persisted else True
            except Exception as exc:
                log.warning("Balance probe failed (%r); the queue stays paused", exc)
                continue
            if lifted:  # this process lifted it: it tells the operators
                self._announce(RESUMED_NOTICE.format(credits=balance.total))
            if self.since == since:
                self._resume(balance.total)
            # Else another process lifted it (``refresh`` saw it first), or a new pause began
            # meanwhile, which this loop now waits out.

    def _resume(self, credits: int) -> None:
        paused_for = self._clock() - (self.since or self._clock())
        self._clear()
        log.warning(
            "PixVerse account has %d credits: the queue resumes after %.0fs", credits, paused_for
        )
        self._on_resume()

    def _clear(self) -> None:
        self.since = None
        self._persisted = False
        self._told.clear()

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


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Background task %s crashed", task.get_name(), exc_info=exc)
