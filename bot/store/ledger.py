"""Credits per (server, member): reserve → commit | release, refunds, and quota views.

The rules, in one place:

* **Allowance** — the member's own ``set`` value if any, else the highest of ``DAILY_CREDITS``
  and the ``role-daily`` values of the roles the caller says the member has.
* **Left** = allowance + bonus − used today − reserved. A job is refused unless its cost fits
  in Left *and* in the server's cap (cap − server spent today − server reserved).
* **Bonus** is a one-off pool, never re-granted. At commit the cost is charged to what is
  left of today's allowance first; only the excess is taken from the bonus, permanently.
  So "used today" counts allowance usage (at most the allowance, save the edge cases below)
  and the identity above holds before and after every commit.
* **Day** — UTC day number of the *commit* (clock.day_of). A job reserved at 23:59 and
  delivered at 00:01 counts on the new day; its reservation held credits the day before.
  Nothing runs at midnight: a new day simply has no ``member_days`` row yet.
* **Actual cost** — when PixVerse reports what a job cost, the commit charges that instead
  of the reservation (``commit``'s ``charged``); a charge above the reservation may take the
  member's raw Left below zero for that day.
* **reserve / commit / release** are idempotent per job (one ``ledger`` row per job, a
  state machine reserved → committed | released; committed → refunded). Release after
  commit and commit after release return False and change nothing.
* **refund_committed** (a moderator removed the result) gives the credits back: it first
  un-counts them from today's usage if they were committed today, and puts whatever cannot be
  un-counted (an earlier day's usage, or usage a reset already cleared) into the bonus.
* **Server spent** is every credit committed in the server that day, bonus-funded included;
  a member's ``reset`` does not clear it (the server really spent them).
* **Bot spend** (``budget_days``, ``bot.store.budget``) is every credit committed that day in
  all servers, for ``BUDGET_DAILY_CREDITS``; refunds do not lower it (PixVerse keeps them).
* **Week spend** (``member_week_spend``) is each member's committed credits and jobs per ISO
  week of the commit day, kept in the same transactions as the ledger rows (a refund takes its
  job back out of the week it was committed in): /quota-admin top ranks a week from it.

Edge cases: if an allowance is lowered (or the bonus taken back) while a job is reserved,
its commit may push "used today" past the allowance; Left is then shown as 0.

The functions taking ``conn`` run on the database thread inside a transaction the caller
opened (``Database.write``); ``Ledger`` reads quota views for callers outside one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.store import budget
from bot.store.clock import Clock, day_of, next_reset, to_ts, utcnow, week_first_day
from bot.store.db import Database
from bot.store.errors import (
    InsufficientCredits,
    MemberBlocked,
    ServerCapReached,
    ServerPaused,
    TooManyJobs,
)
from bot.store.models import ACTIVE_SQL, AllowanceSource, Limits, QuotaView

# One statement for everything a reservation decides on: each aiosqlite statement costs
# interpreter time on the database thread, and this runs for every accepted command.
# Server totals are only summed when needed (a cap is set, or a view asks for them).
_MEMBER_SQL = f"""
SELECT
    m.daily_override,
    COALESCE(m.bonus, 0),
    COALESCE(m.blocked, 0),
    m.block_reason,
    (SELECT MAX(r.daily) FROM role_allowances AS r
      WHERE r.guild_id = :guild AND r.role_id IN (SELECT value FROM json_each(:roles))),
    COALESCE((SELECT d.used FROM member_days AS d
      WHERE d.guild_id = :guild AND d.user_id = :user AND d.day = :day), 0),
    (SELECT COALESCE(SUM(l.amount), 0) FROM ledger AS l
      WHERE l.guild_id = :guild AND l.user_id = :user AND l.state = 'reserved'),
    CASE WHEN :count_jobs THEN
      (SELECT COUNT(*) FROM jobs AS j WHERE j.user_id = :user AND j.state IN {ACTIVE_SQL})
    ELSE 0 END,
    COALESCE(g.server_cap, 0),
    COALESCE(g.paused, 0),
    g.pause_reason,
    CASE WHEN :with_server OR COALESCE(g.server_cap, 0) > 0 THEN
      COALESCE((SELECT gd.spent FROM guild_days AS gd
        WHERE gd.guild_id = :guild AND gd.day = :day), 0)
    ELSE 0 END,
    CASE WHEN :with_server OR COALESCE(g.server_cap, 0) > 0 THEN
      (SELECT COALESCE(SUM(l.amount), 0) FROM ledger AS l
        WHERE l.guild_id = :guild AND l.state = 'reserved')
    ELSE 0 END
