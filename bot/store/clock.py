"""UTC time for the store: epoch seconds in SQLite, aware datetimes in Python.

The store keeps every timestamp as unix epoch seconds (REAL) because the credit day is
arithmetic on them: POSIX time has no leap seconds, so a UTC day is exactly 86,400 s and
"today" is ``floor(ts / 86400)`` whatever the process or restart history.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware; injected so tests can move across midnight."""

SECONDS_PER_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ts(moment: datetime) -> float:
    """Epoch seconds of an aware datetime; naive ones are refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: the store only takes timezone-aware times")
    return moment.timestamp()


def from_ts(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def day_of(ts: float) -> int:
    """The UTC day number (days since 1970-01-01) containing ``ts``."""
    return int(ts // SECONDS_PER_DAY)


def day_start(day: int) -> datetime:
    """00:00 UTC of day number ``day``."""
    return _EPOCH + timedelta(days=day)


def next_reset(ts: float) -> datetime:
    """The next 00:00 UTC after ``ts``: when daily allowances start again."""
    return day_start(day_of(ts) + 1)


def week_first_day(day: int) -> int:
    """The Monday of ``day``'s ISO week (day 0, 1970-01-01, was a Thursday)."""
    return day - (day + 3) % 7
