"""The poll scheduler: decides which generating job PixVerse is asked about next.

One loop for every job (no sleeping task per job). Each job is due at the time its schedule
(``PollSchedule``) gives; when more jobs are due than the request budget allows, the ones
most likely to be done go first. A verified webhook is the fast path: that job is checked at
once in the budget's urgent lane, past every queued poll, and its own polling stops.
Webhooks are trusted only while they arrive: when jobs keep turning out done at a fallback
poll with no webhook seen, the schedule goes back to polling in earnest.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.jobs.schedule import Estimator, Key, Lane, PollSchedule, RequestBudget, Window
from bot.store.db import StorageUnavailable

log = logging.getLogger(__name__)

# Jobs found done by a poll, in a row, while webhooks were expected: they no longer arrive.
MISSED_WEBHOOKS = 3
# Polls falling due this close together are sent in one pass of the loop: a thousand jobs in
# flight fall due every few milliseconds, and each wake-up of the process costs far more CPU
# than the poll it sends (docs/architecture.md, "CPU"). A pass sends the polls due up to
# half this early and wakes half this late, so on average a poll goes out at its time.
COALESCE_SECONDS = 0.1

Check = Callable[[int], Awaitable[None]]


@dataclass(slots=True)
class _Entry:
    job_id: int
    key: Key
    started: float  # wall-clock seconds when PixVerse accepted the job
    checked: float = 0.0  # generation seconds at the last "still generating" answer
    polls: int = 0
    version: int = 0  # heap entries of an older version are stale
    in_flight: bool = False
    urgent: bool = False  # a webhook said it changed: check again as soon as possible
    webhook: bool = False  # a webhook arrived for it: no more scheduled polls


class PollScheduler:
    def __init__(
        self,
        check: Check,
        budget: RequestBudget,
        estimator: Estimator,
        schedule: PollSchedule,
        *,
        webhooks: bool = False,
        concurrency: int = 16,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._budget = budget
        self._estimator = estimator
        self._schedule = schedule
        self._webhooks_configured = webhooks
        self._webhooks_expected = webhooks
        self._missed = 0
        self._clock = clock
        self._monotonic = monotonic
        self._slots = asyncio.Semaphore(concurrency)
        self._entries: dict[int, _Entry] = {}
        self._due: list[tuple[float, int, int, int]] = []  # (when, seq, job id, version)
        self._ready: list[tuple[float, int, int, int]] = []  # (-chance done, seq, id, version)
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        # When the loop is asleep, the time it will wake by itself; while it works, -inf:
        # a poll planned later than that needs no wake-up.
        self._asleep_until = -math.inf
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # -- what the runner tells it ------------------------------------------------------------

    def add(self, job_id: int, key: Key, started: float) -> None:
        entry = _Entry(job_id, key, started)
        self._entries[job_id] = entry
        self._plan(entry, self.elapsed(entry))

    def remove(self, job_id: int, *, finished: bool = False) -> None:
        """Stop polling a job; ``finished`` when a poll or webhook found it final."""
        entry = self._entries.pop(job_id, None)
        if entry is None or not finished or not self._webhooks_expected:
            return
        if entry.webhook:
            self._missed = 0
            return
        self._missed += 1
        if self._missed >= MISSED_WEBHOOKS:
            log.warning(
                "PixVerse's webhooks stopped arriving (%d jobs in a row found done by polling); "
                "polling closely again until one arrives",
                self._missed,
            )
            self._webhooks_expected = False
            for other in self._entries.values():
                if not other.in_flight:
                    self._plan(other, self.elapsed(other))

    def still_running(self, job_id: int, elapsed: float) -> None:
        """A poll answered "still generating" at ``elapsed`` seconds."""
        entry = self._entries.get(job_id)
        if entry is None:
            return
        entry.in_flight = False
        entry.checked = elapsed
        entry.polls += 1
        if entry.urgent:
            # A webhook arrived while this poll was on its way: look once more.
            entry.urgent = False
            self._spawn_check(entry, Lane.URGENT)
            return
        entry.webhook = False  # a webhook said "changed", yet it runs: keep polling it
        self._plan(entry, elapsed)

    def retry_later(self, job_id: int, delay: float) -> None:
        """A poll failed (PixVerse unreachable, an unexpected error): try again in ``delay``."""
        entry = self._entries.get(job_id)
        if entry is None:
            return
        entry.in_flight = False
        self._push(entry, delay)

    def webhook(self, job_id: int) -> bool:
        """PixVerse says this job changed: check it now, ahead of every queued poll."""
        if self._webhooks_configured:
            self._webhooks_expected = True
            self._missed = 0
        entry = self._entries.get(job_id)
        if entry is None:
            return False
        entry.webhook = True
        if entry.in_flight:
            entry.urgent = True
        else:
            entry.version += 1  # drop its queued poll
            self._spawn_check(entry, Lane.URGENT)
        return True

    def checked(self, job_id: int) -> float | None:
        """Generation seconds at the job's last "still generating" answer, if any."""
        entry = self._entries.get(job_id)
        return entry.checked if entry is not None and entry.polls else None

    def window(self, key: Key) -> Window:
        return self._estimator.window(key)

    def elapsed(self, entry: _Entry) -> float:
        return max(0.0, self._clock() - entry.started)

    @property
    def webhooks_expected(self) -> bool:
        return self._webhooks_expected

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._entries

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                # One bad pass must not stop the polling of every other job.
                log.exception("Poll scheduler pass failed; carrying on")
                await asyncio.sleep(0.5)
                continue
            if self._ready:
                continue
            if self._due:
                self._asleep_until = self._due[0][0] + COALESCE_SECONDS / 2
                timeout: float | None = self._asleep_until - self._monotonic()
            else:
                self._asleep_until = math.inf
                timeout = None
            try:
                await wait_event(self._wake, timeout)
            finally:
                self._asleep_until = -math.inf

    async def _pass(self) -> None:
        self._collect()
        while not self._stopping:
            entry = self._best()
            if entry is None:
                return
            if not self._budget.try_acquire(Lane.POLL):
                # Out of budget: wait for the next token, then give it to whoever is most
                # likely done by then (jobs that fell due meanwhile may outrank this one).
                await self._budget.acquire(Lane.POLL)
                self._collect()
                entry = self._best()
                if entry is None:
                    self._budget.give_back()
                    return
            heapq.heappop(self._ready)
            await self._slots.acquire()
            entry.in_flight = True
            self._spawn(self._run_check(entry), f"poll-{entry.job_id}")

    def _collect(self) -> None:
        """Move the jobs that fell due to the ready heap, most likely done first."""
        horizon = self._monotonic() + COALESCE_SECONDS / 2
        while self._due and self._due[0][0] <= horizon:
            _, _, job_id, version = heapq.heappop(self._due)
            entry = self._entries.get(job_id)
            if entry is None or entry.version != version or entry.in_flight:
                continue
            chance = self._estimator.chance_done(entry.key, entry.checked, self.elapsed(entry))
            heapq.heappush(self._ready, (-chance, next(self._seq), job_id, version))

    def _best(self) -> _Entry | None:
        while self._ready:
            _, _, job_id, version = self._ready[0]
            entry = self._entries.get(job_id)
            if entry is not None and entry.version == version and not entry.in_flight:
                return entry
            heapq.heappop(self._ready)
        return None

    def _plan(self, entry: _Entry, elapsed: float) -> None:
        window = self._estimator.window(entry.key)
        delay = self._schedule.next_delay(elapsed, window, webhooks=self._webhooks_expected)
        self._push(entry, delay)

    def _push(self, entry: _Entry, delay: float) -> None:
        entry.version += 1
        when = self._monotonic() + delay
        heapq.heappush(self._due, (when, next(self._seq), entry.job_id, entry.version))
        if when < self._asleep_until:
            self._wake.set()

    def _spawn_check(self, entry: _Entry, lane: Lane) -> None:
        entry.in_flight = True

        async def urgent() -> None:
            await self._budget.acquire(lane)
            await self._slots.acquire()
            await self._run_check(entry)

        self._spawn(urgent(), f"check-{entry.job_id}")

    async def _run_check(self, entry: _Entry) -> None:
        version, polls = entry.version, entry.polls
        try:
            await self._check(entry.job_id)
        except asyncio.CancelledError:
            raise
        except StorageUnavailable:
            # The store reported it once; the result is recorded when the disk is back.
            self.retry_later(entry.job_id, self._schedule.late_delay)
        except Exception:
            log.exception("Job %d: checking PixVerse's result failed; trying again", entry.job_id)
            self.retry_later(entry.job_id, self._schedule.late_delay)
        finally:
            self._slots.release()
        stranded = entry.in_flight and entry.version == version and entry.polls == polls
        if stranded and self._entries.get(entry.job_id) is entry:
            # The check neither finished nor rescheduled the job: never leave it stranded.
            self.retry_later(entry.job_id, self._schedule.late_delay)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_event(event: asyncio.Event, seconds: float | None) -> None:
    """Wait for ``event`` at most ``seconds``. ``asyncio.timeout`` rather than ``wait_for``:
    on Python 3.11 the latter can swallow a cancellation that arrives as the event is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
