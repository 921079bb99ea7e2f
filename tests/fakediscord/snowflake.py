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

    def on_shard(self, shard_id: int, shard_count: int) -> int:
        """A new id that shard ``shard_id`` of ``shard_count`` serves (``(id >> 22) % count``,
        Discord's routing): the next id, its timestamp moved up to ``count - 1`` ms ahead."""
        if not 0 <= shard_id < shard_count:
            raise ValueError(f"no shard {shard_id} of {shard_count}")
        timestamp = self.next() >> 22
        timestamp += (shard_id - timestamp) % shard_count
        value = max(timestamp << 22, self._last + 1)
        # Within the chosen millisecond, the low bits keep ids unique.
        assert (value >> 22) % shard_count == shard_id
        self._last = value
        return value

    def past(self, seconds_ago: float) -> int:
        """An id whose timestamp is `seconds_ago` in the past (unique, not monotonic)."""
        then_ms = int((time.time() - seconds_ago) * 1000) - DISCORD_EPOCH_MS
        self._backdated += 1
        return (then_ms << 22) | (self._backdated & 0x3FFFFF)
