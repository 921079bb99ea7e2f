"""Actual cost: when PixVerse reports what a job cost, the ledger commits that amount instead
of the reservation, everywhere the reservation would have counted, once; differences from
the catalogue's price are counted per combination."""

from __future__ import annotations

from datetime import timedelta

from store_fixtures import DAILY, GUILD, FakeClock, create, ledger_state, server

from bot.pixverse.rules import Motion, Quality
from bot.store import JobParams, NewJob, Store, ledger
from bot.store.charges import variant_of
from bot.store.clock import day_of, to_ts

USER = 42
RESERVED = 45  # v4.5 540p 5 s, as the store fixtures price it


async def ledger_row(store: Store, job_id: int) -> tuple[int, int | None]:
    row = await store.db.fetch_one(
        "SELECT amount, reserved_amount FROM ledger WHERE job_id = ?", (job_id,)
    )
    assert row is not None
    return int(row[0]), None if row[1] is None else int(row[1])


async def test_a_charge_below_the_reservation_commits_the_charge_everywhere(
    store: Store, clock: FakeClock
) -> None:
    job = await create(store, USER)
    assert job.cost == RESERVED
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=30)

    quota = await store.ledger.quota(GUILD, USER)
    assert (quota.used_today, quota.reserved, quota.left) == (30, 0, DAILY - 30)
    assert await ledger_row(store, job.id) == (30, RESERVED)
    assert (await server(store, GUILD)).used_today == 30
    assert (await store.budget.view()).committed == 30
    [top] = await store.admin.top(GUILD, "week")
    assert (top.user_id, top.credits, top.jobs) == (USER, 30, 1)
    [top_day] = await store.admin.top(GUILD, "day")
    assert top_day.credits == 30
    stored = await store.jobs.get(job.id)
    assert stored is not None and stored.cost == 30  # what its message shows as spent


async def test_a_charge_above_the_reservation_is_committed_even_past_the_allowance(
    store: Store, clock: FakeClock
) -> None:
    first = await create(store, USER)
    second = await create(store, USER)
    assert await store.jobs.finish_done(first.id, "https://x.mp4")
    # 105 left with 45 reserved: PixVerse takes 120 for the second, 75 more than reserved.
    assert await store.jobs.finish_done(second.id, "https://y.mp4", charged=120)

    quota = await store.ledger.quota(GUILD, USER)
    assert quota.used_today == RESERVED + 120  # 165: past the 150 allowance
    assert quota.left == 0  # shown as 0; the raw Left is below zero for the day
    now = to_ts(clock())
    numbers = await store.db.read(
        lambda conn: ledger.load_member(
            conn, GUILD, USER, role_ids=(), daily_default=DAILY, day=day_of(now)
        )
    )
    assert numbers.raw_left == DAILY - RESERVED - 120 < 0
    assert (await store.budget.view()).committed == RESERVED + 120
    # The next day starts afresh.
    clock.advance(days=1)
    assert (await store.ledger.quota(GUILD, USER)).left == DAILY


async def test_an_over_charge_is_taken_from_the_bonus_before_passing_the_allowance(
    store: Store,
) -> None:
    await store.admin.grant(GUILD, 1, USER, 50)
    job = await create(store, USER)
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=170)
    quota = await store.ledger.quota(GUILD, USER)
    assert (quota.used_today, quota.bonus, quota.left) == (DAILY, 30, 30)


async def test_finishing_twice_commits_the_charge_once(store: Store) -> None:
    job = await create(store, USER)
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=50)
    assert not await store.jobs.finish_done(job.id, "https://x.mp4", charged=50)
    assert not await store.jobs.finish_done(job.id, "https://x.mp4", charged=70)
    quota = await store.ledger.quota(GUILD, USER)
    assert quota.used_today == 50
    [difference] = await store.jobs.price_differences()
    assert difference.jobs == 1


async def test_without_a_report_the_reservation_is_committed(store: Store) -> None:
    job = await create(store, USER)
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=None)
    assert (await store.ledger.quota(GUILD, USER)).used_today == RESERVED
    assert await ledger_row(store, job.id) == (RESERVED, None)
    assert await store.jobs.price_differences() == []


async def test_a_charge_equal_to_the_reservation_is_no_difference(store: Store) -> None:
    job = await create(store, USER)
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=RESERVED)
    assert await ledger_row(store, job.id) == (RESERVED, None)
    assert await store.jobs.price_differences() == []


async def test_a_refund_gives_back_what_was_charged(store: Store) -> None:
    job = await create(store, USER)
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=60)
    assert await store.jobs.remove_result(job.id, actor_id=1) == 60
    assert await ledger_state(store, job.id) == "refunded"
    quota = await store.ledger.quota(GUILD, USER)
    assert (quota.used_today, quota.bonus) == (0, 0)
    assert await store.admin.top(GUILD, "week") == []


async def test_differences_are_counted_per_combination(store: Store, clock: FakeClock) -> None:
    for user, charged in enumerate((50, 50, 50, 40), start=1):
        job = await create(store, user)
        assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=charged)
        clock.advance(seconds=1)
    eight = await create(store, 9, duration=8)
    assert await store.jobs.finish_done(eight.id, "https://x.mp4", charged=100)

    found = [
        (d.model, d.quality, d.duration, d.variant, d.reserved, d.charged, d.jobs)
        for d in await store.jobs.price_differences()
    ]
    # Most jobs first, then the most recently seen.
    assert found == [
        ("v4.5", "540p", 5, "", 45, 50, 3),
        ("v4.5", "540p", 8, "", 90, 100, 1),
        ("v4.5", "540p", 5, "", 45, 40, 1),
    ]

    # Old differences (most likely corrected since) drop out of the window.
    clock.advance(days=8)
    assert await store.jobs.price_differences(window=timedelta(days=7)) == []


async def test_fast_motion_is_told_apart_from_normal(store: Store) -> None:
    fast = JobParams(
        prompt="a cat", model="v4.5", quality=Quality.P540, duration=5, motion=Motion.FAST
    )
    assert variant_of(fast) == "fast"
    job = await store.jobs.create(NewJob(guild_id=GUILD, channel_id=5, user_id=USER, params=fast))
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=80)
    [difference] = await store.jobs.price_differences()
    assert (difference.variant, difference.reserved, difference.charged) == ("fast", 90, 80)


async def test_audio_and_sound_jobs_are_told_apart_and_priced_by_the_catalogue(
    store: Store,
) -> None:
    base = JobParams(prompt="a cat", model="v4.5", quality=Quality.P540, duration=8)
    audio = base.model_copy(update={"audio": True})
    sound = base.model_copy(update={"prompt": "", "add_sound": True, "seed": None})
    fast_audio = audio.model_copy(update={"motion": Motion.FAST, "duration": 5})
    assert [variant_of(p) for p in (base, audio, fast_audio, sound)] == [
        "",
        "audio",
        "fast audio",
        "sound effect",
    ]
    # The sound effect: 10 per started 5 s, on top of the video or alone (a Sound job).
    assert [store.jobs.price(p) for p in (base, audio, fast_audio, sound)] == [90, 110, 100, 20]
    job = await store.jobs.create(NewJob(guild_id=GUILD, channel_id=5, user_id=USER, params=sound))
    assert job.cost == 20
    assert await store.jobs.finish_done(job.id, "https://x.mp4", charged=30, has_audio=True)
    done = await store.jobs.get(job.id)
    assert done is not None and done.has_audio is True and done.cost == 30
    [difference] = await store.jobs.price_differences()
    assert (difference.variant, difference.reserved, difference.charged) == ("sound effect", 20, 30)
