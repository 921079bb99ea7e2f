"""The bot's SQLite store: one connection, migrations, the credit ledger, jobs, the fair
queue, admin, moderation, the operator's wallet (daily budget, moderation strikes, the
wait between a member's jobs), and the queue's pause for credits.

Open it once at start, with the operator's limits, and inject it::

    limits = Limits(settings.daily_credits, settings.max_jobs_per_user, ...)
    store = await Store.open(
        settings.database_path, limits=limits, cost_overrides=..., catalogue=..., bot_user_id=...
    )
    ...
    await store.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.pixverse.catalogue import Catalogue
from bot.store.admin import QuotaAdmin
from bot.store.budget import Budget, BudgetReached, BudgetView
from bot.store.clock import Clock, utcnow
from bot.store.cooldown import CoolingDown
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
from bot.store.leases import Leases, LeaseTerms
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
from bot.store.pause import CreditPauseRecord, Paused
from bot.store.pg import is_postgres_url, open_postgres
from bot.store.queue import FairQueue
from bot.store.strikes import Strike, Strikes

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "AuditEntry",
    "AuditNote",
    "Budget",
    "BudgetReached",
    "BudgetView",
    "CancelOutcome",
    "CancelResult",
    "Clock",
    "CoolingDown",
    "CreditPauseRecord",
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
    "LeaseTerms",
    "Leases",
    "Ledger",
    "Limits",
    "MemberBlocked",
    "Moderation",
    "NewJob",
    "Paused",
    "QueueStats",
    "QuotaAdmin",
    "QuotaView",
    "Refusal",
    "ServerCapReached",
    "ServerPaused",
    "ServerRules",
    "ServerView",
    "Store",
    "Strike",
    "Strikes",
    "TooManyJobs",
    "TopEntry",
    "Transaction",
    "open_database",
]


async def open_database(target: str | Path) -> Database:
    """The database at ``target``: a PostgreSQL URL (``postgresql://…``), else a SQLite file."""
    if is_postgres_url(target):
        return await open_postgres(str(target))
    return await Database.open(target)


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
    budget: Budget
    strikes: Strikes
    pause: CreditPauseRecord  # the queue's pause for credits (500090)
    leases: Leases | None = None  # several processes share the database

    @property
    def catalogue(self) -> Catalogue:
        """The model catalogue the store prices jobs with."""
        return self.jobs.catalogue

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        limits: Limits,
        clock: Clock = utcnow,
        cost_overrides: Mapping[str, int] | None = None,
        catalogue: Catalogue | None = None,
        bot_user_id: int = 0,
        lease: LeaseTerms | None = None,
    ) -> Store:
        db = await open_database(path)
        return cls.on(
            db,
            limits=limits,
            clock=clock,
            cost_overrides=cost_overrides,
            catalogue=catalogue,
            bot_user_id=bot_user_id,
            lease=lease,
        )

    @classmethod
    def on(
        cls,
        db: Database,
        *,
        limits: Limits,
        clock: Clock = utcnow,
        cost_overrides: Mapping[str, int] | None = None,
        catalogue: Catalogue | None = None,
        bot_user_id: int = 0,
        lease: LeaseTerms | None = None,
    ) -> Store:
        """The services on a database that is already open (``open`` opens it too).

        ``bot_user_id`` is the bot's own Discord user: the author, in the audit log, of the
        blocks moderation strikes make. ``lease``: this process shares the database with
        others (bot/store/leases.py)."""
        leases = None if lease is None else Leases(db, lease, clock=clock)
        return cls(
            db=db,
            limits=limits,
            clock=clock,
            ledger=Ledger(db, limits=limits, clock=clock),
            jobs=JobStore(
                db,
                limits=limits,
                clock=clock,
                cost_overrides=cost_overrides,
                catalogue=catalogue,
                leases=leases,
            ),
            queue=FairQueue(db, clock=clock, leases=leases),
            admin=QuotaAdmin(db, limits=limits, clock=clock),
            moderation=Moderation(db, clock=clock),
            budget=Budget(db, limits=limits, clock=clock),
            strikes=Strikes(db, limits=limits, clock=clock, actor_id=bot_user_id),
            pause=CreditPauseRecord(db),
            leases=leases,
        )

    async def close(self) -> None:
        await self.db.close()
