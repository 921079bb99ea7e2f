"""The operator's wallet in the store: the bot's daily budget (atomic with the reservation,
warned once a day), moderation strikes (per member, server and UTC day; a block at the limit,
audited as the bot's), and the wait between a member's accepted jobs."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from store_fixtures import (
    GUILD,
    LIMITS,
    MOD,
    OTHER_GUILD,
    FakeClock,
    create,
    ledger_state,
    new_job,
    open_store,
    with_limits,
)
from test_store_plans import Probe, Schema, problems

from bot.store import (
    BudgetReached,
    CoolingDown,
    Job,
    Limits,
    MemberBlocked,
    Store,
)
from bot.store.models import JobState

ALICE, BOB, CAROL = 1, 2, 3
BOT_USER = 555
RESET = datetime(2025, 3, 11, tzinfo=UTC)  # the FakeClock starts on 2025-03-10 12:00 UTC


def budgeted(store: Store, budget: int) -> Store:
    return with_limits(store, budget_daily_credits=budget)


async def job_count(store: Store) -> int:
    row = await store.db.fetch_one("SELECT COUNT(*) FROM jobs")
    return int(row[0]) if row else 0


async def finish(store: Store, job: Job) -> None:
    await store.jobs.transition(job.id, "queued", "submitted", pixverse_video_id=job.id)
    await store.jobs.finish_done(job.id, f"https://example.invalid/{job.id}.mp4")


# --- the daily budget ---------------------------------------------------------------------


async def test_without_a_budget_nothing_is_refused(store: Store) -> None:
    for user in range(1, 8):
        await create(store, user)
    view = await store.budget.view()
    assert (view.budget, view.reserved, view.left) == (0, 7 * 45, None)
    assert await store.budget.claim_warning() is None


async def test_a_job_that_would_pass_the_budget_is_refused_with_the_reset_and_nothing_kept(
    store: Store,
) -> None:
    wallet = budgeted(store, 100)
    await create(wallet, ALICE)
    await create(wallet, BOB)  # 90 of 100 held
    with pytest.raises(BudgetReached) as refused:
        await create(wallet, CAROL)
    error = refused.value
    assert (error.needed, error.left, error.budget) == (45, 10, 100)
    assert error.resets_at == RESET
    text = str(error)
    assert "00:00 UTC" in text and f"<t:{int(RESET.timestamp())}:R>" in text
    assert "10 are left" in text and "Nothing was charged" in text
    assert await job_count(store) == 2
    assert (await store.budget.view()).reserved == 90


async def test_a_spent_budget_says_when_videos_start_again(store: Store) -> None:
    wallet = budgeted(store, 90)
    await create(wallet, ALICE)
    await create(wallet, BOB)
    with pytest.raises(BudgetReached) as refused:
        await wallet.jobs.precheck(GUILD, CAROL, new_job(CAROL).params)
    assert refused.value.left == 0
    assert "start again after the reset at 00:00 UTC" in str(refused.value)


async def test_the_precheck_refuses_as_the_store_would_writing_nothing(store: Store) -> None:
    wallet = budgeted(store, 44)
    with pytest.raises(BudgetReached):
        await wallet.jobs.precheck(GUILD, ALICE, new_job(ALICE).params)
    assert await job_count(store) == 0


async def test_spend_is_committed_today_plus_reserved_across_servers(
    store: Store, clock: FakeClock
) -> None:
    done = await create(store, ALICE)
    await finish(store, done)
    await create(store, BOB, guild_id=OTHER_GUILD)  # reserved, in another server
    failed = await create(store, CAROL)
    await store.jobs.finish_failed(failed.id, "PixVerse failed")  # released: not spent
    view = await budgeted(store, 1000).budget.view()
    assert (view.committed, view.reserved, view.spent) == (45, 45, 90)

    clock.set(datetime(2025, 3, 11, 0, 0, 1, tzinfo=UTC))  # a new UTC day
    view = await budgeted(store, 1000).budget.view()
    assert (view.committed, view.reserved) == (0, 45)  # only the job still running


async def test_a_moderators_refund_does_not_give_the_operator_the_credits_back(
    store: Store,
) -> None:
    done = await create(store, ALICE)
    await finish(store, done)
    await store.jobs.remove_result(done.id, actor_id=MOD, reason="rules")
    assert await ledger_state(store, done.id) == "refunded"
    assert (await budgeted(store, 1000).budget.view()).committed == 45


async def test_the_same_budget_refuses_once_jobs_finish(store: Store) -> None:
    wallet = budgeted(store, 90)
    for user in (ALICE, BOB):
        await finish(store, await create(wallet, user))
    with pytest.raises(BudgetReached):
        await create(wallet, CAROL)


async def test_concurrent_accepts_never_pass_the_budget(store: Store) -> None:
    wallet = budgeted(store, 100)
    results = await asyncio.gather(
        *(create(wallet, user) for user in range(1, 21)), return_exceptions=True
    )
    accepted = [r for r in results if isinstance(r, Job)]
    refused = [r for r in results if isinstance(r, BudgetReached)]
    assert (len(accepted), len(refused)) == (2, 18), results
    assert (await wallet.budget.view()).reserved == 90


async def test_two_processes_accepting_at_once_never_pass_the_budget(
    db_target: Path | str, clock: FakeClock
) -> None:
    # Two connections to one file, as two bot processes would hold: BEGIN IMMEDIATE makes
    # each accept see the other's reservation.
    limits = Limits(LIMITS.daily_credits, LIMITS.max_jobs_per_user, budget_daily_credits=135)
    async with (
        open_store(db_target, clock, limits) as first,
        open_store(db_target, clock, limits) as second,
    ):
        results = await asyncio.gather(
            *(create(first if user % 2 else second, user) for user in range(1, 13)),
            return_exceptions=True,
        )
        accepted = [r for r in results if isinstance(r, Job)]
        assert len(accepted) == 3, results
        assert all(isinstance(r, Job | BudgetReached) for r in results), results
        assert (await first.budget.view()).reserved == 135


async def test_the_warning_is_claimed_once_when_spend_reaches_80_percent(store: Store) -> None:
    wallet = budgeted(store, 200)
    for user in (ALICE, BOB, CAROL):  # 135 of 200: 67 %
        await create(wallet, user)
        assert await wallet.budget.claim_warning() is None
    await create(wallet, 4)  # 180 of 200: 90 %
    view = await wallet.budget.claim_warning()
    assert view is not None
    assert (view.spent, view.budget, view.percent, view.resets_at) == (180, 200, 90, RESET)
    assert await wallet.budget.claim_warning() is None
    # Another process, or the bot after a restart, finds it claimed in the database.
    assert await budgeted(store, 200).budget.claim_warning() is None


async def test_the_warning_mark_is_exactly_80_percent(store: Store) -> None:
    wallet = budgeted(store, 45 * 5 // 4 + 1)  # 57: 45 is 78.9 %
    await create(wallet, ALICE)
    assert await wallet.budget.claim_warning() is None
    wallet = budgeted(store, 45 * 5 // 4)  # 56: 45 is 80.4 %
    assert await wallet.budget.claim_warning() is not None


async def test_only_one_of_many_concurrent_claims_gets_the_warning(store: Store) -> None:
    await create(store, ALICE)
    claims = await asyncio.gather(*(budgeted(store, 50).budget.claim_warning() for _ in range(8)))
    assert len([c for c in claims if c is not None]) == 1


async def test_the_warning_comes_again_on_a_new_day(store: Store, clock: FakeClock) -> None:
    wallet = budgeted(store, 50)
    await finish(store, await create(wallet, ALICE))
    assert await wallet.budget.claim_warning() is not None
    clock.set(datetime(2025, 3, 11, 9, 0, tzinfo=UTC))
    assert await wallet.budget.claim_warning() is None  # nothing spent yet today
    await create(wallet, ALICE)
    assert await wallet.budget.claim_warning() is not None


async def test_the_warning_survives_a_restart(db_target: Path | str, clock: FakeClock) -> None:
    limits = Limits(LIMITS.daily_credits, LIMITS.max_jobs_per_user, 50)
    async with open_store(db_target, clock, limits) as store:
        await create(store, ALICE)
        assert await store.budget.claim_warning() is not None
    async with open_store(db_target, clock, limits) as store:
        assert await store.budget.claim_warning() is None


async def test_the_upgrade_counts_today_from_the_servers_spend(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with open_store(tmp_path, clock) as store:
        await finish(store, await create(store, ALICE))
        await finish(store, await create(store, BOB, guild_id=OTHER_GUILD))
    # The file as schema 8 left it: without what migration 9 adds (the operator's wallet),
    # nor what came after (10: what PixVerse actually charged; 11: a transition's second
    # image; 12: whether a result has sound).
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "bot.sqlite3")) as conn:
        conn.executescript(
            "DROP TABLE budget_days; DROP TABLE moderation_strikes;"
            " DROP TABLE price_differences; ALTER TABLE ledger DROP COLUMN reserved_amount;"
            " DROP TABLE job_extra_inputs; ALTER TABLE jobs DROP COLUMN pixverse_last_img_id;"
            " ALTER TABLE jobs DROP COLUMN has_audio; DROP INDEX ix_jobs_owner;"
            " ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until;"
            " DROP TABLE runners;"
            " PRAGMA user_version = 8;"
        )
    async with open_store(tmp_path, clock) as store:
        assert (await budgeted(store, 1000).budget.view()).committed == 90


# --- the wait between a member's jobs ------------------------------------------------------


def cooling(store: Store, seconds: float = 3) -> Store:
    return with_limits(store, command_cooldown_seconds=seconds)  # type: ignore[arg-type]


async def test_a_second_job_within_the_wait_is_refused_saying_how_long(
    store: Store, clock: FakeClock
) -> None:
    wallet = cooling(store, 3)
    await create(wallet, ALICE)
    clock.advance(seconds=0.4)
    with pytest.raises(CoolingDown) as refused:
        await create(wallet, ALICE)
    assert refused.value.wait == pytest.approx(2.6)
    assert "wait 3 s" in str(refused.value) and "Nothing was charged" in str(refused.value)
    assert await job_count(store) == 1


async def test_a_refusal_does_not_restart_the_wait(store: Store, clock: FakeClock) -> None:
    wallet = cooling(store, 3)
    await create(wallet, ALICE)
    clock.advance(seconds=2)
    with pytest.raises(CoolingDown) as refused:
        await wallet.jobs.precheck(GUILD, ALICE, new_job(ALICE).params)
    assert "wait 1 s" in str(refused.value)
    with pytest.raises(CoolingDown):
        await create(wallet, ALICE)
    clock.advance(seconds=1)  # 3 s after the accepted job, 1 s after the refusals
    await wallet.jobs.precheck(GUILD, ALICE, new_job(ALICE).params)
    await create(wallet, ALICE)


async def test_the_wait_is_per_member_and_server(store: Store) -> None:
    wallet = cooling(store, 60)
    await create(wallet, ALICE)
    await create(wallet, BOB)
    await create(wallet, ALICE, guild_id=OTHER_GUILD)
    with pytest.raises(CoolingDown):
        await create(wallet, ALICE)


async def test_the_wait_holds_across_a_restart(db_target: Path | str, clock: FakeClock) -> None:
    limits = Limits(LIMITS.daily_credits, LIMITS.max_jobs_per_user, command_cooldown_seconds=5)
    async with open_store(db_target, clock, limits) as store:
        await create(store, ALICE)
    clock.advance(seconds=1)
    async with open_store(db_target, clock, limits) as store:
        with pytest.raises(CoolingDown):
            await store.jobs.precheck(GUILD, ALICE, new_job(ALICE).params)


async def test_a_job_that_ended_still_counts_as_accepted(store: Store, clock: FakeClock) -> None:
    wallet = cooling(store, 3)
    job = await create(wallet, ALICE)
    await store.jobs.cancel(job.id, by_user_id=ALICE)
    clock.advance(seconds=1)
    with pytest.raises(CoolingDown):
        await create(wallet, ALICE)


async def test_commands_sent_together_cannot_both_pass_the_wait(store: Store) -> None:
    wallet = cooling(store, 3)
    results = await asyncio.gather(
        *(create(wallet, ALICE) for _ in range(5)), return_exceptions=True
    )
    assert len([r for r in results if isinstance(r, Job)]) == 1, results
    assert len([r for r in results if isinstance(r, CoolingDown)]) == 4, results


async def test_a_blocked_member_hears_of_the_block_not_the_wait(store: Store) -> None:
    wallet = cooling(store, 60)
    await create(wallet, ALICE)
    await store.admin.block(GUILD, MOD, ALICE, "spamming")
    with pytest.raises(MemberBlocked):
        await create(wallet, ALICE)


# --- moderation strikes ----------------------------------------------------------------------


def striking(store: Store, limit: int = 3) -> Store:
    return Store.on(
        store.db,
        limits=Limits(LIMITS.daily_credits, LIMITS.max_jobs_per_user, moderation_strikes=limit),
        clock=store.clock,
        bot_user_id=BOT_USER,
    )


async def moderated(store: Store, user: int = ALICE, guild_id: int = GUILD):
    """A job of ``user`` that PixVerse's moderation refused: the runner's two steps."""
    job = await create(store, user, guild_id=guild_id)
    strike = await store.strikes.record(job.id)
    await store.jobs.finish_failed(job.id, "PixVerse's content moderation refused this video")
    return strike


async def test_strikes_are_counted_per_member_and_server(store: Store) -> None:
    wallet = striking(store, 3)
    assert (await moderated(wallet)).number == 1
    assert (await moderated(wallet, BOB)).number == 1
    assert (await moderated(wallet, guild_id=OTHER_GUILD)).number == 1
    second = await moderated(wallet)
    assert (second.number, second.limit, second.blocked) == (2, 3, False)
    assert await wallet.strikes.today(GUILD, ALICE) == 2
    assert not (await store.ledger.quota(GUILD, ALICE)).blocked


async def test_recording_a_jobs_strike_again_counts_it_once(store: Store) -> None:
    wallet = striking(store, 2)
    job = await create(wallet, ALICE)
    first = await wallet.strikes.record(job.id)
    again = await wallet.strikes.record(job.id)
    assert first == again and first is not None and first.number == 1
    assert await wallet.strikes.today(GUILD, ALICE) == 1
    assert await wallet.strikes.of_job(job.id) == first


async def test_the_limiting_strike_blocks_the_member_audited_as_the_bot(store: Store) -> None:
    wallet = striking(store, 3)
    await moderated(wallet)
    await moderated(wallet)
    third = await moderated(wallet)
    assert (third.number, third.blocked) == (3, True)
    view = await store.ledger.quota(GUILD, ALICE)
    assert view.blocked
    assert view.block_reason == "PixVerse's moderation refused 3 of your videos today"
    [row] = await store.admin.audit(GUILD, ALICE)
    assert (row.actor_id, row.action, row.target_id) == (BOT_USER, "quota.block", ALICE)
    assert row.after["blocked"] is True and row.after["moderation_strikes"] == 3
    with pytest.raises(MemberBlocked) as refused:
        await create(wallet, ALICE)
    assert "moderation refused 3 of your videos" in str(refused.value)
    # Only in that server.
    await create(wallet, ALICE, guild_id=OTHER_GUILD)


async def test_strikes_from_before_an_unblock_do_not_count_after_it(
    store: Store, clock: FakeClock
) -> None:
    wallet = striking(store, 2)
    running = [await create(wallet, ALICE, daily=1000) for _ in range(4)]
    for job in running[:3]:  # the third comes in while the member is blocked
        await wallet.strikes.record(job.id)
        clock.advance(seconds=1)
    assert (await store.ledger.quota(GUILD, ALICE)).blocked
    await store.admin.unblock(GUILD, MOD, ALICE)
    clock.advance(seconds=1)
    fourth = await wallet.strikes.record(running[3].id)
    assert fourth is not None and (fourth.number, fourth.blocked) == (1, False)
    assert not (await store.ledger.quota(GUILD, ALICE)).blocked


async def test_an_unblocked_member_is_blocked_again_after_as_many_new_strikes(
    store: Store, clock: FakeClock
) -> None:
    wallet = striking(store, 2)
    await moderated(wallet)
    assert (await moderated(wallet)).blocked
    clock.advance(seconds=10)
    await store.admin.unblock(GUILD, MOD, ALICE)
    clock.advance(seconds=10)
    assert not (await moderated(wallet)).blocked
    assert (await moderated(wallet)).blocked
    actions = [(r.actor_id, r.action) for r in await store.admin.audit(GUILD, ALICE)]
    assert actions == [
        (BOT_USER, "quota.block"),
        (MOD, "quota.unblock"),
        (BOT_USER, "quota.block"),
    ]


async def test_strikes_start_again_each_utc_day(store: Store, clock: FakeClock) -> None:
    wallet = striking(store, 2)
    clock.set(datetime(2025, 3, 10, 23, 59, tzinfo=UTC))
    await moderated(wallet)
    clock.set(datetime(2025, 3, 11, 0, 1, tzinfo=UTC))
    strike = await moderated(wallet)
    assert (strike.number, strike.blocked) == (1, False)


async def test_a_member_a_moderator_blocked_keeps_that_block(store: Store) -> None:
    wallet = striking(store, 1)
    job = await create(wallet, ALICE)
    await store.admin.block(GUILD, MOD, ALICE, "rude")
    strike = await wallet.strikes.record(job.id)
    assert strike is not None and not strike.blocked
    view = await store.ledger.quota(GUILD, ALICE)
    assert (view.blocked, view.block_reason) == (True, "rude")
    assert [r.actor_id for r in await store.admin.audit(GUILD, ALICE)] == [MOD]


async def test_with_strikes_off_they_are_counted_but_never_block(store: Store) -> None:
    wallet = striking(store, 0)
    for number in range(1, 6):
        strike = await moderated(wallet)
        assert (strike.number, strike.blocked) == (number, False)
    assert not (await store.ledger.quota(GUILD, ALICE)).blocked


async def test_a_job_that_already_ended_gives_no_strike(store: Store) -> None:
    wallet = striking(store, 1)
    job = await create(wallet, ALICE)
    await store.jobs.cancel(job.id, by_user_id=ALICE)
    assert await wallet.strikes.record(job.id) is None
    assert await wallet.strikes.record(987654) is None
    assert (await store.jobs.get(job.id)).state is JobState.CANCELLED
    assert not (await store.ledger.quota(GUILD, ALICE)).blocked


# --- what accepting a job reads --------------------------------------------------------------


async def test_the_wallet_checks_read_only_what_they_need(tmp_path: Path, clock: FakeClock) -> None:
    """The statements the wallet adds to every accept and every moderated result use the
    indexes (tests/test_store_plans.py's rules): no table or full-index scan. SQLite's plans:
    it runs on SQLite only."""
    async with open_store(tmp_path, clock) as store:
        await _check_wallet_plans(store)


async def _check_wallet_plans(store: Store) -> None:
    wallet = Store.on(
        store.db,
        limits=Limits(LIMITS.daily_credits, 100, 10_000, 3, 3.0),
        clock=store.clock,
        bot_user_id=BOT_USER,
    )
    for user in range(1, 30):
        await finish(store, await create(store, user))
    statements: list[str] = []
    await store.db.read(lambda conn: conn.set_trace_callback(statements.append))
    try:
        await wallet.jobs.precheck(GUILD, 99, new_job(99).params)
        job = await create(wallet, 99)
        await wallet.strikes.record(job.id)
        await wallet.budget.claim_warning()
    finally:
        await store.db.read(lambda conn: conn.set_trace_callback(None))

    def explain(conn: sqlite3.Connection) -> tuple[Schema, dict[str, list[str]]]:
        tables = frozenset(
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
        partial = {
            name: " WHERE " in sql.upper()
            for name, sql in conn.execute(
                "SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'index'"
            )
        }
        wanted = [
            s
            for s in dict.fromkeys(statements)
            if any(
                t in s for t in ("budget_days", "moderation_strikes", "audit_log", "ORDER BY id")
            )
            or "state = 'reserved'" in s
        ]
        return Schema(tables, partial), {
            s: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + s)] for s in wanted
        }

    schema, plans = await store.db.read(explain)
    assert plans, statements
    probe = Probe("accept", lambda _store: asyncio.sleep(0))
    report = {
        sql: found for sql, plan in plans.items() if (found := problems(sql, plan, schema, probe))
    }
    assert not report, report
