"""What /mod changes in the store: where generation commands may be used, the words refused
in prompts, pausing a server and its moderation log channel.

Each change and its audit row (who, what, before, after, when) are one transaction. A
request that would leave things as they are changes nothing and writes no audit row; the
result says so (``changed``), so the reply can too.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bot.refusal import Refusal
from bot.store.admin import guild_row, guild_settings_of
from bot.store.audit import write_audit
from bot.store.clock import Clock, to_ts, utcnow
from bot.store.db import Database
from bot.store.models import ACTIVE_SQL, GuildSettings, Job

T = TypeVar("T")

MAX_ALLOWED_CHANNELS = 50
MAX_FILTERS = 100
MAX_PHRASE = 100  # characters of one normalized phrase (the table's CHECK says the same)


class RuleRefused(Refusal, ValueError):
    """A /mod change the store will not make; the message says what to change."""


@dataclass(frozen=True, slots=True)
class ServerRules:
    """A server's rules for new jobs, read in one snapshot before anything is charged."""

    guild_id: int
    allowed_channels: tuple[int, ...] = ()
    filters: tuple[str, ...] = ()
    paused: bool = False
    pause_reason: str | None = None

    def channel_allowed(self, *channel_ids: int | None) -> bool:
        """True with no allow list, or when one of ``channel_ids`` (a channel, and a
        thread's parent) is on it."""
        if not self.allowed_channels:
            return True
        return any(cid in self.allowed_channels for cid in channel_ids if cid is not None)

    def refused_phrase(self, text: str) -> str | None:
        """The first filtered word or phrase ``text`` contains, or None."""
        return find_phrase(text, self.filters)


@dataclass(frozen=True, slots=True)
class ListChange(Generic[T]):
    """The list after a change, and whether the change did anything."""

    changed: bool
    items: tuple[T, ...]


@dataclass(frozen=True, slots=True)
class SettingsChange:
    changed: bool
    settings: GuildSettings


def normalize_phrase(text: str) -> str:
    """How a filtered phrase is stored and compared: casefolded, single spaces."""
    return " ".join(text.casefold().split())


def _pattern(phrase: str) -> re.Pattern[str]:
    # Whole words only: "ass" must not refuse "class", but "big ass" still matches in
    # "a BIG  Ass!" (the text is normalized the same way as the phrase).
    return re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)")


def find_phrase(text: str, phrases: Iterable[str]) -> str | None:
    """The first of ``phrases`` (normalized) found in ``text`` as whole words, or None."""
    haystack = normalize_phrase(text)
    for phrase in phrases:
        if phrase and _pattern(phrase).search(haystack):
            return phrase
    return None


def check_phrase(text: str) -> str:
    phrase = normalize_phrase(text)
    if not phrase:
        raise RuleRefused("Give a word or phrase to filter, not only spaces.")
    if len(phrase) > MAX_PHRASE:
        raise RuleRefused(
            f"That phrase is {len(phrase)} characters; filter at most {MAX_PHRASE} at a time."
        )
    return phrase


@dataclass(frozen=True, slots=True)
class _GuildList:
    """One per-server list a moderator edits (allowed channels, filtered phrases): where it
    is stored, its cap, and how its changes are audited."""

    table: str
    column: str
    order: str
    limit: int
    full: str  # the refusal when the list is at its cap; {count} is filled in
    add_action: str
    remove_action: str
    flag: str  # the audit's before/after key saying whether the item is on the list

    def items(self, conn: sqlite3.Connection, guild_id: int) -> tuple[Any, ...]:
        rows = conn.execute(
            f"SELECT {self.column} FROM {self.table} WHERE guild_id = ? ORDER BY {self.order}",
            (guild_id,),
        ).fetchall()
        return tuple(r[0] for r in rows)

    def add(
        self, conn: sqlite3.Connection, guild_id: int, actor_id: int, item: Any, now: float
    ) -> ListChange[Any]:
        before = self.items(conn, guild_id)
        if item in before:
            return ListChange(False, before)
        if len(before) >= self.limit:
            raise RuleRefused(self.full.format(count=len(before)))
        conn.execute(
            f"INSERT INTO {self.table} (guild_id, {self.column}, added_by, created_at)"
            " VALUES (?, ?, ?, ?)",
            (guild_id, item, actor_id, now),
        )
        self._audit(conn, guild_id, actor_id, self.add_action, item, now, on_list=True)
        return ListChange(True, self.items(conn, guild_id))

    def remove(
        self, conn: sqlite3.Connection, guild_id: int, actor_id: int, item: Any, now: float
    ) -> ListChange[Any]:
        deleted = conn.execute(
            f"DELETE FROM {self.table} WHERE guild_id = ? AND {self.column} = ?",
            (guild_id, item),
        ).rowcount
        if deleted:
            self._audit(conn, guild_id, actor_id, self.remove_action, item, now, on_list=False)
        return ListChange(bool(deleted), self.items(conn, guild_id))

    def _audit(
        self,
        conn: sqlite3.Connection,
        guild_id: int,
        actor_id: int,
        action: str,
        item: Any,
        now: float,
        *,
        on_list: bool,
    ) -> None:
        write_audit(
            conn,
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            target_id=None,
            before={self.column: item, self.flag: not on_list},
            after={self.column: item, self.flag: on_list},
            now=now,
        )


# Table and column names below are constants, never user input.
_CHANNELS = _GuildList(
    table="allowed_channels",
    column="channel_id",
    order="created_at, channel_id",
    limit=MAX_ALLOWED_CHANNELS,
    full="This server already allows {count} channels, the most the bot keeps: deny one first.",
    add_action="mod.channel_allow",
    remove_action="mod.channel_deny",
    flag="allowed",
)
_FILTERS = _GuildList(
    table="prompt_filters",
    column="phrase",
    order="phrase",
    limit=MAX_FILTERS,
    full=(
        "This server already filters {count} words or phrases, the most the bot keeps: "
        "remove one first."
    ),
    add_action="mod.filter_add",
    remove_action="mod.filter_remove",
    flag="filtered",
)


