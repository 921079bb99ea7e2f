"""When a generating job is likely done, when to ask PixVerse, and how fast PixVerse may be asked.

Polling every 5 s (the simple way; docs/pixverse.md, "Latency and polling") costs one request
per 5 s of generation and shows a result 2.5 s late on average. Generation times of one
model/quality/duration cluster, so the schedule learns them: no poll before the earliest
likely finish, then dense polls through the likely window, sparse ones long past it. With
PixVerse's webhooks arriving, polls are only the fallback for a lost or late webhook.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

# docs/pixverse.md: Turbo ≤ 15 s, v3.5 < 1 min, ComfyUI's I2V estimate 30 s, 60–120 s guidance.
DEFAULT_ESTIMATES: dict[str, float] = {"360p": 30.0, "540p": 45.0, "720p": 60.0, "1080p": 90.0}
FALLBACK_ESTIMATE = 60.0
Key = tuple[str, str, int]  # model, quality, duration


@dataclass(frozen=True, slots=True)
class Window:
    """Where a job's finish is likely to fall, in seconds of generation."""

    earliest: float
    median: float
    latest: float


class Estimator:
    """Generation seconds per (model, quality, duration), learnt from recent jobs.

    Without samples, a prior from the published figures with a wide window; a few samples
    narrow it to what this account really sees.
    """

    def __init__(self, window: int = 50, *, default: float | None = None) -> None:
        self._samples: dict[Key, deque[float]] = {}
        self._sorted: dict[Key, list[float]] = {}
        # Asked for every poll of every job; it changes only when a sample arrives.
        self._windows: dict[Key, Window] = {}
        self._size = window
        self._default = default

    def record(self, key: Key, seconds: float) -> None:
        samples = self._samples.setdefault(key, deque(maxlen=self._size))
        samples.append(seconds)
        self._sorted[key] = sorted(samples)
        self._windows.clear()  # one key's samples move every other key's prior

    def has(self, key: Key) -> bool:
        return key in self._sorted

    def estimate(self, key: Key) -> float:
        return self.window(key).median

    def window(self, key: Key) -> Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = self._window(key)
        return window

    def _window(self, key: Key) -> Window:
        ordered = self._sorted.get(key)
        if not ordered:
            prior = self._prior(key)
            return Window(prior * 0.5, prior, prior * 1.5)
        median = ordered[len(ordered) // 2]  # the median shrugs off one stuck job
        # Few samples say little about the tails: widen the window until more arrive.
        slack = 0.15 if len(ordered) < 5 else 0.05
        return Window(ordered[0] * (1 - slack), median, ordered[-1] * (1 + slack))

    def chance_done(self, key: Key, since: float, now: float) -> float:
        """How likely a job not done at ``since`` seconds is done at ``now`` seconds."""
        before, after = self._cdf(key, since), self._cdf(key, now)
        if before >= 1.0:
            return 1.0 if now > since else 0.0
        return (after - before) / (1.0 - before)

    def _cdf(self, key: Key, seconds: float) -> float:
        ordered = self._sorted.get(key)
        if not ordered:
            w = self.window(key)
            return min(max((seconds - w.earliest) / (w.latest - w.earliest), 0.0), 1.0)
        return bisect.bisect_right(ordered, seconds) / (len(ordered) + 1)

    def _prior(self, key: Key) -> float:
        if self._default is not None:
            return self._default
        # An account that is fast (or slow) for one combination is so for the others: scale
        # the published figures by how this account's learnt medians compare with them.
        speeds = [
            ordered[len(ordered) // 2] / _published(known)
            for known, ordered in self._sorted.items()
        ]
        speed = sorted(speeds)[len(speeds) // 2] if speeds else 1.0
        return _published(key) * speed


def _published(key: Key) -> float:
    _, quality, duration = key
    base = DEFAULT_ESTIMATES.get(quality, FALLBACK_ESTIMATE)
    return base * (1.6 if duration >= 8 else 1.0)


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Seconds from one poll of a generating job to the next."""

    first_delay: float = 5.0  # the earliest first poll (docs: first poll after ~5 s)
    min_delay: float = 1.0  # never closer than this for one job
    steady_delay: float = 1.5  # inside the likely window: a result is shown ~0.75 s late
    late_delay: float = 15.0  # long past the window: PixVerse is slow, ease off
    webhook_grace: float = 20.0  # with webhooks: how long past the window a fallback waits

    def next_delay(self, elapsed: float, window: Window, *, webhooks: bool) -> float:
        if webhooks:
            fallback = window.latest + self.webhook_grace
            delay = fallback - elapsed if elapsed < fallback else self.late_delay
        elif elapsed < window.earliest:
            delay = max(window.earliest - elapsed, self.first_delay - elapsed)
        elif elapsed <= window.latest * 2:
            delay = self.steady_delay
        else:
            delay = self.late_delay
        return max(delay, self.min_delay)


class Lane(IntEnum):
    """Who gets PixVerse's next request first: a job a webhook says is done, then polls and
    starting jobs, which take turns."""

    URGENT = 0
    POLL = 1
    START = 2


class RequestBudget:
    """A token bucket bounding the bot's request rate to PixVerse, served by lane.

    When requests wait for tokens, they are let through ``quantum`` seconds' worth at a time
    (as far as the burst allows) rather than one per token: the same rate, but one wake-up
    of the process for several requests instead of one each (docs/architecture.md, "CPU").
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        quantum: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._quantum = quantum
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock()
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {lane: deque() for lane in Lane}
        self._last_shared = Lane.START
        self._timer: asyncio.TimerHandle | None = None

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """A new rate from now on (the tokens earned so far are kept)."""
        if rate != self._rate:
            self._refill()
            self._rate = rate
            if any(self._waiting.values()):
                self._serve()  # the timer was set for the old rate

    async def acquire(self, lane: Lane = Lane.START) -> None:
        self._refill()
        if self._tokens >= 1 and not any(self._waiting.values()):
            self._tokens -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[lane].append(future)
        self._serve()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._tokens += 1  # granted as we were cancelled: give it back
            else:
                self._waiting[lane].remove(future)
            raise

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def try_acquire(self, lane: Lane = Lane.POLL) -> bool:
        """Take a token only if one is free now and nobody of an earlier lane waits."""
        self._refill()
        if self._tokens >= 1 and not any(
            self._waiting[earlier] for earlier in Lane if earlier <= lane
        ):
            self._tokens -= 1
            return True
        return False

    def give_back(self) -> None:
        """Return a token taken but not used."""
        self._tokens = min(self._burst, self._tokens + 1)

    def _serve(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._refill()
        while self._tokens >= 1:
            future = self._next_waiter()
            if future is None:
                return
            self._tokens -= 1
            future.set_result(None)
        if any(self._waiting.values()):
            delay = (1 - self._tokens) / self._rate
            if self._quantum > delay:
                delay = min(self._quantum, (self._burst - self._tokens) / self._rate)
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delay, self._serve)

    def _next_waiter(self) -> asyncio.Future[None] | None:
        urgent = self._pop(Lane.URGENT)
        if urgent is not None:
            return urgent
        # Polls and starts alternate, so neither a burst of new jobs nor a crowd of due
        # polls can starve the other.
        order = (
            (Lane.POLL, Lane.START) if self._last_shared is Lane.START else (Lane.START, Lane.POLL)
        )
        for lane in order:
            future = self._pop(lane)
            if future is not None:
                self._last_shared = lane
                return future
        return None

    def _pop(self, lane: Lane) -> asyncio.Future[None] | None:
        queue = self._waiting[lane]
        while queue:
            future = queue.popleft()
            if not future.done():
                return future
        return None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
