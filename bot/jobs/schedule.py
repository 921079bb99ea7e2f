"""When to poll a generating job, and how fast PixVerse may be asked at all.

PixVerse advises polling every 3–5 s (pixverse-api.md §9), but a 60 s generation polled every
3 s costs 20 requests, most of them useless. The schedule instead spends few requests early
and gets denser near the expected finish, learnt from past jobs of the same
model/quality/duration; past the expected time it settles at a steady pace.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# §9: Turbo ≤ 15 s, v3.5 < 1 min, ComfyUI's I2V estimate 30 s, MCP guidance 60–120 s.
DEFAULT_ESTIMATES: dict[str, float] = {"360p": 30.0, "540p": 45.0, "720p": 60.0, "1080p": 90.0}
FALLBACK_ESTIMATE = 60.0


@dataclass(frozen=True, slots=True)
class PollSchedule:
    first_delay: float = 5.0  # §9: first poll after ~5 s
    min_delay: float = 3.0  # never closer than PixVerse's 3 s advice
    steady_delay: float = 5.0  # once past the estimate: every 5 s
    late_delay: float = 15.0  # long past the estimate: PixVerse is slow, ease off

    def next_delay(self, elapsed: float, estimate: float, polls: int) -> float:
        """Seconds from now to the next poll of a job ``elapsed`` seconds into generation."""
        if polls == 0:
            return max(self.first_delay - elapsed, self.min_delay)
        remaining = estimate - elapsed
        if remaining > 0:
            # Halve the distance to the expected finish: few polls early, dense near the end.
            return max(self.min_delay, min(remaining / 2, 10.0))
        if elapsed < estimate * 2:
            return self.steady_delay
        return self.late_delay


class Estimator:
    """Expected generation seconds per (model, quality, duration), from recent jobs."""

    def __init__(self, window: int = 20) -> None:
        self._samples: dict[tuple[str, str, int], deque[float]] = {}
        self._window = window

    def record(self, model: str, quality: str, duration: int, seconds: float) -> None:
        key = (model, quality, duration)
        self._samples.setdefault(key, deque(maxlen=self._window)).append(seconds)

    def has(self, model: str, quality: str, duration: int) -> bool:
        return bool(self._samples.get((model, quality, duration)))

    def estimate(self, model: str, quality: str, duration: int) -> float:
        samples = self._samples.get((model, quality, duration))
        if samples:
            ordered = sorted(samples)
            return ordered[len(ordered) // 2]  # the median shrugs off one stuck job
        base = DEFAULT_ESTIMATES.get(quality, FALLBACK_ESTIMATE)
        return base * (1.6 if duration >= 8 else 1.0)


class RateLimiter:
    """A token bucket bounding the bot's overall request rate to PixVerse."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)
