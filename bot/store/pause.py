"""The queue's pause for credits (ErrCode 500090), kept in the database so that it outlives a
restart and holds in every process sharing the database (docs/pixverse.md, "Envelope and
errors"; docs/architecture.md, "Several processes").

Two rows of the key/value ``meta`` table, none while the queue runs:

* ``credit_pause``: ``{"since": unix seconds, "needed": credits}`` — since when the queue is
  paused and the credits the cheapest refused job needs (the balance probe lifts the pause
  when the account has that many);
* ``credit_pause_told``: the ids of the queued jobs whose members were told of this pause, so
  each is told once, whichever process tells it and across restarts.

Each change is one write transaction that reads what it changes: on PostgreSQL every write
transaction holds the store's advisory lock, so two processes never both begin, end or tell.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from bot.store.db import Database

PAUSE_KEY = "credit_pause"
TOLD_KEY = "credit_pause_told"

_GET = "SELECT value FROM meta WHERE key = ?"
_PUT = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


@dataclass(frozen=True, slots=True)
class Paused:
    """The queue waits for credits: since when (unix seconds), and how many a probe needs."""

    since: float
    needed: int


def _read(conn: sqlite3.Connection) -> Paused | None:
    row = conn.execute(_GET, (PAUSE_KEY,)).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
        return Paused(since=float(data["since"]), needed=max(1, int(data["needed"])))
    except (ValueError, TypeError, KeyError):
        # A row this code did not write: a pause all the same, waiting for any credit.
        return Paused(since=0.0, needed=1)


def _write(conn: sqlite3.Connection, paused: Paused) -> None:
    value = json.dumps({"since": paused.since, "needed": paused.needed})
    conn.execute(_PUT, (PAUSE_KEY, value))


def _told(conn: sqlite3.Connection) -> set[int]:
    row = conn.execute(_GET, (TOLD_KEY,)).fetchone()
    if row is None:
        return set()
    try:
        return {int(job_id) for job_id in json.loads(row[0])}
    except (ValueError, TypeError):
        return set()


class CreditPauseRecord:
    """The persisted pause; every method is one read or one write transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def current(self) -> Paused | None:
        """The pause in force, or None while the queue runs."""
        return await self._db.read(_read)

    async def begin(self, needed: int, since: float) -> tuple[Paused, bool]:
        """A submit met 500090: pause the queue from ``since`` until the balance covers
        ``needed``, or, if it is paused already, lower what it waits for to ``needed``.
        Returns the pause and whether this call began it (then the caller tells operators)."""
        needed = max(1, needed)

        def begin(conn: sqlite3.Connection) -> tuple[Paused, bool]:
            existing = _read(conn)
            if existing is not None:
                if needed < existing.needed:
                    existing = Paused(existing.since, needed)
                    _write(conn, existing)
                return existing, False
            paused = Paused(since, needed)
            _write(conn, paused)
            conn.execute("DELETE FROM meta WHERE key = ?", (TOLD_KEY,))
            return paused, True

        return await self._db.write(begin)

    async def tell(self, job_ids: Iterable[int]) -> list[int]:
        """Of ``job_ids``, those whose members are yet to be told of the pause, marked told
        now (in the order given); none while the queue runs."""
        wanted = list(dict.fromkeys(int(job_id) for job_id in job_ids))
        if not wanted:
            return []

        def tell(conn: sqlite3.Connection) -> list[int]:
            if _read(conn) is None:
                return []
            told = _told(conn)
            fresh = [job_id for job_id in wanted if job_id not in told]
            if fresh:
                conn.execute(_PUT, (TOLD_KEY, json.dumps(sorted(told.union(fresh)))))
            return fresh

        return await self._db.write(tell)

    async def end(self, since: float) -> bool:
        """A probe found credits: lift the pause that began at ``since``. False when it was
        lifted already (by another process) or another pause has replaced it."""

        def end(conn: sqlite3.Connection) -> bool:
            existing = _read(conn)
            if existing is None or existing.since != since:
                return False
            conn.execute("DELETE FROM meta WHERE key IN (?, ?)", (PAUSE_KEY, TOLD_KEY))
            return True

        return await self._db.write(end)
