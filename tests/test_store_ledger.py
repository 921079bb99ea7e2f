"""Ledger rules: allowance, bonus, resets, blocks, server cap, idempotency, concurrency, days."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from store_fixtures import (
    DAILY,
    GUILD,
    MOD,
    OTHER_GUILD,
    FakeClock,
    create,
    ledger_commit,
    ledger_refund,
    ledger_release,
    ledger_reserve_again,
    ledger_state,
    open_store,
    with_limits,
)

from bot.store import (
    InsufficientCredits,
    Job,
    MemberBlocked,
    ServerCapReached,
    Store,
    TooManyJobs,
)
from bot.store import ledger as ledger_sql

USER = 42
LEDGER_OPS = {"commit": ledger_commit, "release": ledger_release}
ROLE_VIP, ROLE_MEGA = 7, 8


async def quota(store: Store, user: int = USER, roles: tuple[int, ...] = (), daily: int = DAILY):
    return await with_limits(store, daily_credits=daily).ledger.quota(GUILD, user, role_ids=roles)


# --- allowance ------------------------------------------------------------------------------


async def test_allowance_is_daily_credits_by_default(store: Store) -> None:
    view = await quota(store)
    assert (view.allowance, view.allowance_source, view.left) == (DAILY, "default", DAILY)


async def test_allowance_is_the_highest_of_daily_credits_and_the_members_roles(
    store: Store,
) -> None:
    await store.admin.set_role_daily(GUILD, MOD, ROLE_VIP, 300)
    await store.admin.set_role_daily(GUILD, MOD, ROLE_MEGA, 500)
    await store.admin.set_role_daily(OTHER_GUILD, MOD, 9, 9000)  # another server's role
    assert (await quota(store, roles=(ROLE_VIP,))).allowance == 300
    view = await quota(store, roles=(ROLE_VIP, ROLE_MEGA, 9))
    assert (view.allowance, view.allowance_source) == (500, "role")
    assert (await quota(store, roles=(ROLE_VIP,), daily=400)).allowance == 400


async def test_own_value_wins_over_roles_even_when_lower(store: Store) -> None:
    await store.admin.set_role_daily(GUILD, MOD, ROLE_VIP, 300)
    await store.admin.set_daily(GUILD, MOD, USER, 60)
    view = await quota(store, roles=(ROLE_VIP,))
    assert (view.allowance, view.allowance_source) == (60, "own")
    await store.admin.set_daily(GUILD, MOD, USER, None)
    assert (await quota(store, roles=(ROLE_VIP,))).allowance == 300


async def test_roles_decide_the_reservation(store: Store) -> None:
    await store.admin.set_role_daily(GUILD, MOD, ROLE_VIP, 300)
    for _ in range(6):
        await create(store, USER, role_ids=(ROLE_VIP,))  # 270 of 300
    with pytest.raises(InsufficientCredits) as refused:
        await create(store, USER, role_ids=())  # without the role: 150 allowance
    assert refused.value.allowance == DAILY


# --- refusals with numbers ------------------------------------------------------------------


async def test_refusal_states_the_exact_shortfall(store: Store) -> None:
    await create(store, USER)
    await create(store, USER)  # 90 reserved, 60 left
    with pytest.raises(InsufficientCredits) as refused:
        await create(store, USER, duration=8)  # 90 credits
    error = refused.value
    assert (error.needed, error.left, error.shortfall) == (90, 60, 30)
    assert (error.allowance, error.bonus, error.used, error.reserved) == (150, 0, 0, 90)
    assert "costs 90 credits but you have 60 left today" in str(error)
    assert "choose a shorter video or a lower quality" in str(error)
    assert error.resets_at == datetime(2025, 3, 11, tzinfo=UTC)


async def test_refusal_only_suggests_a_cheaper_video_when_one_fits(store: Store) -> None:
    for _ in range(3):
        await create(store, USER)  # 135 of 150: 15 left
    # The cheapest video of the shipped catalogue is v6 at 360p for 1 s: 5 credits.
    assert store.jobs.cheapest == 5
    await store.admin.grant(GUILD, MOD, USER, -11)  # 4 left, cheaper than any video
    with pytest.raises(InsufficientCredits) as refused:
        await create(store, USER)
    assert "lower quality" not in str(refused.value)
    assert "wait for the reset at 00:00 UTC" in str(refused.value)


async def test_refused_reservation_writes_nothing(store: Store) -> None:
    await store.admin.set_daily(GUILD, MOD, USER, 10)
    with pytest.raises(InsufficientCredits):
        await create(store, USER)
    assert await store.db.fetch_all("SELECT * FROM jobs") == []
    assert await store.db.fetch_all("SELECT * FROM ledger") == []


async def test_blocked_member_is_refused_before_anything_else(store: Store) -> None:
    await store.admin.set_daily(GUILD, MOD, USER, 0)
    await store.admin.block(GUILD, MOD, USER, "spam")
    with pytest.raises(MemberBlocked) as refused:
        await create(store, USER, max_jobs=0)  # also no credits and no job slot
    assert refused.value.reason == "spam"
    assert "spam" in str(refused.value)
    await store.admin.unblock(GUILD, MOD, USER)
    with pytest.raises(TooManyJobs):
        await create(store, USER, max_jobs=0)


async def test_block_is_per_server(store: Store) -> None:
    await store.admin.block(GUILD, MOD, USER, None)
    job = await create(store, USER, guild_id=OTHER_GUILD)
    assert job.guild_id == OTHER_GUILD


async def test_server_cap_counts_the_whole_servers_use_and_reservations(store: Store) -> None:
    await store.admin.set_server_cap(GUILD, MOD, 100)
    first = await create(store, 1)
    await store.jobs.finish_done(first.id, "https://x/1.mp4")  # 45 used
    await create(store, 2)  # 45 reserved
    with pytest.raises(ServerCapReached) as refused:
        await create(store, 3)
    assert (refused.value.needed, refused.value.left, refused.value.cap) == (45, 10, 100)
    view = await quota(store, user=3)
    assert (view.server_cap, view.server_used_today, view.server_reserved) == (100, 45, 45)
    assert view.server_left == 10
    await store.admin.set_server_cap(GUILD, MOD, 0)  # 0 = no cap
    await create(store, 3)


# --- bonus, grants, resets ------------------------------------------------------------------


async def test_bonus_is_a_one_off_pool_spent_after_the_daily_allowance(
    store: Store, clock: FakeClock
) -> None:
    await store.admin.grant(GUILD, MOD, USER, 100)
    assert (await quota(store)).left == 250
    jobs = [await create(store, USER, duration=8) for _ in range(2)]  # 2 × 90 = 180
    view = await quota(store)
    assert (view.reserved, view.left) == (180, 70)
    for job in jobs:
        await store.jobs.finish_done(job.id, "https://x.mp4")
    view = await quota(store)
    # 150 from today's allowance, the other 30 from the bonus, for good
    assert (view.used_today, view.bonus, view.reserved, view.left) == (150, 70, 0, 70)
    assert view.left == view.allowance + view.bonus - view.used_today - view.reserved

    clock.advance(days=1)
    view = await quota(store)
    assert (view.used_today, view.bonus, view.left) == (0, 70, 220)  # not re-granted


async def test_negative_grant_takes_bonus_back_then_todays_credits(
    store: Store, clock: FakeClock
) -> None:
    await store.admin.grant(GUILD, MOD, USER, 40)
    view = await store.admin.grant(GUILD, MOD, USER, -100)
    assert (view.bonus, view.used_today, view.left) == (0, 60, 90)
    clock.advance(days=1)
    assert (await quota(store)).left == DAILY  # a one-off take-back, not a daily one


async def test_reset_clears_todays_usage_but_not_reservations(store: Store) -> None:
    done = await create(store, USER, duration=8)
    await store.jobs.finish_done(done.id, "https://x.mp4")
    await create(store, USER)
    assert (await quota(store)).left == 15
    view = await store.admin.reset(GUILD, MOD, USER)
    assert (view.used_today, view.reserved, view.left) == (0, 45, 105)
    assert view.server_used_today == 90  # the server did spend them


# --- idempotency ----------------------------------------------------------------------------


async def test_commit_twice_counts_once(store: Store) -> None:
    job = await create(store, USER)
    assert await ledger_commit(store, job.id) is True
    assert await ledger_commit(store, job.id) is False
    assert (await quota(store)).used_today == 45


async def test_release_twice_gives_back_once(store: Store) -> None:
    job = await create(store, USER)
    assert await ledger_release(store, job.id) is True
    assert await ledger_release(store, job.id) is False
    view = await quota(store)
    assert (view.reserved, view.used_today, view.left) == (0, 0, 150)


async def test_release_after_commit_changes_nothing(store: Store) -> None:
    job = await create(store, USER)
    await ledger_commit(store, job.id)
    assert await ledger_release(store, job.id) is False
    assert await ledger_state(store, job.id) == "committed"
    assert (await quota(store)).used_today == 45


async def test_commit_after_release_is_refused(store: Store) -> None:
    job = await create(store, USER)
    await ledger_release(store, job.id)
    assert await ledger_commit(store, job.id) is False
    assert await ledger_state(store, job.id) == "released"
    assert (await quota(store)).used_today == 0


async def test_reserve_twice_for_one_job_reserves_once(store: Store) -> None:
    job = await create(store, USER)
    again = await ledger_reserve_again(store, job)
    assert again is False
    assert (await quota(store)).reserved == 45


async def test_refund_of_a_job_committed_today_uncounts_it(store: Store) -> None:
    job = await create(store, USER)
    await ledger_commit(store, job.id)
    assert await ledger_refund(store, job.id) == 45
    assert await ledger_refund(store, job.id) == 0
    view = await quota(store)
    assert (view.used_today, view.bonus, view.left, view.server_used_today) == (0, 0, 150, 0)


async def test_refund_of_an_earlier_days_job_becomes_bonus(store: Store, clock: FakeClock) -> None:
    job = await create(store, USER)
    await ledger_commit(store, job.id)
    clock.advance(days=1)
    assert await ledger_refund(store, job.id) == 45
    view = await quota(store)
    assert (view.used_today, view.bonus, view.left) == (0, 45, 195)


async def test_refund_needs_a_committed_job(store: Store) -> None:
    job = await create(store, USER)
    assert await ledger_refund(store, job.id) == 0
    await ledger_release(store, job.id)
    assert await ledger_refund(store, job.id) == 0


# --- concurrency ----------------------------------------------------------------------------


async def test_200_concurrent_reservations_never_overspend(store: Store) -> None:
    await store.admin.set_daily(GUILD, MOD, USER, 450)
    results = await asyncio.gather(
        *(create(store, USER, max_jobs=1000) for _ in range(200)), return_exceptions=True
    )
    accepted = [r for r in results if isinstance(r, Job)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(accepted), len(refused)) == (10, 190)
    assert all(r.left == 0 and r.shortfall == 45 for r in refused)
    assert (await quota(store)).reserved == 450

    # Every job gets a commit or a release, each sent three times, racing the opposite op.
    rng = random.Random(7)
    ops = []
    decided = {}
    for job in accepted:
        decided[job.id] = rng.choice(["commit", "release"])
        first = partial(LEDGER_OPS[decided[job.id]], store)
        other = partial(ledger_release if decided[job.id] == "commit" else ledger_commit, store)
        ops += [(job.id, first), (job.id, first), (job.id, first), (job.id, other)]
    order = list(range(len(ops)))
    rng.shuffle(order)
    outcomes = await asyncio.gather(*(ops[i][1](ops[i][0]) for i in order))

    wins = [ops[i][0] for i, ok in zip(order, outcomes, strict=True) if ok]
    assert sorted(wins) == sorted(job.id for job in accepted)  # exactly one op won per job
    states = dict(await store.db.fetch_all("SELECT job_id, state FROM ledger"))
    committed = sum(1 for state in states.values() if state == "committed")
    released = sum(1 for state in states.values() if state == "released")
    assert committed + released == 10
    view = await quota(store)
    assert (view.reserved, view.used_today) == (0, 45 * committed)
    assert view.left == 450 - 45 * committed


async def test_concurrent_members_share_a_server_cap_exactly(store: Store) -> None:
    await store.admin.set_server_cap(GUILD, MOD, 450)
    results = await asyncio.gather(
        *(create(store, 1000 + n) for n in range(100)), return_exceptions=True
    )
    assert sum(isinstance(r, Job) for r in results) == 10
    assert sum(isinstance(r, ServerCapReached) for r in results) == 90


# --- the UTC day ----------------------------------------------------------------------------


async def test_usage_rolls_over_at_midnight_utc(store: Store, clock: FakeClock) -> None:
    clock.set(datetime(2025, 3, 10, 23, 59, 0, tzinfo=UTC))
    yesterday = await create(store, USER, duration=8)
    await store.jobs.finish_done(yesterday.id, "https://x.mp4")  # 90 used on the 10th
    late = await create(store, USER)  # reserved on the 10th …
    assert (await quota(store)).left == 15

    clock.set(datetime(2025, 3, 11, 0, 0, 30, tzinfo=UTC))
    view = await quota(store)
    # … yesterday's use no longer counts; the reservation is still held
    assert (view.used_today, view.reserved, view.left) == (0, 45, 105)
    assert view.resets_at == datetime(2025, 3, 12, tzinfo=UTC)

    await store.jobs.finish_done(late.id, "https://x.mp4")  # … delivered on the 11th
    view = await quota(store)
    assert (view.used_today, view.reserved, view.left) == (45, 0, 105)


async def test_rollover_needs_no_process_running_at_midnight(
    db_target: Path | str, clock: FakeClock
) -> None:
    clock.set(datetime(2025, 3, 10, 18, 0, tzinfo=UTC))
    async with open_store(db_target, clock) as first:
        job = await create(first, USER)
        await first.jobs.finish_done(job.id, "https://x.mp4")
    clock.set(datetime(2025, 3, 11, 9, 0, tzinfo=UTC))  # "restarted" the next morning
    async with open_store(db_target, clock) as second:
        assert (await quota(second)).used_today == 0


def test_allowance_resolution_rule() -> None:
    assert ledger_sql.resolve_allowance(None, None, 150) == (150, "default")
    assert ledger_sql.resolve_allowance(None, 100, 150) == (150, "default")
    assert ledger_sql.resolve_allowance(None, 200, 150) == (200, "role")
    assert ledger_sql.resolve_allowance(0, 200, 150) == (0, "own")
