"""Which process runs which job, when several processes share one database (PostgreSQL).

A process that claims a job (or finishes it, and so delivers it) writes itself as the job's
``owner`` with a lease (``lease_until``) that it renews while it lives. A job whose lease
lapsed — its process died, or lost the database — is taken over by another process, which
resumes it from its stored state: the trace id is stored before a submit, so a job taken over
is resent with the same one and never generated twice (docs/pixverse.md, "Idempotency").
A process stopping cleanly hands its jobs over at once. On a single process (SQLite) none of
this runs and the columns stay NULL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from bot.store.clock import Clock, to_ts, utcnow
from bot.store.db import Database
from bot.store.models import Job

# A runner not heard from in this many lease periods is forgotten.
FORGET_AFTER_LEASES = 10
# Jobs taken over per pass: a process that finds a dead one's thousand jobs spreads the work.
TAKE_OVER_BATCH = 200

_RUNNING = "('uploading', 'submitted', 'generating')"
# Jobs a process holds: being uploaded, submitted or generated, or finished and delivering.
_HELD = f"(state IN {_RUNNING} OR delivery_since IS NOT NULL)"


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """This process's name as an owner, and how long its claim on a job holds unrenewed."""

    owner: str
    seconds: float


class Leases:
    """This process's claims on the jobs it runs; every method is one write transaction."""

    def __init__(self, db: Database, terms: LeaseTerms, *, clock: Clock = utcnow) -> None:
        self._db = db
        self.terms = terms
        self._clock = clock

    @property
    def owner(self) -> str:
        return self.terms.owner

    def _now(self) -> float:
        return to_ts(self._clock())

    def until(self, now: float | None = None) -> float:
        return (self._now() if now is None else now) + self.terms.seconds

    async def heartbeat(self) -> int:
        """Say this process is alive; returns how many processes are (itself included)."""
        now, owner = self._now(), self.owner
        alive_since = now - 2 * self.terms.seconds
        forget_before = now - FORGET_AFTER_LEASES * self.terms.seconds

        def beat(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT INTO runners (id, started_at, heartbeat_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (owner, now, now),
            )
            conn.execute("DELETE FROM runners WHERE heartbeat_at < ?", (forget_before,))
            (alive,) = conn.execute(
                "SELECT COUNT(*) FROM runners WHERE heartbeat_at >= ?", (alive_since,)
            ).fetchone()
            return max(1, int(alive))

        return await self._db.write(beat)

    async def renew(self, held: Iterable[int]) -> set[int]:
        """Extend the leases of the jobs this process holds; returns those of them that another
        process now owns (it cancelled or took them over): the caller lets go of them."""
        ids = sorted(set(held))
        if not ids:
            return set()
        now, owner = self._now(), self.owner
        listed = json.dumps(ids)

        def renew(conn: sqlite3.Connection) -> set[int]:
            conn.execute(
                "UPDATE jobs SET lease_until = :until WHERE owner = :me"
                " AND id IN (SELECT value FROM json_each(:ids))",
                {"until": self.until(now), "me": owner, "ids": listed},
            )
            rows = conn.execute(
                "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(:ids))"
                " AND (owner IS NULL OR owner != :me)",
                {"ids": listed, "me": owner},
            ).fetchall()
            return {int(row[0]) for row in rows}

        return await self._db.write(renew)

    async def take_over(self, *, limit: int = TAKE_OVER_BATCH) -> list[Job]:
        """Claim the jobs whose lease lapsed (or never had one: a database moved from SQLite),
        oldest first; the caller resumes each from its state."""
        now, owner = self._now(), self.owner

        def take(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                "UPDATE jobs SET owner = :me, lease_until = :until"
                " WHERE id IN (SELECT id FROM jobs"
                f"  WHERE {_HELD} AND (lease_until IS NULL OR lease_until < :now)"
                "  ORDER BY id LIMIT :limit /*FOR UPDATE SKIP LOCKED*/)"
                " RETURNING *",
                {"me": owner, "until": self.until(now), "now": now, "limit": limit},
            ).fetchall()
            return sorted((Job.from_row(row) for row in rows), key=lambda job: job.id)

        return await self._db.write(take)

    async def hand_over(self) -> int:
        """Stopping cleanly: let the other processes take this one's jobs at once."""
        owner = self.owner

        def release(conn: sqlite3.Connection) -> int:
            changed = conn.execute(
                f"UPDATE jobs SET lease_until = 0 WHERE owner = ? AND {_HELD}", (owner,)
            ).rowcount
            conn.execute("DELETE FROM runners WHERE id = ?", (owner,))
            return int(changed)

        return await self._db.write(release)