FROM (SELECT 1) AS one
LEFT JOIN member_settings AS m ON m.guild_id = :guild AND m.user_id = :user
LEFT JOIN guild_settings AS g ON g.guild_id = :guild
"""


def resolve_allowance(
    daily_override: int | None, role_max: int | None, daily_default: int
) -> tuple[int, AllowanceSource]:
    """The member's daily allowance and where it comes from."""
    if daily_override is not None:
        return daily_override, "own"
    if role_max is not None and role_max > daily_default:
        return role_max, "role"
    return daily_default, "default"


@dataclass(frozen=True, slots=True)
class MemberNumbers:
    """Everything a reservation decides on, read in one statement."""

    daily_override: int | None
    base_allowance: int  # max(DAILY_CREDITS, role values): the allowance without an own value
    allowance: int
    allowance_source: AllowanceSource
    bonus: int
    blocked: bool
    block_reason: str | None
    used_today: int
    reserved: int
    active_jobs: int
    server_cap: int
    paused: bool
    pause_reason: str | None
    server_used_today: int
    server_reserved: int

    @property
    def raw_left(self) -> int:
        return self.allowance + self.bonus - self.used_today - self.reserved

    @property
    def left(self) -> int:
        return max(0, self.raw_left)

    @property
    def server_left(self) -> int | None:
        if self.server_cap <= 0:
            return None
        return max(0, self.server_cap - self.server_used_today - self.server_reserved)


def role_json(role_ids: Iterable[int]) -> str:
    return json.dumps([int(role) for role in role_ids])


def load_member(
    conn: sqlite3.Connection,
    guild_id: int,
    user_id: int,
    *,
    role_ids: Iterable[int],
    daily_default: int,
    day: int,
    count_jobs: bool = False,
    with_server: bool = False,
) -> MemberNumbers:
    row = conn.execute(
        _MEMBER_SQL,
        {
            "guild": guild_id,
            "user": user_id,
            "roles": role_json(role_ids),
            "day": day,
            "count_jobs": count_jobs,
            "with_server": with_server,
        },
    ).fetchone()
    (
        override,
        bonus,
        blocked,
        block_reason,
        role_max,
        used,
        reserved,
        active,
        cap,
        paused,
        pause_reason,
        server_used,
        server_reserved,
    ) = tuple(row)
    base = max(daily_default, role_max) if role_max is not None else daily_default
    allowance, source = resolve_allowance(override, role_max, daily_default)
    return MemberNumbers(
        daily_override=override,
        base_allowance=base,
        allowance=allowance,
        allowance_source=source,
        bonus=bonus,
        blocked=bool(blocked),
        block_reason=block_reason,
        used_today=used,
        reserved=reserved,
        active_jobs=active,
        server_cap=cap,
        paused=bool(paused),
        pause_reason=pause_reason,
        server_used_today=server_used,
        server_reserved=server_reserved,
    )


def check_reserve(
    numbers: MemberNumbers,
    amount: int,
    *,
    max_jobs_per_user: int | None,
    resets_at: datetime | None = None,
    cheapest: int | None = None,
) -> None:
    """Raise the first Refusal that applies; blocked members are refused before anything else."""
    if numbers.blocked:
        raise MemberBlocked(numbers.block_reason)
    if numbers.paused:
        raise ServerPaused(numbers.pause_reason)
    if max_jobs_per_user is not None and numbers.active_jobs >= max_jobs_per_user:
        raise TooManyJobs(numbers.active_jobs, max_jobs_per_user)
    if amount > numbers.raw_left:
        raise InsufficientCredits(
            needed=amount,
            left=numbers.left,
            allowance=numbers.allowance,
            bonus=numbers.bonus,
            used=numbers.used_today,
            reserved=numbers.reserved,
            resets_at=resets_at,
            cheapest=cheapest,
        )
    server_left = numbers.server_left
    if server_left is not None and amount > server_left:
        raise ServerCapReached(
            needed=amount, left=server_left, cap=numbers.server_cap, resets_at=resets_at
        )


def insert_reservation(
    conn: sqlite3.Connection,
    *,
    job_id: int,
    guild_id: int,
    user_id: int,
    amount: int,
    base_allowance: int,
    now: float,
) -> bool:
    """Record the reservation (checks already done); False if this job already has one."""
    cursor = conn.execute(
        "INSERT INTO ledger (job_id, guild_id, user_id, amount, base_allowance, state,"
        " reserved_at) VALUES (?, ?, ?, ?, ?, 'reserved', ?) ON CONFLICT (job_id) DO NOTHING",
        (job_id, guild_id, user_id, amount, base_allowance, now),
    )
    return cursor.rowcount == 1


