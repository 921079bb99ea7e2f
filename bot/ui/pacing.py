"""The bot's Discord budget for status messages: who may send the next request, and when.

Discord limits message edits to about 5 per 5 s per channel (channel routes share the
channel's bucket) and every bot-token request to 50 per second (docs/discord.md). Interaction
acks never wait here: they are answered before any of this runs. Below them, in order:
final results, failures, then progress edits. A final may use the whole of a channel's
window; progress edits only part of it, never while a final waits in that channel, and they
are paced per channel on both routes (the interaction webhook has its own bucket, but a
channel full of moving status messages is noise), so a busy channel sees each message
edited less often rather than a storm of edits and 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class Priority(IntEnum):
    RESULT = 0
    FAILURE = 1
    PROGRESS = 2


@dataclass(frozen=True, slots=True)
class PacingLimits:
    channel_requests: int = 5  # per channel_window, on the channel route (Discord's bucket)
    channel_window: float = 5.0
    progress_per_channel: int = 3  # progress edits per channel_window, both routes
    global_per_second: int = 45  # bot-token requests; Discord's global limit is 50
    progress_per_second: int = 25  # of those, progress edits


class _Window:
    """Timestamps of recent sends, to count those within the last ``span`` seconds."""

    __slots__ = ("_span", "_times")

    def __init__(self, span: float) -> None:
        self._times: deque[float] = deque()
        self._span = span

    def count(self, now: float) -> int:
        times = self._times
        while times and times[0] <= now - self._span:
            times.popleft()
        return len(times)

    def free_at(self, now: float, limit: int) -> float:
        """When fewer than ``limit`` sends are in the window again (``now`` if already)."""
        if self.count(now) < limit:
            return now
        return self._times[len(self._times) - limit] + self._span

    def add(self, now: float) -> None:
        self._times.append(now)


class DiscordPacer:
    def __init__(
        self,
        limits: PacingLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits or PacingLimits()
        self._clock = clock
        span = self._limits.channel_window
        self._channel: defaultdict[int, _Window] = defaultdict(lambda: _Window(span))
        self._progress: defaultdict[int, _Window] = defaultdict(lambda: _Window(span))
        self._global = _Window(1.0)
        self._global_progress = _Window(1.0)
        # Per channel, how many finals of each priority wait for the channel's bucket.
        self._finals_waiting: defaultdict[int, Counter[Priority]] = defaultdict(Counter)

    def progress_wait(self, channel_id: int, *, channel_route: bool) -> float:
        """Seconds until a progress edit may go to this channel (0 = now)."""
        now = self._clock()
        if channel_id in self._finals_waiting:
            return 0.25  # finals first: look again shortly
        limits = self._limits
        times = [self._progress[channel_id].free_at(now, limits.progress_per_channel)]
        if channel_route:
            # Keep room in the channel's bucket for finals.
            times.append(self._channel[channel_id].free_at(now, limits.channel_requests - 1))
            times.append(self._global.free_at(now, limits.global_per_second))
            times.append(self._global_progress.free_at(now, limits.progress_per_second))
        return max(times) - now

    def record_progress(self, channel_id: int, *, channel_route: bool) -> None:
        now = self._clock()
        self._progress[channel_id].add(now)
        if channel_route:
            self._channel[channel_id].add(now)
            self._global.add(now)
            self._global_progress.add(now)

    async def final_turn(
        self, channel_id: int, *, channel_route: bool, priority: Priority = Priority.RESULT
    ) -> None:
        """Wait (briefly: a final goes ahead of everything but the bucket itself, and a
        failure lets a waiting result go first) until a final may go, and count it."""
        if channel_route:
            waiting = self._finals_waiting[channel_id]
            waiting[priority] += 1
            try:
                while True:
                    now = self._clock()
                    ready = max(
                        self._channel[channel_id].free_at(now, self._limits.channel_requests),
                        self._global.free_at(now, self._limits.global_per_second),
                    )
                    if ready <= now and not any(
                        waiting[earlier] for earlier in Priority if earlier < priority
                    ):
                        break
                    await asyncio.sleep(max(ready - now, 0.05))
            finally:
                waiting[priority] -= 1
                if not any(waiting.values()):
                    del self._finals_waiting[channel_id]
            now = self._clock()
            self._channel[channel_id].add(now)
            self._global.add(now)
        # A final through the webhook counts against the channel's progress allowance, so
        # the progress edits that follow it in a busy channel thin out.
        self._progress[channel_id].add(self._clock())

    def forget(self, channel_id: int) -> None:
        """Drop an idle channel's windows (called when it has no status messages left)."""
        for table in (self._channel, self._progress):
            window = table.get(channel_id)
            if window is not None and window.count(self._clock()) == 0:
                del table[channel_id]
