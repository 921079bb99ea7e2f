"""/quota-admin operations: results, audit rows (who, what, before, after, when), reports."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from store_fixtures import GUILD, MOD, OTHER_GUILD, FakeClock, create, open_store, server

from bot.store import Store

USER = 42
OTHER_MOD = 901


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 12, 15, 0, tzinfo=UTC))  # a Wednesday


async def last_audit(store: Store):
    entries = await store.admin.audit(GUILD, limit=1)
    assert entries, "no audit row written"
    return entries[0]


async def test_show_reports_every_part(store: Store) -> None:
    await store.admin.grant(GUILD, MOD, USER, 30)
    done = await create(store, USER)
    await store.jobs.finish_done(done.id, "https://x.mp4")
    await create(store, USER)
    await store.admin.block(GUILD, MOD, USER, "spam")
    view = await store.admin.show(GUILD, USER)
    assert (view.allowance, view.bonus, view.used_today, view.reserved, view.left) == (
        150,
        30,
        45,
        45,
        90,
    )
    assert (view.blocked, view.block_reason) == (True, "spam")
    assert view.resets_at == datetime(2025, 3, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("operation", "action", "before", "after"),
    [
        (
            lambda a: a.set_daily(GUILD, MOD, USER, 300),
            "quota.set_daily",
            {"daily_override": None},
            {"daily_override": 300},
        ),
        (
            lambda a: a.grant(GUILD, MOD, USER, 25),
            "quota.grant",
            {"bonus": 0, "used_today": 0},
            {"bonus": 25, "used_today": 0, "granted": 25},
        ),
        (
            lambda a: a.reset(GUILD, MOD, USER),
            "quota.reset",
            {"used_today": 0},
            {"used_today": 0},
        ),
        (
            lambda a: a.block(GUILD, MOD, USER, "spam"),
            "quota.block",
            {"blocked": False, "block_reason": None},
            {"blocked": True, "block_reason": "spam"},
        ),
        (
            lambda a: a.unblock(GUILD, MOD, USER),
            "quota.unblock",
            {"blocked": False, "block_reason": None},
            {"blocked": False, "block_reason": None},
        ),
        (
            lambda a: a.set_server_cap(GUILD, MOD, 1000),
            "quota.server_cap",
            {"server_cap": 0},
            {"server_cap": 1000},
        ),
        (
            lambda a: a.set_role_daily(GUILD, MOD, 77, 400),
            "quota.role_daily",
            {"role_daily": None},
            {"role_daily": 400},
        ),
    ],
)
async def test_every_admin_change_writes_an_audit_row(
    store: Store, clock: FakeClock, operation, action: str, before: dict, after: dict
) -> None:
    await operation(store.admin)
    entry = await last_audit(store)
    assert (entry.guild_id, entry.actor_id, entry.action) == (GUILD, MOD, action)
    assert (entry.before, entry.after) == (before, after)
    assert entry.created_at == clock.now
    assert entry.target_id == {"quota.server_cap": None, "quota.role_daily": 77}.get(action, USER)


async def test_audit_rows_record_the_previous_value(store: Store) -> None:
    await store.admin.set_daily(GUILD, MOD, USER, 300)
    await store.admin.set_daily(GUILD, OTHER_MOD, USER, 100)
    entry = await last_audit(store)
    assert (entry.actor_id, entry.before, entry.after) == (
        OTHER_MOD,
        {"daily_override": 300},
        {"daily_override": 100},
    )


async def test_audit_is_newest_first_per_server_and_filters_by_user(
    store: Store, clock: FakeClock
) -> None:
    await store.admin.grant(GUILD, MOD, USER, 10)
    clock.advance(minutes=1)
    await store.admin.grant(GUILD, MOD, 43, 10)
    clock.advance(minutes=1)
    await store.admin.block(GUILD, OTHER_MOD, USER, None)
    await store.admin.grant(OTHER_GUILD, MOD, USER, 10)

    entries = await store.admin.audit(GUILD)
    assert [(e.action, e.target_id) for e in entries] == [
        ("quota.block", USER),
        ("quota.grant", 43),
        ("quota.grant", USER),
    ]
    assert [e.action for e in await store.admin.audit(GUILD, USER)] == [
        "quota.block",
        "quota.grant",
    ]
    assert len(await store.admin.audit(GUILD, OTHER_MOD)) == 1  # actions by that moderator
    assert len(await store.admin.audit(GUILD, limit=2)) == 2


async def test_a_failed_change_writes_no_audit_row(store: Store) -> None:
    with pytest.raises(ValueError, match="credits"):
        await store.admin.set_daily(GUILD, MOD, USER, -5)
    with pytest.raises(ValueError, match="credits"):
        await store.admin.set_server_cap(GUILD, MOD, -1)
    assert await store.admin.audit(GUILD) == []


async def test_role_daily_zero_removes_the_role_value(store: Store) -> None:
    view = await store.admin.set_role_daily(GUILD, MOD, 77, 400)
    assert view.role_dailies == {77: 400}
    view = await store.admin.set_role_daily(GUILD, MOD, 77, 0)
    assert view.role_dailies == {}
    entry = await last_audit(store)
    assert (entry.before, entry.after) == ({"role_daily": 400}, {"role_daily": None})


async def test_server_view(store: Store) -> None:
    await store.admin.set_server_cap(GUILD, MOD, 500)
    done = await create(store, USER)
    await store.jobs.finish_done(done.id, "https://x.mp4")
    await create(store, USER)
    view = await server(store, GUILD)
    assert (view.server_cap, view.used_today, view.reserved, view.left) == (500, 45, 45, 410)


async def test_guild_settings_round_trip_with_audit(store: Store) -> None:
    assert (await store.admin.guild_settings(GUILD)).paused is False
    await store.moderation.set_log_channel(GUILD, MOD, 555)
    settings = await store.admin.guild_settings(GUILD)
    assert settings.log_channel_id == 555
    entry = await last_audit(store)
    assert (entry.action, entry.before, entry.after) == (
        "mod.log_channel",
        {"log_channel_id": None},
        {"log_channel_id": 555},
    )


async def test_top_ranks_spending_this_day_and_this_week(store: Store, clock: FakeClock) -> None:
    async def spend(user: int, times: int) -> None:
        for _ in range(times):
            job = await create(store, user)
            await store.jobs.finish_done(job.id, "https://x.mp4")

    clock.set(datetime(2025, 3, 9, 12, 0, tzinfo=UTC))  # Sunday: last week
    await spend(3, 3)
    clock.set(datetime(2025, 3, 10, 12, 0, tzinfo=UTC))  # Monday: this week
    await spend(1, 3)
    clock.set(datetime(2025, 3, 12, 12, 0, tzinfo=UTC))  # Wednesday: today
    await spend(2, 2)
    await spend(1, 1)
    refunded = await create(store, 2)
    await store.jobs.finish_done(refunded.id, "https://x.mp4")
    await store.jobs.remove_result(refunded.id, actor_id=MOD)
    await create(store, 4)  # reserved only: not spent

    today = await store.admin.top(GUILD, "day")
    assert [(e.user_id, e.credits, e.jobs) for e in today] == [(2, 90, 2), (1, 45, 1)]
    week = await store.admin.top(GUILD, "week")
    assert [(e.user_id, e.credits) for e in week] == [(1, 180), (2, 90)]
    assert len(await store.admin.top(GUILD, "week", limit=1)) == 1
    with pytest.raises(ValueError, match="period"):
        await store.admin.top(GUILD, "year")  # type: ignore[arg-type]


async def test_top_week_after_the_upgrade_counts_what_was_committed_before(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Migration 7 fills the weekly totals from the ledger rows already there."""

    async def spend(store: Store, user: int, times: int, guild: int = GUILD) -> None:
        for _ in range(times):
            job = await create(store, user, guild_id=guild)
            await store.jobs.finish_done(job.id, "https://x.mp4")

    async with open_store(tmp_path, clock) as store:
        clock.set(datetime(2025, 3, 9, 23, 59, tzinfo=UTC))  # Sunday: last week
        await spend(store, 3, 3)
        clock.set(datetime(2025, 3, 10, 0, 0, tzinfo=UTC))  # Monday: this week
        await spend(store, 1, 2)
        await spend(store, 2, 1, guild=OTHER_GUILD)
        clock.set(datetime(2025, 3, 12, 15, 0, tzinfo=UTC))
        await spend(store, 2, 1)
        refunded = await create(store, 2)
        await store.jobs.finish_done(refunded.id, "https://x.mp4")
        await store.jobs.remove_result(refunded.id, actor_id=MOD)
    # The file as schema 6 left it: the same ledger, without what migration 7 adds.
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "bot.sqlite3")) as conn:
        conn.executescript(
            "DROP TABLE member_week_spend; DROP INDEX ix_jobs_guild_kept;"
            " DROP INDEX ix_jobs_guild_active; PRAGMA user_version = 6;"
            # What later migrations add (8: the token sweep's index; 9: the operator's wallet;
            # 10: what PixVerse actually charged; 11: a transition's second image; 12: whether
            # a result has sound).
            " DROP INDEX ix_jobs_token; DROP TABLE budget_days; DROP TABLE moderation_strikes;"
            " DROP TABLE price_differences; ALTER TABLE ledger DROP COLUMN reserved_amount;"
            " DROP TABLE job_extra_inputs; ALTER TABLE jobs DROP COLUMN pixverse_last_img_id;"
            " ALTER TABLE jobs DROP COLUMN has_audio; DROP INDEX ix_jobs_owner;"
            " ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until;"
            " DROP TABLE runners;"
        )
    async with open_store(tmp_path, clock) as store:
        week = await store.admin.top(GUILD, "week")
        assert [(e.user_id, e.credits, e.jobs) for e in week] == [(1, 90, 2), (2, 45, 1)]
        assert [(e.user_id, e.jobs) for e in await store.admin.top(OTHER_GUILD, "week")] == [(2, 1)]
        clock.set(datetime(2025, 3, 9, 12, 0, tzinfo=UTC))
        assert [(e.user_id, e.jobs) for e in await store.admin.top(GUILD, "week")] == [(3, 3)]