def commit(
    conn: sqlite3.Connection, job_id: int, now: float, *, charged: int | None = None
) -> bool:
    """Turn the job's reservation into usage on today's UTC day; False unless it was reserved.

    ``charged`` is what PixVerse reported the job cost (``credits`` in its result), when it
    did: that amount is committed instead of the reservation, everywhere the reservation
    would have counted (usage, bonus, server and bot spend, week totals), and the ledger row
    keeps the reservation in ``reserved_amount``. A charge above the reservation is committed
    in full all the same (PixVerse took it): the member's usage may then pass their allowance
    and bonus, so their raw Left goes below zero for that day (``MemberNumbers.raw_left``;
    /quota shows 0) and the next job waits for the reset, as after a lowered allowance.
    """
    day = day_of(now)
    row = conn.execute(
        "SELECT l.guild_id, l.user_id, l.amount, l.base_allowance, l.state,"
        " m.daily_override, COALESCE(m.bonus, 0),"
        " COALESCE((SELECT d.used FROM member_days AS d WHERE d.guild_id = l.guild_id"
        "   AND d.user_id = l.user_id AND d.day = ?), 0)"
        " FROM ledger AS l LEFT JOIN member_settings AS m"
        "   ON m.guild_id = l.guild_id AND m.user_id = l.user_id"
        " WHERE l.job_id = ?",
        (day, job_id),
    ).fetchone()
    if row is None or row[4] != "reserved":
        return False
    guild_id, user_id, reserved, base, _, override, bonus, used = tuple(row)
    amount = reserved if charged is None else charged
    # The own value is read now (a moderator may have changed it); roles are only known
    # when the member acts, so the role/default part is the one seen at reserve time.
    allowance = override if override is not None else base
    to_allowance = min(amount, max(0, allowance - used))
    from_bonus = min(amount - to_allowance, max(0, bonus))
    to_allowance = amount - from_bonus  # whatever neither covers still counts as usage
    conn.execute(
        "UPDATE ledger SET state = 'committed', committed_at = ?, committed_day = ?,"
        " from_bonus = ?, amount = ?, reserved_amount = ? WHERE job_id = ?",
        (now, day, from_bonus, amount, reserved if amount != reserved else None, job_id),
    )
    _add_usage(conn, guild_id, user_id, day, to_allowance)
    _add_week_spend(conn, guild_id, user_id, day, amount, 1)
    conn.execute(
        "INSERT INTO guild_days (guild_id, day, spent) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, day) DO UPDATE SET spent = guild_days.spent + excluded.spent",
        (guild_id, day, amount),
    )
    budget.add_committed(conn, day, amount)
    if from_bonus:
        conn.execute(
            "UPDATE member_settings SET bonus = bonus - ?, updated_at = ?"
            " WHERE guild_id = ? AND user_id = ?",
            (from_bonus, now, guild_id, user_id),
        )
    return True


def release(conn: sqlite3.Connection, job_id: int, now: float, reason: str | None = None) -> bool:
    """Give a reservation back (failure, moderation, cancel, timeout); False unless reserved."""
    cursor = conn.execute(
        "UPDATE ledger SET state = 'released', released_at = ?, release_reason = ?"
        " WHERE job_id = ? AND state = 'reserved'",
        (now, reason, job_id),
    )
    return cursor.rowcount == 1


def refund_committed(conn: sqlite3.Connection, job_id: int, now: float) -> int:
    """Give back a committed job's credits; returns how many (0 if it was not committed)."""
    row = conn.execute(
        "SELECT guild_id, user_id, amount, from_bonus, committed_day, state"
        " FROM ledger WHERE job_id = ?",
        (job_id,),
    ).fetchone()
    if row is None or row[5] != "committed":
        return 0
    guild_id, user_id, amount, from_bonus, committed_day, _ = tuple(row)
    today = day_of(now)
    uncount = 0
    if committed_day == today:
        used = get_used(conn, guild_id, user_id, today)
        uncount = min(used, amount - from_bonus)
        _add_usage(conn, guild_id, user_id, today, -uncount)
    to_bonus = amount - uncount
    if to_bonus:
        add_bonus(conn, guild_id, user_id, to_bonus, now)
    conn.execute(
        "UPDATE guild_days SET spent = MAX(0, spent - ?) WHERE guild_id = ? AND day = ?",
        (amount, guild_id, committed_day),
    )
    _add_week_spend(conn, guild_id, user_id, committed_day, -amount, -1)
    conn.execute(
        "UPDATE ledger SET state = 'refunded', refunded_at = ? WHERE job_id = ?",
        (now, job_id),
    )
    return int(amount)


