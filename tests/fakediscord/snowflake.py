"""Snowflake ids with real timestamps, so discord.py's `created_at` (and `Interaction.expires_at`)
mean what they mean on Discord."""

from __future__ import annotations

import time

DISCORD_EPOCH_MS = 1_420_070_400_000


class SnowflakeFactory:
    def __init__(self) -> None:
        self._last = 0
        self._backdated = 0

    def next(self) -> int:
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = now_ms << 22
        # Strictly increasing even when many ids are made within one millisecond.
        if value <= self._last:
            value = self._last + 1
        self._last = value
        return value

    def past(self, seconds_ago: float) -> int:
        """An id whose timestamp is `seconds_ago` in the past (unique, not monotonic)."""
        then_ms = int((time.time() - seconds_ago) * 1000) - DISCORD_EPOCH_MS
        self._backdated += 1
        return (then_ms << 22) | (self._backdated & 0x3FFFFF)
