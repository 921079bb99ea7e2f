"""Moderation strikes (``MODERATION_STRIKES``): PixVerse suspends accounts that send many
requests its moderation refuses (docs/pixverse.md, "Envelope and errors"), so a member whose
jobs it refuses that many times in one UTC day is blocked in that server. Both ways count:
refused at upload or submit (ErrCode 500052, 500054, 500063) or as the result's status 7.

* One strike per job (``moderation_strikes``, keyed by the job id): the runner records it
  before it fails the job, so a crash in between cannot lose it and a second look at the same
  result cannot count it twice.
* A member's strikes are counted per server and UTC day, from their last unblock if that was
  later: a moderator who lifts the block gives the member a fresh count, and strikes of jobs
  that were still running while the member was blocked do not block them again at once.
* The block is the one ``/quota-admin block`` sets, with a reason saying why, audited as done
  by the bot (``actor_id``), in the transaction that records the strike. ``/quota-admin
  unblock`` lifts it. The strike row remembers that it blocked, so the moderation log can say
  so when it posts the failed job.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from bot.store.audit import write_audit
from bot.store.clock import Clock, day_of, to_ts, utcnow
from bot.store.db import Database
from bot.store.models import ACTIVE_SQL, Limits

_UNBLOCK_ACTION = "quota.unblock"  # what QuotaAdmin.unblock writes to the audit log


@dataclass(frozen=True, slots=True)
class Strike:
    """One job PixVerse's moderation refused, and where it left its member."""

    job_id: int
    guild_id: int
    user_id: int
    number: int  # the member's strikes here that day (since an unblock), this one included
    limit: int  # MODERATION_STRIKES when it was recorded (0 = off)
    blocked: bool  # this strike blocked the member


def block_reason(count: int) -> str:
    return f"PixVerse's moderation refused {count} of your videos today"


def _count(conn: sqlite3.Connection, guild_id: int, user_id: int, now: float) -> int:
    # A moderator's unblock starts a fresh count: only the strikes after it that day count.
    unblocked = conn.execute(
        "SELECT MAX(created_at) FROM audit_log WHERE guild_id = ? AND target_id = ? AND action = ?",
        (guild_id, user_id, _UNBLOCK_ACTION),
    ).fetchone()[0]
    row = conn.execute(
        "SELECT COUNT(*) FROM moderation_strikes"
        " WHERE guild_id = ? AND user_id = ? AND day = ? AND created_at > ?",
        (guild_id, user_id, day_of(now), -1.0 if unblocked is None else float(unblocked)),
    ).fetchone()
    return int(row[0])


def _block(
    conn: sqlite3.Connection, guild_id: int, user_id: int, count: int, actor_id: int, now: float
) -> bool:
    """Block the member unless they already are; True if this did."""
    conn.execute(
        "INSERT INTO member_settings (guild_id, user_id, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, user_id) DO NOTHING",
        (guild_id, user_id, now),
    )
    reason = block_reason(count)
    changed = conn.execute(
        "UPDATE member_settings SET blocked = 1, block_reason = ?, updated_at = ?"
        " WHERE guild_id = ? AND user_id = ? AND blocked = 0",
        (reason, now, guild_id, user_id),
    ).rowcount
    if not changed:
        return False  # a moderator (or an earlier strike) blocked them already
    write_audit(
        conn,
        guild_id=guild_id,
        actor_id=actor_id,
        action="quota.block",
        target_id=user_id,
        before={"blocked": False, "block_reason": None},
        after={"blocked": True, "block_reason": reason, "moderation_strikes": count},
        now=now,
        reason=reason,
    )
    return True


def record(
    conn: sqlite3.Connection, job_id: int, *, limit: int, actor_id: int, now: float
) -> Strike | None:
    """Count a strike for the job's member, and block them at ``limit``; None if the job does
    not exist or has already ended. Recording the same job again returns its first strike."""
    existing = _of_job(conn, job_id, limit)
    if existing is not None:
        return existing
    job = conn.execute(
        f"SELECT guild_id, user_id FROM jobs WHERE id = ? AND state IN {ACTIVE_SQL}", (job_id,)
    ).fetchone()
    if job is None:
        return None
    guild_id, user_id = int(job[0]), int(job[1])
    conn.execute(
        "INSERT INTO moderation_strikes (job_id, guild_id, user_id, day, number, blocked,"
        " created_at) VALUES (?, ?, ?, ?, 0, 0, ?)",
        (job_id, guild_id, user_id, day_of(now), now),
    )
    number = _count(conn, guild_id, user_id, now)
    blocked = (
        limit > 0 and number >= limit and _block(conn, guild_id, user_id, number, actor_id, now)
    )
    conn.execute(
        "UPDATE moderation_strikes SET number = ?, blocked = ? WHERE job_id = ?",
        (number, int(blocked), job_id),
    )
    return Strike(job_id, guild_id, user_id, number, limit, blocked)


def _of_job(conn: sqlite3.Connection, job_id: int, limit: int) -> Strike | None:
    row = conn.execute(
        "SELECT guild_id, user_id, number, blocked FROM moderation_strikes WHERE job_id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    return Strike(job_id, int(row[0]), int(row[1]), int(row[2]), limit, bool(row[3]))


class Strikes:
    """Moderation strikes; ``actor_id`` is the bot's own user id, the author of its blocks."""

    def __init__(
        self, db: Database, *, limits: Limits, clock: Clock = utcnow, actor_id: int = 0
    ) -> None:
        self._db = db
        self._limit = limits.moderation_strikes
        self._clock = clock
        self._actor_id = actor_id

    @property
    def limit(self) -> int:
        return self._limit

    async def record(self, job_id: int) -> Strike | None:
        """PixVerse's moderation refused this job (at upload or submit, or as the result's
        status 7): one strike against its member, who is blocked in that server at the
        ``MODERATION_STRIKES``-th of the day.
        Recorded even when strikes are off (0), so turning them on counts the day so far."""
        now = to_ts(self._clock())
        return await self._db.write(
            lambda conn: record(conn, job_id, limit=self._limit, actor_id=self._actor_id, now=now)
        )

    async def of_job(self, job_id: int) -> Strike | None:
        """The strike this job gave its member, if PixVerse's moderation refused it."""
        return await self._db.read(lambda conn: _of_job(conn, job_id, self._limit))

    async def today(self, guild_id: int, user_id: int) -> int:
        """The member's strikes in this server today (since their last unblock)."""
        now = to_ts(self._clock())
        return await self._db.read(lambda conn: _count(conn, guild_id, user_id, now))
