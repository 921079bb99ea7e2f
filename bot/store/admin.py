"""What /quota-admin does: each change and its audit row in one transaction.

Every method returns the state after the change, so the reply can show it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Literal

from bot.store import ledger
from bot.store.audit import read_audit, write_audit
from bot.store.clock import Clock, day_of, next_reset, to_ts, utcnow, week_first_day
from bot.store.db import Database
from bot.store.models import (
    AuditEntry,
    GuildSettings,
    Limits,
    QuotaView,
    ServerView,
    TopEntry,
)

MAX_CREDITS = 1_000_000_000  # far above any real allowance; keeps sums well inside int64


def _check_credits(value: int, *, allow_negative: bool = False) -> int:
    value = int(value)
    low = -MAX_CREDITS if allow_negative else 0
    if not low <= value <= MAX_CREDITS:
        raise ValueError(f"credits must be between {low} and {MAX_CREDITS}, not {value}")
    return value


def _member(conn: sqlite3.Connection, guild_id: int, user_id: int, now: float) -> sqlite3.Row:
    """The member's settings row, created with defaults if they have none yet."""
    conn.execute(
        "INSERT INTO member_settings (guild_id, user_id, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, user_id) DO NOTHING",
        (guild_id, user_id, now),
    )
    row: sqlite3.Row = conn.execute(
        "SELECT daily_override, bonus, blocked, block_reason FROM member_settings"
        " WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    ).fetchone()
    return row


def guild_row(conn: sqlite3.Connection, guild_id: int, now: float) -> sqlite3.Row:
    """The server's settings row, created with the defaults if it did not exist."""
    conn.execute(
        "INSERT INTO guild_settings (guild_id, updated_at) VALUES (?, ?)"
        " ON CONFLICT (guild_id) DO NOTHING",
        (guild_id, now),
    )
    row: sqlite3.Row = conn.execute(
        "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,)
    ).fetchone()
    return row


def guild_settings_of(guild_id: int, row: sqlite3.Row) -> GuildSettings:
    return GuildSettings(
        guild_id,
        row["server_cap"],
        bool(row["paused"]),
        row["pause_reason"],
        row["log_channel_id"],
    )


class QuotaAdmin:
    """Moderators' credit controls. Permission checks belong to the caller (the cog)."""

    def __init__(self, db: Database, *, limits: Limits, clock: Clock = utcnow) -> None:
        self._db = db
        self._limits = limits
        self._clock = clock

    def _now(self) -> float:
        return to_ts(self._clock())

    async def _member_change(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        action: str,
        change: Any,
        *,
        role_ids: Iterable[int],
        reason: str | None = None,
    ) -> QuotaView:
        """Run ``change(conn, settings_row, now) -> (before, after)``, audit it, return the view."""
        roles, now, daily = list(role_ids), self._now(), self._limits.daily_credits

        def apply(conn: sqlite3.Connection) -> QuotaView:
            row = _member(conn, guild_id, user_id, now)
            before, after = change(conn, row, now)
            write_audit(
                conn,
                guild_id=guild_id,
                actor_id=actor_id,
                action=action,
                target_id=user_id,
                before=before,
                after=after,
                now=now,
                reason=reason,
            )
            return ledger.quota_view(
                conn, guild_id, user_id, role_ids=roles, daily_default=daily, now=now
            )

        return await self._db.write(apply)

    async def show(self, guild_id: int, user_id: int, *, role_ids: Iterable[int] = ()) -> QuotaView:
        """A member's allowance, bonus, used today, reserved and blocked state."""
        roles, now, daily = list(role_ids), self._now(), self._limits.daily_credits
        return await self._db.read(
            lambda conn: ledger.quota_view(
                conn, guild_id, user_id, role_ids=roles, daily_default=daily, now=now
            )
        )

    async def set_daily(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        daily: int | None,
        *,
        role_ids: Iterable[int] = (),
    ) -> QuotaView:
        """The member's own daily allowance; None goes back to roles/DAILY_CREDITS."""
        value = None if daily is None else _check_credits(daily)

        def change(conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> Any:
            conn.execute(
                "UPDATE member_settings SET daily_override = ?, updated_at = ?"
                " WHERE guild_id = ? AND user_id = ?",
                (value, now, guild_id, user_id),
            )
            return {"daily_override": row["daily_override"]}, {"daily_override": value}

        return await self._member_change(
            guild_id,
            actor_id,
            user_id,
            "quota.set_daily",
            change,
            role_ids=role_ids,
        )

    async def grant(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        credits: int,
        *,
        role_ids: Iterable[int] = (),
        reason: str | None = None,
    ) -> QuotaView:
        """Add one-off bonus credits. A negative grant takes bonus back first; what the bonus
        cannot cover is counted as used today (so it is gone until the next reset, not forever)."""
        amount = _check_credits(credits, allow_negative=True)

        def change(conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> Any:
            day = day_of(now)
            bonus, used = row["bonus"], ledger.get_used(conn, guild_id, user_id, day)
            if amount >= 0:
                new_bonus, new_used = bonus + amount, used
            else:
                taken = min(bonus, -amount)
                new_bonus, new_used = bonus - taken, used + (-amount - taken)
            conn.execute(
                "UPDATE member_settings SET bonus = ?, updated_at = ?"
                " WHERE guild_id = ? AND user_id = ?",
                (new_bonus, now, guild_id, user_id),
            )
            if new_used != used:
                ledger.set_used(conn, guild_id, user_id, day, new_used)
            return (
                {"bonus": bonus, "used_today": used},
                {"bonus": new_bonus, "used_today": new_used, "granted": amount},
            )

        return await self._member_change(
            guild_id,
            actor_id,
            user_id,
            "quota.grant",
            change,
            role_ids=role_ids,
            reason=reason,
        )

    async def reset(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        *,
        role_ids: Iterable[int] = (),
    ) -> QuotaView:
        """Clear today's usage: the member has their whole allowance again today.

        Reservations stay (those jobs are still running), bonus already spent stays spent,
        and the server's spent-today total is unchanged.
        """

        def change(conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> Any:
            day = day_of(now)
            used = ledger.get_used(conn, guild_id, user_id, day)
            ledger.set_used(conn, guild_id, user_id, day, 0)
            return {"used_today": used}, {"used_today": 0}

        return await self._member_change(
            guild_id,
            actor_id,
            user_id,
            "quota.reset",
            change,
            role_ids=role_ids,
        )

    async def block(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        reason: str | None = None,
        *,
        role_ids: Iterable[int] = (),
    ) -> QuotaView:
        """The member cannot start jobs (jobs already accepted still run)."""
        return await self._set_blocked(guild_id, actor_id, user_id, True, reason, role_ids)

    async def unblock(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        *,
        role_ids: Iterable[int] = (),
    ) -> QuotaView:
        return await self._set_blocked(guild_id, actor_id, user_id, False, None, role_ids)

    async def _set_blocked(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        blocked: bool,
        reason: str | None,
        role_ids: Iterable[int],
    ) -> QuotaView:
        def change(conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> Any:
            conn.execute(
                "UPDATE member_settings SET blocked = ?, block_reason = ?, updated_at = ?"
                " WHERE guild_id = ? AND user_id = ?",
                (int(blocked), reason if blocked else None, now, guild_id, user_id),
            )
            before = {"blocked": bool(row["blocked"]), "block_reason": row["block_reason"]}
            return before, {"blocked": blocked, "block_reason": reason if blocked else None}

        return await self._member_change(
            guild_id,
            actor_id,
            user_id,
            "quota.block" if blocked else "quota.unblock",
            change,
            role_ids=role_ids,
            reason=reason,
        )

    # --- server-wide ------------------------------------------------------------------------

    async def set_server_cap(self, guild_id: int, actor_id: int, credits: int) -> ServerView:
        """A daily cap on the whole server's credits (0 = none)."""
        cap = _check_credits(credits)
        now = self._now()

        def apply(conn: sqlite3.Connection) -> ServerView:
            row = guild_row(conn, guild_id, now)
            conn.execute(
                "UPDATE guild_settings SET server_cap = ?, updated_at = ? WHERE guild_id = ?",
                (cap, now, guild_id),
            )
            write_audit(
                conn,
                guild_id=guild_id,
                actor_id=actor_id,
                action="quota.server_cap",
                target_id=None,
                before={"server_cap": row["server_cap"]},
                after={"server_cap": cap},
                now=now,
            )
            return server_view(conn, guild_id, now)

        return await self._db.write(apply)

    async def set_role_daily(
        self, guild_id: int, actor_id: int, role_id: int, credits: int
    ) -> ServerView:
        """Daily allowance for members with this role (0 removes it: DAILY_CREDITS applies)."""
        daily = _check_credits(credits)
        now = self._now()

        def apply(conn: sqlite3.Connection) -> ServerView:
            row = conn.execute(
                "SELECT daily FROM role_allowances WHERE guild_id = ? AND role_id = ?",
                (guild_id, role_id),
            ).fetchone()
            if daily:
                conn.execute(
                    "INSERT INTO role_allowances (guild_id, role_id, daily, updated_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (guild_id, role_id)"
                    " DO UPDATE SET daily = excluded.daily, updated_at = excluded.updated_at",
                    (guild_id, role_id, daily, now),
                )
            else:
                conn.execute(
                    "DELETE FROM role_allowances WHERE guild_id = ? AND role_id = ?",
                    (guild_id, role_id),
                )
            write_audit(
                conn,
                guild_id=guild_id,
                actor_id=actor_id,
                action="quota.role_daily",
                target_id=role_id,
                before={"role_daily": None if row is None else row[0]},
                after={"role_daily": daily or None},
                now=now,
            )
            return server_view(conn, guild_id, now)

        return await self._db.write(apply)

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        row = await self._db.fetch_one(
            "SELECT server_cap, paused, pause_reason, log_channel_id FROM guild_settings"
            " WHERE guild_id = ?",
            (guild_id,),
        )
        return GuildSettings(guild_id) if row is None else guild_settings_of(guild_id, row)

    async def log_channels(self) -> list[tuple[int, int]]:
        """(guild id, log channel id) of every server that set a moderation log channel."""
        rows = await self._db.fetch_all(
            "SELECT guild_id, log_channel_id FROM guild_settings"
            " WHERE log_channel_id IS NOT NULL ORDER BY guild_id"
        )
        return [(int(row["guild_id"]), int(row["log_channel_id"])) for row in rows]

    # --- reports ----------------------------------------------------------------------------

    async def top(
        self, guild_id: int, period: Literal["day", "week"] = "day", *, limit: int = 10
    ) -> list[TopEntry]:
        """Members who spent most credits today, or this ISO week (since Monday 00:00 UTC).

        Counts delivered jobs (bonus-funded included; refunded ones not); resets do not
        hide spending.
        """
        today = day_of(self._now())
        if period == "day":
            rows = await self._db.fetch_all(
                "SELECT user_id, SUM(amount), COUNT(*) FROM ledger"
                " WHERE guild_id = ? AND state = 'committed' AND committed_day = ?"
                " GROUP BY user_id ORDER BY 2 DESC, user_id LIMIT ?",
                (guild_id, today, limit),
            )
        elif period == "week":
            # The week's totals, kept with the ledger (see ledger._add_week_spend), in the
            # index's order: no summing and sorting of the week's jobs here.
            rows = await self._db.fetch_all(
                "SELECT user_id, credits, jobs FROM member_week_spend"
                " WHERE guild_id = ? AND week = ? AND jobs > 0"
                " ORDER BY credits DESC, user_id LIMIT ?",
                (guild_id, week_first_day(today), limit),
            )
        else:
            raise ValueError(f"period must be 'day' or 'week', not {period!r}")
        return [TopEntry(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def audit(
        self, guild_id: int, user_id: int | None = None, *, limit: int = 20
    ) -> list[AuditEntry]:
        """Most recent admin actions first; with a user, those on or by that user."""
        return await read_audit(self._db, guild_id, user_id=user_id, limit=limit)


def server_view(conn: sqlite3.Connection, guild_id: int, now: float) -> ServerView:
    """The server's cap, spent today, reserved, and role allowances."""
    day = day_of(now)
    cap, spent, reserved = conn.execute(
        "SELECT COALESCE((SELECT server_cap FROM guild_settings WHERE guild_id = :g), 0),"
        " COALESCE((SELECT spent FROM guild_days WHERE guild_id = :g AND day = :day), 0),"
        " (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE guild_id = :g"
        "   AND state = 'reserved')",
        {"g": guild_id, "day": day},
    ).fetchone()
    roles = dict(
        conn.execute(
            "SELECT role_id, daily FROM role_allowances WHERE guild_id = ? ORDER BY role_id",
            (guild_id,),
        ).fetchall()
    )
    return ServerView(guild_id, int(cap), int(spent), int(reserved), next_reset(now), roles)
