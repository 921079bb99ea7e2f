"""The bot's SQLite store: one connection, migrations, the credit ledger, jobs, the fair
queue, admin, moderation.

Open it once at start, with the operator's limits, and inject it::

    limits = Limits(settings.daily_credits, settings.max_jobs_per_user)
    store = await Store.open(settings.database_path, limits=limits, cost_overrides=...)
    ...
    await store.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.store.admin import QuotaAdmin
from bot.store.clock import Clock, utcnow
from bot.store.db import Database, Transaction
from bot.store.errors import (
    InsufficientCredits,
    MemberBlocked,
    Refusal,
    ServerCapReached,
    ServerPaused,
    TooManyJobs,
)
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from bot.store.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    AuditEntry,
    AuditNote,
    CancelOutcome,
    CancelResult,
    GuildSettings,
    Job,
    JobInput,
    JobKind,
    JobParams,
    JobSource,
    JobState,
    Limits,
    NewJob,
    QueueStats,
    QuotaView,
    ServerView,
    TopEntry,
)
from bot.store.moderation import Moderation, ServerRules
from bot.store.queue import FairQueue

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "AuditEntry",
    "AuditNote",
    "CancelOutcome",
    "CancelResult",
    "Clock",
    "Database",
    "FairQueue",
    "GuildSettings",
    "InsufficientCredits",
    "Job",
    "JobInput",
    "JobKind",
    "JobParams",
    "JobSource",
    "JobState",
    "JobStore",
    "Ledger",
    "Limits",
    "MemberBlocked",
    "Moderation",
    "NewJob",
    "QueueStats",
    "QuotaAdmin",
    "QuotaView",
    "Refusal",
    "ServerCapReached",
    "ServerPaused",
    "ServerRules",
    "ServerView",
    "Store",
    "TooManyJobs",
    "TopEntry",
    "Transaction",
]


@dataclass(frozen=True, slots=True)
class Store:
    """The database and the services on it, sharing one clock and one set of limits."""

    db: Database
    limits: Limits
    clock: Clock
    ledger: Ledger
    jobs: JobStore
    queue: FairQueue
    admin: QuotaAdmin
    moderation: Moderation

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        limits: Limits,
        clock: Clock = utcnow,
        cost_overrides: Mapping[str, int] | None = None,
    ) -> Store:
        db = await Database.open(path)
        return cls.on(db, limits=limits, clock=clock, cost_overrides=cost_overrides)

    @classmethod
    def on(
        cls,
        db: Database,
        *,
        limits: Limits,
        clock: Clock = utcnow,
        cost_overrides: Mapping[str, int] | None = None,
    ) -> Store:
        """The services on a database that is already open (``open`` opens it too)."""
        return cls(
            db=db,
            limits=limits,
            clock=clock,
            ledger=Ledger(db, limits=limits, clock=clock),
            jobs=JobStore(db, limits=limits, clock=clock, cost_overrides=cost_overrides),
            queue=FairQueue(db, clock=clock),
            admin=QuotaAdmin(db, limits=limits, clock=clock),
            moderation=Moderation(db, clock=clock),
        )

    async def close(self) -> None:
        await self.db.close()
