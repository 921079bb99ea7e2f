"""The fair queue: which queued job starts next, and each job's place in line.

Fairness (the README's "Members take turns"): the next job to start is the oldest queued job
of the member whose most recent start is oldest; members who never started go first. It is
keyed by Discord user id across servers, like the per-member active-job limit, because both
protect the bot's one PixVerse account. A job waiting for a retry (``next_attempt_at`` in
the future) keeps its place but cannot start yet.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
from collections import deque
from collections.abc import Iterable

from bot.store.clock import Clock, to_ts, utcnow
from bot.store.db import Database
from bot.store.ledger import role_json
from bot.store.models import FINAL_STATES, Job, JobState

_ELIGIBLE = "j.state = 'queued' AND (j.next_attempt_at IS NULL OR j.next_attempt_at <= :now)"
_LAST_START = "(SELECT MAX(s.started_at) FROM jobs AS s WHERE s.user_id = j.user_id)"
_NOT_EXCLUDED = "j.user_id NOT IN (SELECT value FROM json_each(:exclude))"


def _fair_order(rows: list[sqlite3.Row], now: float) -> list[sqlite3.Row]:
    """Order queued jobs (given oldest first, each with ``last_start``) as they would start."""
    per_user: dict[int, deque[sqlite3.Row]] = {}
    last_start: dict[int, float] = {}
    for row in rows:
        user = row["user_id"]
        if user not in per_user:
            per_user[user] = deque()
            start = row["last_start"]
            last_start[user] = -math.inf if start is None else float(start)
        per_user[user].append(row)
    heap = [
        (last_start[user], jobs[0]["created_at"], jobs[0]["id"], user)
        for user, jobs in per_user.items()
    ]
    heapq.heapify(heap)
    order: list[sqlite3.Row] = []
    started = 0
    while heap:
        _, _, _, user = heapq.heappop(heap)
        jobs = per_user[user]
        order.append(jobs.popleft())
        if jobs:
            # As if that job started now: after every real start, and after earlier turns.
            started += 1
            heapq.heappush(heap, (now + started, jobs[0]["created_at"], jobs[0]["id"], user))
    return order


class FairQueue:
    """The queued jobs in the order members take turns; every method is one thread hop."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    def _now(self) -> float:
        return to_ts(self._clock())

    async def claim_next(
        self,
        *,
        exclude_users: Iterable[int] = (),
        state: JobState = JobState.UPLOADING,
    ) -> Job | None:
        """Pick the next job and move it out of the queue (started_at = now) atomically."""
        now, exclude = self._now(), role_json(exclude_users)
        if JobState(state) in FINAL_STATES or state == JobState.QUEUED:
            raise ValueError(f"cannot claim a job into {state}")

        def claim(conn: sqlite3.Connection) -> sqlite3.Row | None:
            # The same order as _fair_order's first pick, in one statement, so two claims
            # can never hand out the same job.
            return conn.execute(
                "UPDATE jobs SET state = :state, updated_at = :now, started_at = :now"
                f" WHERE id = (SELECT j.id FROM jobs AS j WHERE {_ELIGIBLE} AND {_NOT_EXCLUDED}"
                f" ORDER BY {_LAST_START}, j.created_at, j.id LIMIT 1)"
                " RETURNING *",
                {"state": JobState(state).value, "now": now, "exclude": exclude},
            ).fetchone()

        row = await self._db.write(claim)
        return None if row is None else Job.from_row(row)

    async def next_fair_batch(self, limit: int, *, exclude_users: Iterable[int] = ()) -> list[Job]:
        """The next ``limit`` jobs to start, in order, members taking turns."""
        now, exclude = self._now(), role_json(exclude_users)
        rows = await self._db.fetch_all(
            f"SELECT j.*, {_LAST_START} AS last_start FROM jobs AS j"
            f" WHERE {_ELIGIBLE} AND {_NOT_EXCLUDED} ORDER BY j.created_at, j.id",
            {"now": now, "exclude": exclude},
        )
        return [Job.from_row(row) for row in _fair_order(rows, now)[:limit]]

    async def queue_position(self, job_id: int) -> int | None:
        """1-based place of a queued job in the fair order (retries waiting included)."""
        now = self._now()
        rows = await self._db.fetch_all(
            f"SELECT j.id, j.user_id, j.created_at, {_LAST_START} AS last_start FROM jobs AS j"
            " WHERE j.state = 'queued' ORDER BY j.created_at, j.id"
        )
        for position, row in enumerate(_fair_order(rows, now), start=1):
            if row["id"] == job_id:
                return position
        return None
