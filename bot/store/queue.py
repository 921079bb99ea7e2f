"""The fair queue: which queued job starts next, and each job's place in line.

Fairness (the README's "Members take turns"): the next job to start is the oldest queued job
of the member whose most recent start is oldest; members who never started go first. It is
keyed by Discord user id across servers, like the per-member active-job limit, because both
protect the bot's one PixVerse account. A job waiting for a retry (``next_attempt_at`` in
the future) keeps its place but cannot start yet.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable

from bot.store.clock import Clock, to_ts, utcnow
from bot.store.db import Database
from bot.store.leases import Leases
from bot.store.ledger import role_json
from bot.store.models import FINAL_STATES, Job, JobState
from bot.store.pause import PAUSE_KEY

_ELIGIBLE = "j.state = 'queued' AND (j.next_attempt_at IS NULL OR j.next_attempt_at <= :now)"
_LAST_START = "(SELECT MAX(s.started_at) FROM jobs AS s WHERE s.user_id = j.user_id)"
_NOT_EXCLUDED = "j.user_id NOT IN (SELECT value FROM json_each(:exclude))"
_RUNNING = "('uploading', 'submitted', 'generating')"


def _fair_order(rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
    """Order queued jobs (given oldest first, each with ``last_start``) as they would start.

    Members take turns: in turn ``n`` every member with more than ``n`` jobs queued starts
    their ``n``-th oldest, and within a turn members go by their last start (never started
    first), then by their oldest queued job. A member's first job comes before anyone's
    second because a start makes that member the most recent starter.
    """
    first: dict[int, tuple[float, float, int]] = {}
    turns: dict[int, int] = {}
    keyed: list[tuple[int, tuple[float, float, int], sqlite3.Row]] = []
    for row in rows:
        user = row["user_id"]
        if user not in first:
            start = -math.inf if row["last_start"] is None else float(row["last_start"])
            first[user] = (start, row["created_at"], row["id"])
            turns[user] = 0
        else:
            turns[user] += 1
        keyed.append((turns[user], first[user], row))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in keyed]


# The same order as ``_fair_order``, counted in SQL: a job's place is one more than the number
# of queued jobs whose (turn, member's last start, member's oldest job) comes first. One pass
# in SQLite instead of every queued row crossing into Python for each new job.
_POSITION = """
WITH q AS (
    SELECT j.id, j.user_id,
           ROW_NUMBER() OVER w AS turn,
           FIRST_VALUE(j.created_at) OVER w AS first_created,
           FIRST_VALUE(j.id) OVER w AS first_id
    FROM jobs AS j WHERE j.state = 'queued'
    WINDOW w AS (PARTITION BY j.user_id ORDER BY j.created_at, j.id)
),
k AS MATERIALIZED (
    SELECT q.id, q.turn, q.first_created, q.first_id,
           COALESCE((SELECT MAX(s.started_at) FROM jobs AS s WHERE s.user_id = q.user_id),
                    -1e308) AS last_start
    FROM q
)
SELECT 1 + (
    SELECT COUNT(*) FROM k
    WHERE (k.turn, k.last_start, k.first_created, k.first_id)
        < (t.turn, t.last_start, t.first_created, t.first_id)
) AS position
FROM k AS t WHERE t.id = :job_id
"""


class FairQueue:
    """The queued jobs in the order members take turns; every method is one thread hop."""

    def __init__(
        self, db: Database, *, clock: Clock = utcnow, leases: Leases | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._leases = leases

    def _now(self) -> float:
        return to_ts(self._clock())

    async def claim_next(
        self,
        *,
        exclude_users: Iterable[int] = (),
        state: JobState = JobState.UPLOADING,
        max_active: int | None = None,
    ) -> Job | None:
        """Pick the next job and move it out of the queue (started_at = now) atomically."""
        jobs = await self.claim_many(
            1, exclude_users=exclude_users, state=state, max_active=max_active
        )
        return jobs[0] if jobs else None

    async def claim_many(
        self,
        limit: int,
        *,
        exclude_users: Iterable[int] = (),
        state: JobState = JobState.UPLOADING,
        max_active: int | None = None,
        unless_paused: bool = False,
    ) -> list[Job]:
        """Up to ``limit`` jobs, claimed as ``claim_next`` would one after another, in one
        transaction (one thread hop); fewer than ``limit`` when no more can start.

        With ``max_active``, only while fewer jobs than that run, counted in the database:
        the bot-wide limit when several processes share it. With ``unless_paused``, none
        while the queue is paused for credits (``bot.store.pause``), whichever process
        paused it. With leases, this process becomes the jobs' owner."""
        now, exclude = self._now(), role_json(exclude_users)
        if JobState(state) in FINAL_STATES or state == JobState.QUEUED:
            raise ValueError(f"cannot claim a job into {state}")
        values: dict[str, object] = {"state": JobState(state).value, "exclude": exclude}
        owning = bound = ""
        if self._leases is not None:
            owning = ", owner = :owner, lease_until = :until"
            values |= {"owner": self._leases.owner, "until": self._leases.until(now)}
        if max_active is not None:
            bound = f" AND (SELECT COUNT(*) FROM jobs AS a WHERE a.state IN {_RUNNING}) < :max"
            values["max"] = max_active
        if unless_paused:
            bound += " AND NOT EXISTS (SELECT 1 FROM meta WHERE key = :paused)"
            values["paused"] = PAUSE_KEY

        def claim(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            rows: list[sqlite3.Row] = []
            while len(rows) < limit:
                # The same order as _fair_order's first pick, in one statement, so two
                # claims can never hand out the same job. Each claim of a batch starts a
                # microsecond after the one before, as if claimed one by one.
                row = conn.execute(
                    "UPDATE jobs SET state = :state, updated_at = :now, started_at = :now"
                    f"{owning} WHERE id = (SELECT j.id FROM jobs AS j WHERE {_ELIGIBLE} AND"
                    f" {_NOT_EXCLUDED} ORDER BY {_LAST_START} NULLS FIRST, j.created_at, j.id"
                    f" LIMIT 1 /*FOR UPDATE SKIP LOCKED*/){bound}"
                    " RETURNING *",
                    values | {"now": now + len(rows) * 1e-6},
                ).fetchone()
                if row is None:
                    break
                rows.append(row)
            return rows

        return [Job.from_row(row) for row in await self._db.write(claim)]

    async def next_fair_batch(self, limit: int, *, exclude_users: Iterable[int] = ()) -> list[Job]:
        """The next ``limit`` jobs to start, in order, members taking turns."""
        now, exclude = self._now(), role_json(exclude_users)
        rows = await self._db.fetch_all(
            f"SELECT j.*, {_LAST_START} AS last_start FROM jobs AS j"
            f" WHERE {_ELIGIBLE} AND {_NOT_EXCLUDED} ORDER BY j.created_at, j.id",
            {"now": now, "exclude": exclude},
        )
        return [Job.from_row(row) for row in _fair_order(rows)[:limit]]

    async def queue_position(self, job_id: int) -> int | None:
        """1-based place of a queued job in the fair order (retries waiting included)."""
        row = await self._db.fetch_one(_POSITION, {"job_id": job_id})
        return None if row is None else int(row["position"])
