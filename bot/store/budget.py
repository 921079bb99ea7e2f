"""The bot's daily budget (``BUDGET_DAILY_CREDITS``): what the operator's PixVerse account may
spend in one UTC day, all servers together.

* **Spend today** = credits committed today (``budget_days.spent``, kept by
  ``ledger.commit``) + credits reserved by every unfinished job. A reservation counts at once,
  so jobs in flight cannot overshoot the budget when they finish.
* A moderator's refund (``/mod remove``) gives the member their credits back but not the
  operator: PixVerse charged the account for that video. So refunds do not lower the spend.
* **Refusal**: a job whose cost would take the spend past the budget is refused. The check
  runs in the transaction that reserves the job's credits (``JobStore.create``), so two
  simultaneous jobs cannot both take the last credits; the precheck runs it too, so a
  command is refused before it downloads anything.
* **Warning**: once the spend reaches ``WARN_PERCENT`` of the budget, one caller claims that
  day's warning (``budget_days.warned_at``, set once), and the Discord side tells every
  server's moderation log. Claimed in the database, so a restart does not warn again.

The functions taking ``conn`` run inside a transaction the caller opened.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from bot.refusal import Refusal
from bot.store.clock import Clock, day_of, next_reset, to_ts, utcnow
from bot.store.db import Database
from bot.store.models import Limits

WARN_PERCENT = 80

# One statement: it runs inside every accepting transaction while a budget is set. The
# reserved sum walks the partial index ix_ledger_reserved, which holds only unfinished jobs.
_SPEND_SQL = """
SELECT
    COALESCE((SELECT spent FROM budget_days WHERE day = :day), 0),
    (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE state = 'reserved'),
    (SELECT warned_at FROM budget_days WHERE day = :day)
"""


@dataclass(frozen=True, slots=True)
class BudgetView:
    """The bot's spend today against its budget."""

    budget: int  # 0 = no budget
    committed: int  # credits committed today
    reserved: int  # credits held by unfinished jobs
    warned: bool  # today's warning was already given
    resets_at: datetime

    @property
    def spent(self) -> int:
        return self.committed + self.reserved

    @property
    def left(self) -> int | None:
        return None if self.budget <= 0 else max(0, self.budget - self.spent)

    @property
    def percent(self) -> int:
        return 0 if self.budget <= 0 else self.spent * 100 // self.budget

    @property
    def past_warning(self) -> bool:
        # Integers only: 80 % of an odd budget must not round either way.
        return self.budget > 0 and self.spent * 100 >= self.budget * WARN_PERCENT


class BudgetReached(Refusal):
    """Accepting the job would take the bot's spend today past ``BUDGET_DAILY_CREDITS``."""

    def __init__(self, needed: int, left: int, budget: int, resets_at: datetime) -> None:
        self.needed = needed
        self.left = left
        self.budget = budget
        self.resets_at = resets_at
        # Discord's clients show <t:…:R> as "in 5 hours" in each reader's own time zone;
        # the text keeps 00:00 UTC beside it for anyone reading it elsewhere (logs, tests).
        when = f"the reset at 00:00 UTC (<t:{int(resets_at.timestamp())}:R>)"
        if left > 0:
            detail = (
                f"this video costs {needed} credits but only {left} are left of it today: "
                f"choose a shorter video or a lower quality, or wait for {when}"
            )
        else:
            detail = f"new videos start again after {when}"
        super().__init__(
            f"The bot has reached its daily PixVerse budget ({budget} credits across all "
            f"servers): {detail}. Nothing was charged."
        )


def load(conn: sqlite3.Connection, budget: int, now: float) -> BudgetView:
    committed, reserved, warned_at = conn.execute(_SPEND_SQL, {"day": day_of(now)}).fetchone()
    return BudgetView(
        budget=budget,
        committed=int(committed),
        reserved=int(reserved),
        warned=warned_at is not None,
        resets_at=next_reset(now),
    )


def check(conn: sqlite3.Connection, cost: int, budget: int, now: float) -> None:
    """Raise BudgetReached when ``cost`` more would pass the budget; nothing without one."""
    if budget <= 0:
        return
    view = load(conn, budget, now)
    if view.spent + cost > budget:
        left = max(0, budget - view.spent)
        raise BudgetReached(needed=cost, left=left, budget=budget, resets_at=view.resets_at)


def add_committed(conn: sqlite3.Connection, day: int, amount: int) -> None:
    """Count credits committed on ``day`` (``ledger.commit``, in its transaction)."""
    if amount <= 0:
        return
    conn.execute(
        "INSERT INTO budget_days (day, spent) VALUES (?, ?)"
        " ON CONFLICT (day) DO UPDATE SET spent = budget_days.spent + excluded.spent",
        (day, amount),
    )


def claim_warning(conn: sqlite3.Connection, budget: int, now: float) -> BudgetView | None:
    """Today's warning, if the spend has reached it and nobody claimed it yet; else None.

    Only one caller ever gets it for a day: the claim is a conditional write.
    """
    if budget <= 0:
        return None
    view = load(conn, budget, now)
    if view.warned or not view.past_warning:
        return None
    day = day_of(now)
    conn.execute(
        "INSERT INTO budget_days (day, spent) VALUES (?, 0) ON CONFLICT (day) DO NOTHING", (day,)
    )
    claimed = conn.execute(
        "UPDATE budget_days SET warned_at = ? WHERE day = ? AND warned_at IS NULL", (now, day)
    ).rowcount
    return view if claimed == 1 else None


class Budget:
    """The bot's daily budget, read and warned about outside the accepting transaction."""

    def __init__(self, db: Database, *, limits: Limits, clock: Clock = utcnow) -> None:
        self._db = db
        self._budget = limits.budget_daily_credits
        self._clock = clock
        self._warned_day: int | None = None

    @property
    def enabled(self) -> bool:
        return self._budget > 0

    async def view(self) -> BudgetView:
        now = to_ts(self._clock())
        return await self._db.read(lambda conn: load(conn, self._budget, now))

    async def claim_warning(self) -> BudgetView | None:
        """After a job was accepted: today's warning, the first time the spend reaches
        ``WARN_PERCENT`` % of the budget (None otherwise, and always without a budget)."""
        if self._budget <= 0:
            return None
        now = to_ts(self._clock())
        day = day_of(now)
        if self._warned_day == day:
            return None  # this process already saw today's warning claimed
        # A read first: most accepts are below the mark or after the claim, and a read
        # costs no write transaction.
        view = await self._db.read(lambda conn: load(conn, self._budget, now))
        if view.warned:
            self._warned_day = day
            return None
        if not view.past_warning:
            return None
        claimed = await self._db.write(lambda conn: claim_warning(conn, self._budget, now))
        self._warned_day = day
        return claimed
