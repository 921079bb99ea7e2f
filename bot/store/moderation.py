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

from bot.store.admin import guild_row, guild_settings_of
from bot.store.audit import write_audit
from bot.store.clock import Clock, to_ts, utcnow
from bot.store.db import Database
from bot.store.models import ACTIVE_SQL, GuildSettings, Job

T = TypeVar("T")

MAX_ALLOWED_CHANNELS = 50
MAX_FILTERS = 100
MAX_PHRASE = 100  # characters of one normalized phrase (the table's CHECK says the same)


class RuleRefused(ValueError):
    """A /mod change the store will not make; the message says what to change."""

    # Read by the command tree: the message goes to the moderator as it is.
    user_facing = True


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


def _channels(conn: sqlite3.Connection, guild_id: int) -> tuple[int, ...]:
    rows = conn.execute(
        "SELECT channel_id FROM allowed_channels WHERE guild_id = ?"
        " ORDER BY created_at, channel_id",
        (guild_id,),
    ).fetchall()
    return tuple(int(r[0]) for r in rows)


def _filters(conn: sqlite3.Connection, guild_id: int) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT phrase FROM prompt_filters WHERE guild_id = ? ORDER BY phrase", (guild_id,)
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


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
                _channels(conn, guild_id),
                _filters(conn, guild_id),
                paused=bool(row[0]) if row else False,
                pause_reason=row[1] if row else None,
            )

        return await self._db.read(read)

    async def allow_channel(self, guild_id: int, actor_id: int, channel_id: int) -> ListChange[int]:
        now = self._now()

        def apply(conn: sqlite3.Connection) -> ListChange[int]:
            before = _channels(conn, guild_id)
            if channel_id in before:
                return ListChange(False, before)
            if len(before) >= MAX_ALLOWED_CHANNELS:
                raise RuleRefused(
                    f"This server already allows {len(before)} channels, the most the bot "
                    "keeps: deny one first."
                )
            conn.execute(
                "INSERT INTO allowed_channels (guild_id, channel_id, added_by, created_at)"
                " VALUES (?, ?, ?, ?)",
                (guild_id, channel_id, actor_id, now),
            )
            self._audit_channel(conn, guild_id, actor_id, "mod.channel_allow", channel_id, now)
            return ListChange(True, _channels(conn, guild_id))

        return await self._db.write(apply)

    async def deny_channel(self, guild_id: int, actor_id: int, channel_id: int) -> ListChange[int]:
        """Take a channel off the allow list (with none left, every channel is allowed)."""
        now = self._now()

        def apply(conn: sqlite3.Connection) -> ListChange[int]:
            deleted = conn.execute(
                "DELETE FROM allowed_channels WHERE guild_id = ? AND channel_id = ?",
                (guild_id, channel_id),
            ).rowcount
            if deleted:
                self._audit_channel(conn, guild_id, actor_id, "mod.channel_deny", channel_id, now)
            return ListChange(bool(deleted), _channels(conn, guild_id))

        return await self._db.write(apply)

    @staticmethod
    def _audit_channel(
        conn: sqlite3.Connection,
        guild_id: int,
        actor_id: int,
        action: str,
        channel_id: int,
        now: float,
    ) -> None:
        allowed = action == "mod.channel_allow"
        write_audit(
            conn,
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            target_id=None,
            before={"channel_id": channel_id, "allowed": not allowed},
            after={"channel_id": channel_id, "allowed": allowed},
            now=now,
        )

    async def add_filter(self, guild_id: int, actor_id: int, text: str) -> ListChange[str]:
        phrase = check_phrase(text)
        now = self._now()

        def apply(conn: sqlite3.Connection) -> ListChange[str]:
            before = _filters(conn, guild_id)
            if phrase in before:
                return ListChange(False, before)
            if len(before) >= MAX_FILTERS:
                raise RuleRefused(
                    f"This server already filters {len(before)} words or phrases, the most the "
                    "bot keeps: remove one first."
                )
            conn.execute(
                "INSERT INTO prompt_filters (guild_id, phrase, added_by, created_at)"
                " VALUES (?, ?, ?, ?)",
                (guild_id, phrase, actor_id, now),
            )
            self._audit_filter(conn, guild_id, actor_id, "mod.filter_add", phrase, now)
            return ListChange(True, _filters(conn, guild_id))

        return await self._db.write(apply)

    async def remove_filter(self, guild_id: int, actor_id: int, text: str) -> ListChange[str]:
        phrase = normalize_phrase(text)
        now = self._now()

        def apply(conn: sqlite3.Connection) -> ListChange[str]:
            deleted = conn.execute(
                "DELETE FROM prompt_filters WHERE guild_id = ? AND phrase = ?", (guild_id, phrase)
            ).rowcount
            if deleted:
                self._audit_filter(conn, guild_id, actor_id, "mod.filter_remove", phrase, now)
            return ListChange(bool(deleted), _filters(conn, guild_id))

        return await self._db.write(apply)

    @staticmethod
    def _audit_filter(
        conn: sqlite3.Connection,
        guild_id: int,
        actor_id: int,
        action: str,
        phrase: str,
        now: float,
    ) -> None:
        added = action == "mod.filter_add"
        write_audit(
            conn,
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            target_id=None,
            before={"phrase": phrase, "filtered": not added},
            after={"phrase": phrase, "filtered": added},
            now=now,
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
