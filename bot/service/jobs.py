"""Use cases on one job: whether it can be the source of a new one, and cancelling it.

Cancelling has one road for members and moderators alike: ``JobService.cancel``. A member
may cancel only their own job that PixVerse has not yet accepted (queued); a moderator any
unfinished job of the server, including one generating. Either way the credits come back
and the status message says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.jobs.runner import JobRunner
from bot.store import Store
from bot.store.models import AuditNote, CancelResult, Job, JobState


class NotUsable(StrEnum):
    """Why a job cannot be the source of a re-roll or an extension."""

    MISSING = "missing"  # no such job in this server
    UNFINISHED = "unfinished"  # not done, or PixVerse has no video for it
    REMOVED = "removed"  # a moderator removed its result


def usable_source(job: Job | None, guild_id: int | None) -> NotUsable | None:
    """The finished-job rule: None when ``job`` is a finished, kept result of this server."""
    if job is None or guild_id is None or job.guild_id != guild_id:
        return NotUsable.MISSING
    if job.state is not JobState.DONE or job.pixverse_video_id is None:
        return NotUsable.UNFINISHED
    if job.removed_at is not None:
        return NotUsable.REMOVED
    return None


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What a cancellation did: the job as it was before, and the outcome."""

    result: CancelResult
    job: Job | None = None
    state: JobState | None = None  # the job's state when it could not be cancelled
    refunded: int = 0  # credits given back

    @property
    def ok(self) -> bool:
        return self.result is CancelResult.CANCELLED


class JobService:
    def __init__(self, store: Store, runner: JobRunner) -> None:
        self._store = store
        self._runner = runner

    async def job_in_server(self, job_id: int, guild_id: int) -> Job | None:
        job = await self._store.jobs.get(job_id)
        return job if job is not None and job.guild_id == guild_id else None

    async def cancel(
        self,
        job_id: int,
        guild_id: int,
        *,
        shown: str,
        reason: str,
        owner_id: int | None = None,
        audit: AuditNote | None = None,
    ) -> Cancelled:
        """Cancel a job of this server: as its owner (``owner_id``; queued jobs only) or as a
        moderator (any unfinished job). ``shown`` is what its status message says."""
        job = await self.job_in_server(job_id, guild_id)
        if job is None:
            return Cancelled(CancelResult.NOT_FOUND)
        if owner_id is not None:
            outcome = await self._store.jobs.cancel(job_id, by_user_id=owner_id, reason=reason)
            if outcome.ok:
                self._runner.report_cancelled(job, shown)
            return Cancelled(outcome.result, job, outcome.state, outcome.refunded)
        if job.is_final:
            return Cancelled(CancelResult.NOT_QUEUED, job, job.state)
        if await self._runner.cancel(job_id, shown, audit=audit) is None:
            now = await self._store.jobs.get(job_id)
            return Cancelled(CancelResult.NOT_QUEUED, job, now.state if now else None)
        return Cancelled(CancelResult.CANCELLED, job, refunded=job.cost)