class Moderation:
    """Moderators' server controls. Permission checks belong to the caller (the cog)."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def _now(self) -> float:
        return to_ts(self._clock())

    # --- rules for new jobs -----------------------------------------------------------------

    async def rules(self, guild_id: int) -> ServerRules:
        def read(conn: sqlite3.Connection) -> ServerRules:
            row = conn.execute(
                "SELECT paused, pause_reason FROM guild_settings WHERE guild_id = ?", (guild_id,)
            ).fetchone()
            return ServerRules(
                guild_id,
                _CHANNELS.items(conn, guild_id),
                _FILTERS.items(conn, guild_id),
                paused=bool(row[0]) if row else False,
                pause_reason=row[1] if row else None,
            )

        return await self._db.read(read)

    async def allow_channel(self, guild_id: int, actor_id: int, channel_id: int) -> ListChange[int]:
        now = self._now()
        return await self._db.write(
            lambda conn: _CHANNELS.add(conn, guild_id, actor_id, channel_id, now)
        )

    async def deny_channel(self, guild_id: int, actor_id: int, channel_id: int) -> ListChange[int]:
        """Take a channel off the allow list (with none left, every channel is allowed)."""
        now = self._now()
        return await self._db.write(
            lambda conn: _CHANNELS.remove(conn, guild_id, actor_id, channel_id, now)
        )

    async def add_filter(self, guild_id: int, actor_id: int, text: str) -> ListChange[str]:
        phrase = check_phrase(text)
        now = self._now()
        return await self._db.write(
            lambda conn: _FILTERS.add(conn, guild_id, actor_id, phrase, now)
        )

    async def remove_filter(self, guild_id: int, actor_id: int, text: str) -> ListChange[str]:
        phrase = normalize_phrase(text)
        now = self._now()
        return await self._db.write(
            lambda conn: _FILTERS.remove(conn, guild_id, actor_id, phrase, now)
        )

    # --- server settings --------------------------------------------------------------------

    async def pause(self, guild_id: int, actor_id: int, reason: str | None) -> SettingsChange:
        """No new jobs in this server (jobs already accepted still run)."""
        return await self._change_settings(
            guild_id, actor_id, "mod.pause", reason, paused=1, pause_reason=reason
        )

    async def resume(self, guild_id: int, actor_id: int) -> SettingsChange:
        return await self._change_settings(
            guild_id, actor_id, "mod.resume", None, paused=0, pause_reason=None
        )

    async def set_log_channel(
        self, guild_id: int, actor_id: int, channel_id: int | None
    ) -> SettingsChange:
        """Where finished jobs are posted for moderators; None turns the log off."""
        return await self._change_settings(
            guild_id, actor_id, "mod.log_channel", None, log_channel_id=channel_id
        )

    async def _change_settings(
        self, guild_id: int, actor_id: int, action: str, reason: str | None, **fields: Any
    ) -> SettingsChange:
        # Names come from this module only (never from a caller), so they are safe in SQL.
        names = sorted(fields)
        now = self._now()

        def apply(conn: sqlite3.Connection) -> SettingsChange:
            row = guild_row(conn, guild_id, now)
            before = {name: row[name] for name in names}
            after = {name: fields[name] for name in names}
            if before == after:
                return SettingsChange(False, guild_settings_of(guild_id, row))
            assignments = ", ".join(f"{name} = ?" for name in names)
            conn.execute(
                f"UPDATE guild_settings SET {assignments}, updated_at = ? WHERE guild_id = ?",
                (*after.values(), now, guild_id),
            )
            write_audit(
                conn,
                guild_id=guild_id,
                actor_id=actor_id,
                action=action,
                target_id=None,
                before=_readable(before),
                after=_readable(after),
                now=now,
                reason=reason,
            )
            return SettingsChange(True, guild_settings_of(guild_id, guild_row(conn, guild_id, now)))

        return await self._db.write(apply)

    # --- finding a server's jobs (autocomplete) -------------------------------------------

    async def unfinished_jobs(
        self, guild_id: int, query: str = "", *, limit: int = 25
    ) -> list[Job]:
        """This server's jobs not yet done/failed/cancelled, newest first."""
        return await self._search(guild_id, f"state IN {ACTIVE_SQL}", query, limit)

    async def finished_jobs(self, guild_id: int, query: str = "", *, limit: int = 25) -> list[Job]:
        """This server's delivered results that were not removed, newest first."""
        return await self._search(guild_id, "state = 'done' AND removed_at IS NULL", query, limit)

    async def _search(self, guild_id: int, where: str, query: str, limit: int) -> list[Job]:
        query = query.strip().lstrip("#")
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._db.fetch_all(
            f"SELECT * FROM jobs WHERE guild_id = :g AND {where} AND (:q = ''"
            "  OR CAST(id AS TEXT) LIKE :prefix ESCAPE '\\'"
            "  OR json_extract(params, '$.prompt') LIKE :sub ESCAPE '\\')"
            " ORDER BY id DESC LIMIT :limit",
            {
                "g": guild_id,
                "q": query,
                "prefix": f"{escaped}%",
                "sub": f"%{escaped}%",
                "limit": limit,
            },
        )
        return [Job.from_row(row) for row in rows]


def _readable(values: dict[str, Any]) -> dict[str, Any]:
    # paused is stored as 0/1; the audit log shows it as the boolean it means.
    return {k: bool(v) if k == "paused" else v for k, v in values.items()}
