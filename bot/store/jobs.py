"""Jobs in SQLite: acceptance (job + input + reservation in one transaction), state
transitions as compare-and-set, and finishing with the ledger. Which queued job starts next
is ``bot.store.queue``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from bot.pixverse.catalogue import Catalogue, shipped_catalogue
from bot.pixverse.rules import Combination, cost_key
from bot.store import budget, charges, cooldown, ledger
from bot.store.audit import write_audit
from bot.store.clock import Clock, day_of, next_reset, to_ts, utcnow
from bot.store.db import Database, StorageUnavailable
from bot.store.leases import Leases
from bot.store.models import (
    ACTIVE_SQL,
    FINAL_STATES,
    LAST_FRAME,
    AuditNote,
    CancelOutcome,
    CancelResult,
    Job,
    JobInput,
    JobParams,
    JobState,
    Limits,
    NewJob,
    QueueStats,
)

log = logging.getLogger(__name__)

# How often expired interaction tokens are cleared (their lifetime is 15 minutes).
TOKEN_SWEEP_EVERY = 60.0

# Columns a caller may set through transition()/set_fields(); names are checked against this
# set before they reach SQL. state, cost, owner and timestamps of final states are not here:
# they change only through the methods that keep the ledger in step.
UPDATABLE_FIELDS = frozenset(
    {
        "params",
        "pixverse_img_id",
        "pixverse_media_id",
        "pixverse_last_img_id",
        "pixverse_video_id",
        "trace_id",
        "result_url",
        "status_channel_id",
        "status_message_id",
        "interaction_token",
        "interaction_expires_at",
        "attempts",
        "next_attempt_at",
        "error",
        "started_at",
        "submitted_at",
        "has_audio",
    }
)


def _sql_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_ts(value)
    if isinstance(value, JobParams):
        return value.model_dump_json()
    if isinstance(value, Enum):
        return value.value
    return value


def _assignments(fields: Mapping[str, Any]) -> tuple[str, list[Any]]:
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"not updatable job fields: {', '.join(sorted(unknown))}")
    names = sorted(fields)
    sql = "".join(f", {name} = ?" for name in names)
    return sql, [_sql_value(fields[name]) for name in names]


def _states(states: JobState | str | Iterable[JobState | str]) -> list[str]:
    if isinstance(states, str):
        states = [states]
    return [JobState(state).value for state in states]


class JobStore:
    """Jobs and their credits. Every method is one transaction (one thread hop)."""

    def __init__(
        self,
        db: Database,
        *,
        limits: Limits,
        clock: Clock = utcnow,
        cost_overrides: Mapping[str, int] | None = None,
        catalogue: Catalogue | None = None,
        leases: Leases | None = None,
    ) -> None:
        self._db = db
        self._limits = limits
        # Several processes: the one that finishes a job delivers it, so it becomes its owner.
        self._leases = leases
        self._clock = clock
        self._cost_overrides = dict(cost_overrides or {})
        self.catalogue = catalogue or shipped_catalogue()
        # The lowest price of any video, for refusal hints.
        self.cheapest = self.catalogue.cheapest(self.combination_price)

    def _now(self) -> float:
        return to_ts(self._clock())

    def _owning(self, now: float) -> tuple[str, list[Any]]:
        """The SET clause (and values) that make this process a finished job's owner."""
        if self._leases is None:
            return "", []
        return ", owner = ?, lease_until = ?", [self._leases.owner, self._leases.until(now)]

    def price(self, params: JobParams) -> int:
        """Credits for these parameters: the catalogue's price with the operator's overrides
        (``CREDIT_COSTS``); RuleViolation when the catalogue refuses them. A Sound job costs
        the catalogue's ``[sound_effect]`` for the source's duration."""
        if params.add_sound:
            return self.catalogue.sound_effect.price(params.duration)
        return self.combination_price(params.combination)

    def combination_price(self, combo: Combination) -> int:
        price = self.catalogue.price(combo)  # checks the combination first
        override = self._cost_overrides.get(cost_key(combo))
        if override is None:
            return price
        # An override replaces the video's price; asking for audio still adds its own.
        video = self.catalogue.price(
            Combination(combo.model, combo.quality, combo.duration, combo.motion)
        )
        return override + price - video

    # --- acceptance -------------------------------------------------------------------------

    async def create(self, new_job: NewJob, *, role_ids: Iterable[int] = ()) -> Job:
        """Accept a job: checks, job row, input, reservation — all or nothing.

        Raises (nothing written): MemberBlocked, ServerPaused, TooManyJobs,
        InsufficientCredits, ServerCapReached (bot.store.errors), CoolingDown
        (bot.store.cooldown), BudgetReached (bot.store.budget), or RuleViolation for a
        combination PixVerse refuses.
        """
        cost = new_job.cost if new_job.cost is not None else self.price(new_job.params)
        now, roles = self._now(), list(role_ids)
        expires = (
            None
            if new_job.interaction_expires_at is None
            else to_ts(new_job.interaction_expires_at)
        )
        status_channel = (
            new_job.status_channel_id
            if new_job.status_channel_id is not None
            else new_job.channel_id
        )

        def accept(conn: sqlite3.Connection) -> sqlite3.Row:
            numbers = self._check_member(conn, new_job.guild_id, new_job.user_id, cost, roles, now)
            row: sqlite3.Row = conn.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, kind, parent_job_id, params,"
                " cost, state, pixverse_img_id, pixverse_media_id, pixverse_last_img_id,"
                " status_channel_id, status_message_id, interaction_token,"
                " interaction_expires_at, created_at, updated_at, upload_limit, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING *",
                (
                    new_job.guild_id,
                    new_job.channel_id,
                    new_job.user_id,
                    str(new_job.kind),
                    new_job.parent_job_id,
                    new_job.params.model_dump_json(),
                    cost,
                    new_job.pixverse_img_id,
                    new_job.pixverse_media_id,
                    new_job.pixverse_last_img_id,
                    status_channel,
                    new_job.status_message_id,
                    new_job.interaction_token,
                    expires,
                    now,
                    now,
                    new_job.upload_limit,
                    None if new_job.hold_seconds is None else now + new_job.hold_seconds,
                ),
            ).fetchone()
            if new_job.input is not None:
                conn.execute(
                    "INSERT INTO job_inputs (job_id, filename, content_type, data, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        row["id"],
                        new_job.input.filename,
                        new_job.input.content_type,
                        new_job.input.data,
                        now,
                    ),
                )
            if new_job.last_input is not None:
                conn.execute(
                    "INSERT INTO job_extra_inputs"
                    " (job_id, slot, filename, content_type, data, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        row["id"],
                        LAST_FRAME,
                        new_job.last_input.filename,
                        new_job.last_input.content_type,
                        new_job.last_input.data,
                        now,
                    ),
                )
            ledger.insert_reservation(
                conn,
                job_id=row["id"],
                guild_id=new_job.guild_id,
                user_id=new_job.user_id,
                amount=cost,
                base_allowance=numbers.base_allowance,
                now=now,
            )
            return row

        return Job.from_row(await self._db.write(accept))

    async def precheck(
        self, guild_id: int, user_id: int, params: JobParams, *, role_ids: Iterable[int] = ()
    ) -> int:
        """Raise the Refusal that ``create`` would raise now, writing nothing; return the cost.

        Lets a command refuse before it downloads the member's file; ``create`` still decides.
        """
        cost = self.price(params)
        now, roles = self._now(), list(role_ids)

        def check(conn: sqlite3.Connection) -> int:
            self._check_member(conn, guild_id, user_id, cost, roles, now)
            return cost

        return await self._db.read(check)

    def _check_member(
        self,
        conn: sqlite3.Connection,
        guild_id: int,
        user_id: int,
        cost: int,
        role_ids: list[int],
        now: float,
    ) -> ledger.MemberNumbers:
        """The member's numbers, or the Refusal that applies (blocked first)."""
        numbers = ledger.load_member(
            conn,
            guild_id,
            user_id,
            role_ids=role_ids,
            daily_default=self._limits.daily_credits,
            day=day_of(now),
            count_jobs=True,
        )
        ledger.check_reserve(
            numbers,
            cost,
            max_jobs_per_user=self._limits.max_jobs_per_user,
            resets_at=next_reset(now),
            cheapest=self.cheapest,
        )
        # The operator's wallet, in the same snapshot (precheck) or transaction (create): a
        # member's wait between jobs, then the bot's daily budget, so two jobs accepted at
        # once cannot both take its last credits.
        cooldown.check(conn, guild_id, user_id, self._limits.command_cooldown_seconds, now)
        budget.check(conn, cost, self._limits.budget_daily_credits, now)
        return numbers

    # --- reading ----------------------------------------------------------------------------

    async def get(self, job_id: int) -> Job | None:
        row = await self._db.fetch_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else Job.from_row(row)

    async def get_input(self, job_id: int, slot: str | None = None) -> JobInput | None:
        """The job's stored input file, or with ``slot`` another one (a transition's last
        frame: ``LAST_FRAME``); None once PixVerse has it."""
        if slot is None:
            row = await self._db.fetch_one(
                "SELECT filename, content_type, data FROM job_inputs WHERE job_id = ?", (job_id,)
            )
        else:
            row = await self._db.fetch_one(
                "SELECT filename, content_type, data FROM job_extra_inputs"
                " WHERE job_id = ? AND slot = ?",
                (job_id, slot),
            )
        return None if row is None else JobInput(row[0], row[1], bytes(row[2]))

    async def list_for_user(
        self, guild_id: int, user_id: int, *, limit: int = 10, offset: int = 0
    ) -> list[Job]:
        """A member's jobs in this server, newest first (for /jobs pages)."""
        rows = await self._db.fetch_all(
            "SELECT * FROM jobs WHERE guild_id = ? AND user_id = ?"
            " ORDER BY id DESC LIMIT ? OFFSET ?",
            (guild_id, user_id, limit, offset),
        )
        return [Job.from_row(row) for row in rows]

    async def count_for_user(self, guild_id: int, user_id: int) -> int:
        row = await self._db.fetch_one(
            "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        return 0 if row is None else int(row[0])

    async def unfinished(self, *, guild_id: int | None = None) -> list[Job]:
        """Every job not yet done/failed/cancelled, oldest first (to resume after a start)."""
        if guild_id is None:
            rows = await self._db.fetch_all(
                f"SELECT * FROM jobs WHERE state IN {ACTIVE_SQL} ORDER BY created_at, id"
            )
        else:
            rows = await self._db.fetch_all(
                f"SELECT * FROM jobs WHERE state IN {ACTIVE_SQL} AND guild_id = ?"
                " ORDER BY created_at, id",
                (guild_id,),
            )
        return [Job.from_row(row) for row in rows]

    async def finished_for_user(
        self, guild_id: int, user_id: int, query: str = "", *, limit: int = 25
    ) -> list[Job]:
        """Done, not removed jobs, newest first; ``query`` matches an id prefix or the prompt."""
        query = query.strip().lstrip("#")
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._db.fetch_all(
            "SELECT * FROM jobs WHERE guild_id = :g AND user_id = :u AND state = 'done'"
            " AND removed_at IS NULL AND (:q = ''"
            "  OR CAST(id AS TEXT) LIKE :prefix ESCAPE '\\'"
            "  OR json_extract(params, '$.prompt') LIKE :sub ESCAPE '\\')"
            " ORDER BY id DESC LIMIT :limit",
            {
                "g": guild_id,
                "u": user_id,
                "q": query,
                "prefix": f"{escaped}%",
                "sub": f"%{escaped}%",
                "limit": limit,
            },
        )
        return [Job.from_row(row) for row in rows]

    async def stats(self, *, window: timedelta = timedelta(days=7)) -> QueueStats:
        """Queue depth, jobs running, and mean generation time per (model, quality, duration)."""
        since = self._now() - window.total_seconds()

        def read(conn: sqlite3.Connection) -> QueueStats:
            queued, running = conn.execute(
                "SELECT COUNT(*) FILTER (WHERE state = 'queued'),"
                " COUNT(*) FILTER (WHERE state != 'queued')"
                f" FROM jobs WHERE state IN {ACTIVE_SQL}"
            ).fetchone()
            averages: dict[tuple[str, str, int], float] = {}
            samples: dict[tuple[str, str, int], int] = {}
            for model, quality, duration, seconds, count in conn.execute(
                "SELECT json_extract(params, '$.model'), json_extract(params, '$.quality'),"
                " json_extract(params, '$.duration'), AVG(finished_at - submitted_at), COUNT(*)"
                " FROM jobs WHERE state = 'done' AND finished_at >= ?"
                " AND submitted_at IS NOT NULL GROUP BY 1, 2, 3",
                (since,),
            ):
                key = (str(model), str(quality), int(duration))
                averages[key] = float(seconds)
                samples[key] = int(count)
            return QueueStats(int(queued), int(running), averages, samples)

        return await self._db.read(read)

    async def unfinished_counts(self) -> dict[tuple[JobState, str], int]:
        """Unfinished jobs by state and kind (the metrics' gauges); combinations without a
        job are left out. Only the unfinished rows are read (the partial index of active
        jobs), however many finished jobs the table keeps."""
        rows = await self._db.fetch_all(
            f"SELECT state, kind, COUNT(*) FROM jobs WHERE state IN {ACTIVE_SQL}"
            " GROUP BY state, kind"
        )
        return {(JobState(state), str(kind)): int(count) for state, kind, count in rows}

    async def price_differences(
        self, *, window: timedelta = timedelta(days=7), limit: int = 10
    ) -> list[charges.PriceDifference]:
        """Combinations PixVerse charged other than the catalogue's price, seen within
        ``window`` (older ones were most likely corrected since), most jobs first."""
        since = self._now() - window.total_seconds()
        return await self._db.read(lambda conn: charges.recent(conn, since, limit=limit))

    # --- moving a job along -----------------------------------------------------------------

    async def transition(
        self,
        job_id: int,
        expected: JobState | str | Iterable[JobState | str],
        new_state: JobState | str,
        *,
        drop_input: bool = False,
        within: float | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set the state (only from one of ``expected``), with other fields.

        Leaving 'queued' stamps started_at, reaching 'submitted' stamps submitted_at (first
        time only). Final states go through finish_done / finish_failed / cancel, which keep
        the ledger in step. ``drop_input`` deletes the stored input in the same transaction.
        ``within``: the write may wait that long for company (``Database.write``).
        """
        target = JobState(new_state)
        if target in FINAL_STATES:
            raise ValueError(f"use finish_done/finish_failed/cancel to reach {target}")
        froms = _states(expected)
        extra, values = _assignments(fields)
        now = self._now()
        marks = ", ".join("?" for _ in froms)
        # A stamp the caller sets is not stamped as well: PostgreSQL refuses two assignments
        # to one column (SQLite would keep the last).
        stamps = ""
        stamped: list[Any] = []
        if "started_at" not in fields:
            stamps += ", started_at = CASE WHEN ? = 'queued' THEN started_at"
            stamps += "  ELSE COALESCE(started_at, ?) END"
            stamped += [target.value, now]
        if "submitted_at" not in fields:
            stamps += ", submitted_at = CASE WHEN ? = 'submitted' THEN COALESCE(submitted_at, ?)"
            stamps += "  ELSE submitted_at END"
            stamped += [target.value, now]
        sql = (
            f"UPDATE jobs SET state = ?, updated_at = ?{stamps}{extra}"
            f" WHERE id = ? AND state IN ({marks})"
        )
        params = [target.value, now, *stamped, *values, job_id, *froms]

        def move(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(sql, params).rowcount == 1
            if changed and drop_input:
                _drop_inputs(conn, job_id)
            return changed

        return await self._db.write(move, within=within)

    async def set_fields(self, job_id: int, **fields: Any) -> bool:
        """Update fields without changing the state; False if the job does not exist."""
        extra, values = _assignments(fields)
        if not extra:
            return False
        sql = f"UPDATE jobs SET updated_at = ?{extra} WHERE id = ?"
        params = [self._now(), *values, job_id]
        return await self._db.write(lambda conn: conn.execute(sql, params).rowcount == 1)

    async def finish_done(
        self,
        job_id: int,
        result_url: str | None,
        *,
        pixverse_video_id: int | None = None,
        charged: int | None = None,
        **fields: Any,
    ) -> bool:
        """Mark done and commit its credits, in one transaction; False if already final.

        ``charged`` is what PixVerse reported the job cost, if it did: the ledger commits
        that instead of the reservation, the job's ``cost`` becomes it (what its message
        shows as spent), and a difference is counted in ``price_differences``. Only the
        call that finishes the job does any of it, so nothing is committed twice.
        The job then waits for its result to reach Discord (``pending_deliveries``)."""
        if pixverse_video_id is not None:
            fields["pixverse_video_id"] = pixverse_video_id
        fields["result_url"] = result_url
        extra, values = _assignments(fields)
        now = self._now()
        owning, owner = self._owning(now)
        sql = (
            "UPDATE jobs SET state = 'done', updated_at = ?, finished_at = ?,"
            f" delivery_since = ?{extra}{owning} WHERE id = ? AND state IN {ACTIVE_SQL}"
            " RETURNING cost, params"
        )
        params = [now, now, now, *values, *owner, job_id]

        def finish(conn: sqlite3.Connection) -> bool:
            row = conn.execute(sql, params).fetchone()
            if row is None:
                return False
            _drop_inputs(conn, job_id)
            ledger.commit(conn, job_id, now, charged=charged)
            reserved = int(row["cost"])
            if charged is not None and charged != reserved:
                conn.execute("UPDATE jobs SET cost = ? WHERE id = ?", (charged, job_id))
                charges.record(
                    conn,
                    JobParams.model_validate_json(row["params"]),
                    reserved=reserved,
                    charged=charged,
                    job_id=job_id,
                    now=now,
                )
            return True

        return await self._db.write(finish)

    async def finish_failed(
        self,
        job_id: int,
        error: str | None,
        *,
        state: JobState | str = JobState.FAILED,
        audit: AuditNote | None = None,
    ) -> bool:
        """Mark failed (or cancelled) and release its credits; False if already final.

        For any unfinished state: PixVerse errors, moderation, timeouts, /mod cancel.
        """
        target = JobState(state)
        if target not in (JobState.FAILED, JobState.CANCELLED):
            raise ValueError(f"finish_failed ends in failed or cancelled, not {target}")
        now = self._now()
        owning, owner = self._owning(now)

        def fail(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT guild_id, user_id, cost, state FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None or JobState(row["state"]) in FINAL_STATES:
                return False
            conn.execute(
                "UPDATE jobs SET state = ?, error = ?, updated_at = ?, finished_at = ?,"
                f" delivery_since = ?{owning} WHERE id = ?",
                (target.value, error, now, now, now, *owner, job_id),
            )
            _drop_inputs(conn, job_id)
            released = ledger.release(conn, job_id, now, error or target.value)
            if audit is not None:
                _audit_job(conn, row, job_id, audit, target, released, now)
            return True

        return await self._db.write(fail)

    async def cancel(
        self,
        job_id: int,
        *,
        by_user_id: int | None = None,
        reason: str | None = None,
        audit: AuditNote | None = None,
    ) -> CancelOutcome:
        """Cancel a job still queued (PixVerse has nothing yet) and release its credits.

        With ``by_user_id`` only that member's own job. Otherwise the outcome says why not.
        """
        now = self._now()
        owning, owner = self._owning(now)

        def cancel(conn: sqlite3.Connection) -> CancelOutcome:
            row = conn.execute(
                "SELECT guild_id, user_id, cost, state FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return CancelOutcome(CancelResult.NOT_FOUND)
            state = JobState(row["state"])
            if by_user_id is not None and row["user_id"] != by_user_id:
                return CancelOutcome(CancelResult.NOT_OWNER, state)
            if state is not JobState.QUEUED:
                return CancelOutcome(CancelResult.NOT_QUEUED, state)
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', error = ?, updated_at = ?, finished_at = ?,"
                f" delivery_since = ?{owning} WHERE id = ? AND state = 'queued'",
                (reason or "cancelled", now, now, now, *owner, job_id),
            )
            _drop_inputs(conn, job_id)
            released = ledger.release(conn, job_id, now, reason or "cancelled")
            if audit is not None:
                _audit_job(conn, row, job_id, audit, JobState.CANCELLED, released, now)
            return CancelOutcome(
                CancelResult.CANCELLED, JobState.CANCELLED, row["cost"] if released else 0
            )

        return await self._db.write(cancel)

    async def pending_deliveries(self) -> list[Job]:
        """Finished jobs whose final status has not yet reached Discord, oldest first."""
        rows = await self._db.fetch_all(
            "SELECT * FROM jobs WHERE delivery_since IS NOT NULL ORDER BY delivery_since, id"
        )
        return [Job.from_row(row) for row in rows]

    async def in_state(self, job_id: int, state: JobState) -> bool:
        """Whether the job is (still) in ``state``."""
        row = await self._db.fetch_one("SELECT state FROM jobs WHERE id = ?", (job_id,))
        return row is not None and row[0] == JobState(state).value

    async def reshow_final(self, job_id: int) -> bool:
        """Show a finished job's final state again: a process edited its status message
        with a state the job has left (queued, while another process claimed it; running,
        while another cancelled it), and the edit may have landed after the final one. The
        job is marked delivering with its lease lapsed, so the next lease pass of any
        process delivers it again (bot/store/leases.py). False when it is not finished and
        shown (whoever runs it shows the truth next)."""
        result = await self._db.execute(
            "UPDATE jobs SET delivery_since = ?, lease_until = 0"
            " WHERE id = ? AND state IN ('done', 'failed', 'cancelled')"
            " AND delivery_since IS NULL",
            (self._now(), job_id),
        )
        return result.rowcount == 1

    async def delivered(
        self,
        job_id: int,
        *,
        channel_id: int | None = None,
        message_id: int | None = None,
        within: float | None = None,
    ) -> bool:
        """The final status reached Discord (or never can): stop trying. A new message
        becomes the job's status message. ``within``: the write may wait that long for
        company (``Database.write``)."""
        fields: dict[str, Any] = {}
        if message_id is not None:
            fields = {"status_channel_id": channel_id, "status_message_id": message_id}
        extra, values = _assignments(fields)
        # The final status was the token's last use: forget it now rather than at expiry.
        result = await self._db.execute(
            "UPDATE jobs SET delivery_since = NULL, interaction_token = NULL,"
            f" updated_at = ?{extra}"
            " WHERE id = ? AND delivery_since IS NOT NULL",
            (self._now(), *values, job_id),
            within=within,
        )
        return result.rowcount == 1

    async def forget_expired_tokens(self) -> int:
        """Clear every interaction token past its expiry (a token with no expiry counts as
        expired); returns how many were cleared.

        A token lets anyone edit the job's status message for 15 minutes (docs/discord.md),
        so the database keeps it no longer than it can be used; the reporter then edits
        through the channel.
        """
        result = await self._db.execute(
            "UPDATE jobs SET interaction_token = NULL"
            " WHERE interaction_token IS NOT NULL"
            " AND (interaction_expires_at IS NULL OR interaction_expires_at <= ?)",
            (self._now(),),
        )
        return result.rowcount

    async def remove_result(
        self, job_id: int, *, actor_id: int, reason: str | None = None
    ) -> int | None:
        """A moderator removed a finished result: refund its credits and audit it.

        Returns the credits given back, or None if the job is not a done, unremoved job.
        """
        now = self._now()

        def remove(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "UPDATE jobs SET removed_at = ?, removed_by = ?, updated_at = ?"
                " WHERE id = ? AND state = 'done' AND removed_at IS NULL"
                " RETURNING guild_id, user_id, cost",
                (now, actor_id, now, job_id),
            ).fetchone()
            if row is None:
                return None
            refunded = ledger.refund_committed(conn, job_id, now)
            write_audit(
                conn,
                guild_id=row["guild_id"],
                actor_id=actor_id,
                action="job.remove",
                target_id=row["user_id"],
                before={"job_id": job_id, "removed": False},
                after={"job_id": job_id, "removed": True, "refunded": refunded},
                now=now,
                reason=reason,
            )
            return refunded

        return await self._db.write(remove)


async def forget_tokens_forever(jobs: JobStore, *, every: float = TOKEN_SWEEP_EVERY) -> None:
    """Clear expired interaction tokens now and every ``every`` seconds, until cancelled.

    Each round is caught on its own: one failed sweep (a locked or full disk) must not end
    the loop, and the next round clears what this one could not.
    """
    while True:
        try:
            cleared = await jobs.forget_expired_tokens()
        except StorageUnavailable:
            pass  # the database reported it once, with what to do; the next round retries
        except Exception:
            log.exception("Could not clear expired interaction tokens; trying again later")
        else:
            if cleared:
                log.debug("Cleared %d expired interaction token(s)", cleared)
        await asyncio.sleep(every)


def _drop_inputs(conn: sqlite3.Connection, job_id: int) -> None:
    """PixVerse has the job's files, or the job ended: its stored inputs go."""
    conn.execute("DELETE FROM job_inputs WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM job_extra_inputs WHERE job_id = ?", (job_id,))


def _audit_job(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    job_id: int,
    note: AuditNote,
    state: JobState,
    released: bool,
    now: float,
) -> None:
    write_audit(
        conn,
        guild_id=row["guild_id"],
        actor_id=note.actor_id,
        action=note.action,
        target_id=row["user_id"],
        before={"job_id": job_id, "state": row["state"]},
        after={"job_id": job_id, "state": state.value, "released": row["cost"] if released else 0},
        now=now,
        reason=note.reason,
    )
