"""The bot's SQLite store: one connection, migrations, the credit ledger, jobs, admin,
moderation.

Open it once at start and inject it::

    store = await Store.open(settings.database_path, cost_overrides=settings.credit_costs)
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
    NewJob,
    QueueStats,
    QuotaView,
    ServerView,
    TopEntry,
)
from bot.store.moderation import Moderation, ServerRules

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "AuditEntry",
    "AuditNote",
    "CancelOutcome",
    "CancelResult",
    "Clock",
    "Database",
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
    """The database and the services on it, sharing one clock."""

    db: Database
    ledger: Ledger
    jobs: JobStore
    admin: QuotaAdmin
    moderation: Moderation

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = utcnow,
        cost_overrides: Mapping[str, int] | None = None,
    ) -> Store:
        db = await Database.open(path)
        return cls(
            db=db,
            ledger=Ledger(db, clock=clock),
            jobs=JobStore(db, clock=clock, cost_overrides=cost_overrides),
            admin=QuotaAdmin(db, clock=clock),
            moderation=Moderation(db, clock=clock),
        )

    async def close(self) -> None:
        await self.db.close()