def get_used(conn: sqlite3.Connection, guild_id: int, user_id: int, day: int) -> int:
    row = conn.execute(
        "SELECT used FROM member_days WHERE guild_id = ? AND user_id = ? AND day = ?",
        (guild_id, user_id, day),
    ).fetchone()
    return 0 if row is None else int(row[0])


def _add_usage(conn: sqlite3.Connection, guild_id: int, user_id: int, day: int, delta: int) -> None:
    if delta == 0:
        return
    conn.execute(
        "INSERT INTO member_days (guild_id, user_id, day, used) VALUES (?, ?, ?, MAX(0, ?))"
        " ON CONFLICT (guild_id, user_id, day) DO UPDATE SET used = MAX(0, member_days.used + ?)",
        (guild_id, user_id, day, delta, delta),
    )


def _add_week_spend(
    conn: sqlite3.Connection, guild_id: int, user_id: int, day: int, credits: int, jobs: int
) -> None:
    # Ranking a week straight from the ledger sorts every job the server committed that week
    # (tens of ms for a busy server); these totals are indexed in ranking order instead.
    conn.execute(
        "INSERT INTO member_week_spend (guild_id, week, user_id, credits, jobs)"
        " VALUES (?, ?, ?, MAX(0, ?), MAX(0, ?)) ON CONFLICT (guild_id, week, user_id)"
        " DO UPDATE SET credits = MAX(0, member_week_spend.credits + ?),"
        " jobs = MAX(0, member_week_spend.jobs + ?)",
        (guild_id, week_first_day(day), user_id, credits, jobs, credits, jobs),
    )


def set_used(conn: sqlite3.Connection, guild_id: int, user_id: int, day: int, used: int) -> None:
    conn.execute(
        "INSERT INTO member_days (guild_id, user_id, day, used) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (guild_id, user_id, day) DO UPDATE SET used = excluded.used",
        (guild_id, user_id, day, used),
    )


def add_bonus(
    conn: sqlite3.Connection, guild_id: int, user_id: int, delta: int, now: float
) -> None:
    conn.execute(
        "INSERT INTO member_settings (guild_id, user_id, bonus, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (guild_id, user_id) DO UPDATE"
        " SET bonus = member_settings.bonus + excluded.bonus, updated_at = excluded.updated_at",
        (guild_id, user_id, delta, now),
    )


def quota_view(
    conn: sqlite3.Connection,
    guild_id: int,
    user_id: int,
    *,
    role_ids: Iterable[int],
    daily_default: int,
    now: float,
) -> QuotaView:
    numbers = load_member(
        conn,
        guild_id,
        user_id,
        role_ids=role_ids,
        daily_default=daily_default,
        day=day_of(now),
        with_server=True,
    )
    return QuotaView(
        guild_id=guild_id,
        user_id=user_id,
        allowance=numbers.allowance,
        allowance_source=numbers.allowance_source,
        bonus=numbers.bonus,
        used_today=numbers.used_today,
        reserved=numbers.reserved,
        left=numbers.left,
        blocked=numbers.blocked,
        block_reason=numbers.block_reason,
        daily_override=numbers.daily_override,
        server_cap=numbers.server_cap,
        server_used_today=numbers.server_used_today,
        server_reserved=numbers.server_reserved,
        resets_at=next_reset(now),
    )


class Ledger:
    """Members' quota views for callers outside a transaction (each one read snapshot).

    Reserving, committing, releasing and refunding happen inside the job transactions
    (``bot.store.jobs``), through the functions above.
    """

    def __init__(self, db: Database, *, limits: Limits, clock: Clock = utcnow) -> None:
        self._db = db
        self._limits = limits
        self._clock = clock

    async def quota(
        self, guild_id: int, user_id: int, *, role_ids: Iterable[int] = ()
    ) -> QuotaView:
        """What /quota shows: allowance, bonus, used today, reserved, left, server cap, reset."""
        return await self._quota(guild_id, user_id, list(role_ids), self._limits.daily_credits)

    async def quota_for_job(self, job_id: int) -> QuotaView | None:
        """The job owner's quota now, with the allowance their roles gave at reservation.

        For the runner, which does not know members' roles; None without a reservation.
        """
        row = await self._db.fetch_one(
            "SELECT guild_id, user_id, base_allowance FROM ledger WHERE job_id = ?", (job_id,)
        )
        if row is None:
            return None
        return await self._quota(int(row[0]), int(row[1]), [], int(row[2]))

    async def _quota(
        self, guild_id: int, user_id: int, roles: list[int], daily_default: int
    ) -> QuotaView:
        now = to_ts(self._clock())
        return await self._db.read(
            lambda conn: quota_view(
                conn, guild_id, user_id, role_ids=roles, daily_default=daily_default, now=now
            )
        )
