"""JobStore: acceptance in one transaction, limits, transitions, finishing, cancel, the queue."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
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
    pick_next,
    with_limits,
)

from bot.pixverse.rules import Quality, RuleViolation
from bot.store import (
    AuditNote,
    CancelResult,
    Job,
    JobInput,
    JobKind,
    JobParams,
    JobSource,
    JobState,
    NewJob,
    Store,
    TooManyJobs,
)
from bot.store import ledger as ledger_sql
from bot.store.models import LAST_FRAME

ALICE, BOB, CAROL = 1, 2, 3


async def count(store: Store, table: str) -> int:
    row = await store.db.fetch_one(f"SELECT COUNT(*) FROM {table}")  # test-only table names
    return int(row[0])


# --- acceptance -----------------------------------------------------------------------------


async def test_create_writes_job_input_and_reservation(store: Store, clock: FakeClock) -> None:
    expires = clock.now + timedelta(minutes=15)
    job = await create(
        store, ALICE, with_input=True, interaction_token="tok", interaction_expires_at=expires
    )
    assert (job.state, job.cost, job.status_channel_id) == (JobState.QUEUED, 45, 5)
    stored = await store.jobs.get(job.id)
    assert stored == job
    assert stored.interaction_expires_at == expires
    assert stored.params.prompt == "a cat" and stored.params.source is JobSource.IMAGE
    data = await store.jobs.get_input(job.id)
    assert data is not None and data.data == b"\x89PNG fake"
    assert await ledger_state(store, job.id) == "reserved"


async def test_cost_follows_the_cost_table_and_its_overrides(tmp_path: Path) -> None:
    store = await Store.open(
        tmp_path / "db.sqlite3", limits=LIMITS, cost_overrides={"v4.5/540p/8/normal": 70}
    )
    try:
        job = await create(store, ALICE, duration=8)
        assert job.cost == 70
        assert (await create(store, ALICE)).cost == 45
    finally:
        await store.close()


async def test_an_impossible_combination_is_refused_before_writing(store: Store) -> None:
    bad = JobParams(prompt="x", model="v4.5", quality=Quality.P1080, duration=8)
    with pytest.raises(RuleViolation):
        await with_limits(store, max_jobs_per_user=2).jobs.create(NewJob(GUILD, 5, ALICE, bad))
    assert await count(store, "jobs") == 0


async def test_a_failure_mid_create_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ledger_sql.insert_reservation

    def failing(conn, **kwargs) -> bool:
        if kwargs["user_id"] == BOB:
            raise RuntimeError("disk on fire")
        return real(conn, **kwargs)

    monkeypatch.setattr(ledger_sql, "insert_reservation", failing)
    results = await asyncio.gather(
        create(store, ALICE, with_input=True),
        create(store, BOB, with_input=True),  # batched with Alice's: only Bob's is undone
        return_exceptions=True,
    )
    assert isinstance(results[0], Job) and isinstance(results[1], RuntimeError)
    users = [row[0] for row in await store.db.fetch_all("SELECT user_id FROM jobs")]
    assert users == [ALICE]
    assert await count(store, "job_inputs") == 1
    assert await count(store, "ledger") == 1


async def test_active_jobs_per_member_are_limited(store: Store) -> None:
    first = await create(store, ALICE, max_jobs=2)
    await create(store, ALICE, max_jobs=2, guild_id=OTHER_GUILD)  # the limit spans servers
    with pytest.raises(TooManyJobs) as refused:
        await create(store, ALICE, max_jobs=2)
    assert (refused.value.active, refused.value.limit) == (2, 2)
    assert "2 jobs queued or running" in str(refused.value)
    await create(store, BOB, max_jobs=2)  # others are not affected
    await store.jobs.finish_done(first.id, "https://x.mp4")
    await create(store, ALICE, max_jobs=2)


async def test_paused_server_refuses_new_jobs(store: Store) -> None:
    from bot.store import ServerPaused

    await store.moderation.pause(GUILD, MOD, "maintenance")
    with pytest.raises(ServerPaused, match="maintenance"):
        await create(store, ALICE)
    await store.moderation.resume(GUILD, MOD)
    await create(store, ALICE)


async def test_reroll_keeps_its_parent_and_the_uploaded_image(store: Store) -> None:
    parent = await create(store, ALICE)
    child = await create(
        store, BOB, kind=JobKind.REROLL, parent_job_id=parent.id, pixverse_img_id=777
    )
    stored = await store.jobs.get(child.id)
    assert (stored.kind, stored.parent_job_id, stored.pixverse_img_id) == ("reroll", parent.id, 777)


# --- transitions ----------------------------------------------------------------------------


async def test_transition_is_compare_and_set(store: Store, clock: FakeClock) -> None:
    job = await create(store, ALICE, with_input=True)
    clock.advance(seconds=5)
    assert await store.jobs.transition(job.id, JobState.QUEUED, JobState.UPLOADING)
    assert not await store.jobs.transition(job.id, JobState.QUEUED, JobState.UPLOADING)
    clock.advance(seconds=5)
    moved = await store.jobs.transition(
        job.id,
        [JobState.UPLOADING],
        JobState.SUBMITTED,
        drop_input=True,
        pixverse_img_id=55,
        trace_id="trace-1",
    )
    assert moved
    stored = await store.jobs.get(job.id)
    assert stored.state is JobState.SUBMITTED
    assert (stored.pixverse_img_id, stored.trace_id) == (55, "trace-1")
    assert stored.started_at == job.created_at + timedelta(seconds=5)
    assert stored.submitted_at == clock.now == stored.updated_at
    assert await store.jobs.get_input(job.id) is None


async def test_transition_cannot_reach_a_final_state_or_set_unknown_fields(store: Store) -> None:
    job = await create(store, ALICE)
    with pytest.raises(ValueError, match="finish_done"):
        await store.jobs.transition(job.id, "queued", "done")
    with pytest.raises(ValueError, match="cost"):
        await store.jobs.transition(job.id, "queued", "uploading", cost=0)
    assert (await store.jobs.get(job.id)).state is JobState.QUEUED


async def test_set_fields_keeps_the_state(store: Store) -> None:
    job = await create(store, ALICE)
    assert await store.jobs.set_fields(job.id, status_message_id=99, attempts=2)
    stored = await store.jobs.get(job.id)
    assert (stored.state, stored.status_message_id, stored.attempts) == ("queued", 99, 2)
    assert not await store.jobs.set_fields(12345, attempts=1)


async def test_finish_done_commits_once(store: Store) -> None:
    job = await create(store, ALICE, with_input=True)
    assert await store.jobs.finish_done(job.id, "https://x/1.mp4", pixverse_video_id=31)
    assert not await store.jobs.finish_done(job.id, "https://x/2.mp4")
    assert not await store.jobs.finish_failed(job.id, "late error")
    stored = await store.jobs.get(job.id)
    assert (stored.state, stored.result_url, stored.pixverse_video_id) == (
        "done",
        "https://x/1.mp4",
        31,
    )
    assert stored.finished_at is not None
    assert await store.jobs.get_input(job.id) is None
    quota = await store.ledger.quota(GUILD, ALICE)
    assert (quota.used_today, quota.reserved) == (45, 0)


async def test_a_final_state_shown_is_marked_to_be_shown_again(store: Store) -> None:
    """``reshow_final``: only a finished job already shown goes back to delivering, with
    its lease lapsed so that any process's next pass delivers it."""
    job = await create(store, ALICE)
    assert await store.jobs.in_state(job.id, JobState.QUEUED)
    assert not await store.jobs.reshow_final(job.id)  # queued: nothing to show again
    await store.queue.claim_next()
    assert not await store.jobs.in_state(job.id, JobState.QUEUED)
    assert await store.jobs.in_state(job.id, JobState.UPLOADING)
    assert not await store.jobs.reshow_final(job.id)  # running: its runner shows it
    await store.jobs.finish_done(job.id, "https://x/1.mp4")
    assert not await store.jobs.reshow_final(job.id)  # its final state is on its way
    assert await store.jobs.delivered(job.id)
    assert await store.jobs.reshow_final(job.id)
    stored = await store.jobs.get(job.id)
    assert stored is not None and stored.state == "done" and stored.delivery_since is not None
    row = await store.db.fetch_one("SELECT lease_until FROM jobs WHERE id = ?", (job.id,))
    assert row is not None and row[0] == 0
    assert [j.id for j in await store.jobs.pending_deliveries()] == [job.id]
    assert not await store.jobs.in_state(10**9, JobState.QUEUED)


async def test_finish_failed_releases_once(store: Store) -> None:
    job = await create(store, ALICE)
    await store.jobs.transition(job.id, "queued", "uploading")
    assert await store.jobs.finish_failed(job.id, "moderation (7)")
    assert not await store.jobs.finish_failed(job.id, "again")
    assert not await store.jobs.finish_done(job.id, "https://x.mp4")
    stored = await store.jobs.get(job.id)
    assert (stored.state, stored.error) == ("failed", "moderation (7)")
    quota = await store.ledger.quota(GUILD, ALICE)
    assert (quota.used_today, quota.reserved, quota.left) == (0, 0, 150)


async def test_mod_cancel_of_a_running_job_releases_and_is_audited(store: Store) -> None:
    job = await create(store, ALICE)
    await store.jobs.transition(job.id, "queued", "generating")
    note = AuditNote(actor_id=MOD, action="mod.cancel", reason="wrong channel")
    assert await store.jobs.finish_failed(
        job.id, "cancelled by a moderator", state="cancelled", audit=note
    )
    [entry] = await store.admin.audit(GUILD)
    assert (entry.actor_id, entry.action, entry.target_id, entry.reason) == (
        MOD,
        "mod.cancel",
        ALICE,
        "wrong channel",
    )
    assert entry.before == {"job_id": job.id, "state": "generating"}
    assert entry.after == {"job_id": job.id, "state": "cancelled", "released": 45}


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_only_while_queued(store: Store) -> None:
    queued = await create(store, ALICE)
    running = await create(store, ALICE)
    await store.jobs.transition(running.id, "queued", "submitted")

    outcome = await store.jobs.cancel(queued.id, by_user_id=ALICE)
    assert outcome.ok and (outcome.state, outcome.refunded) == (JobState.CANCELLED, 45)
    again = await store.jobs.cancel(queued.id, by_user_id=ALICE)
    assert (again.result, again.state) == (CancelResult.NOT_QUEUED, JobState.CANCELLED)
    late = await store.jobs.cancel(running.id, by_user_id=ALICE)
    assert (late.result, late.state) == (CancelResult.NOT_QUEUED, JobState.SUBMITTED)
    quota = await store.ledger.quota(GUILD, ALICE)
    assert quota.reserved == 45  # only the submitted job still holds credits


async def test_cancel_someone_elses_or_a_missing_job(store: Store) -> None:
    job = await create(store, ALICE)
    assert (await store.jobs.cancel(job.id, by_user_id=BOB)).result is CancelResult.NOT_OWNER
    assert (await store.jobs.cancel(9999)).result is CancelResult.NOT_FOUND
    assert (await store.jobs.get(job.id)).state is JobState.QUEUED


# --- the fair queue -------------------------------------------------------------------------


async def test_one_members_ten_jobs_never_hold_back_anothers_one(
    store: Store, clock: FakeClock
) -> None:
    alice_jobs = []
    for _ in range(10):
        alice_jobs.append(await create(store, ALICE, daily=1000))
        clock.advance(seconds=1)
    bob_job = await create(store, BOB)
    clock.advance(seconds=1)

    first = await store.queue.claim_next()
    second = await store.queue.claim_next()
    assert first.id == alice_jobs[0].id
    assert second.id == bob_job.id
    assert first.state is JobState.UPLOADING and first.started_at == clock.now
    assert (await store.queue.claim_next()).id == alice_jobs[1].id


async def test_a_held_job_keeps_its_place_and_starts_when_released_or_its_hold_ends(
    store: Store, clock: FakeClock
) -> None:
    held = await create(store, ALICE, hold_seconds=60)
    later = await create(store, BOB, hold_seconds=60)
    assert held.next_attempt_at == clock.now + timedelta(seconds=60)
    assert await store.queue.queue_position(later.id) == 2

    assert await store.queue.claim_next() is None
    await store.jobs.set_fields(held.id, status_message_id=9, next_attempt_at=None)
    assert (await store.queue.claim_next()).id == held.id
    assert await store.queue.claim_next() is None
    clock.advance(seconds=60)
    assert (await store.queue.claim_next()).id == later.id


async def test_the_member_who_started_least_recently_goes_first(
    store: Store, clock: FakeClock
) -> None:
    old = await create(store, BOB)
    await store.queue.claim_next()  # Bob started an hour ago
    await store.jobs.finish_done(old.id, "https://x.mp4")
    clock.advance(hours=1)
    recent = await create(store, ALICE)
    await store.queue.claim_next()  # Alice started just now
    await store.jobs.finish_done(recent.id, "https://x.mp4")
    clock.advance(seconds=1)
    alice_next = await create(store, ALICE)
    bob_next = await create(store, BOB)  # queued after Alice's, but Bob's turn comes first
    carol = await create(store, CAROL)  # never started: before both
    assert (await pick_next(store)).id == carol.id
    batch = await store.queue.next_fair_batch(10)
    assert [job.id for job in batch] == [carol.id, bob_next.id, alice_next.id]
    assert await store.queue.queue_position(alice_next.id) == 3
    assert await store.queue.queue_position(recent.id) is None


async def test_fair_batch_takes_turns(store: Store, clock: FakeClock) -> None:
    ids: dict[int, list[int]] = {ALICE: [], BOB: [], CAROL: []}
    for user, n in ((ALICE, 3), (BOB, 2), (CAROL, 1)):
        for _ in range(n):
            ids[user].append((await create(store, user)).id)
            clock.advance(seconds=1)
    order = [job.user_id for job in await store.queue.next_fair_batch(10)]
    assert order == [ALICE, BOB, CAROL, ALICE, BOB, ALICE]
    claimed = []
    while (job := await store.queue.claim_next()) is not None:
        claimed.append(job.user_id)
        clock.advance(seconds=1)
    assert claimed == order


async def test_queue_positions_match_the_order_jobs_start_in(
    store: Store, clock: FakeClock
) -> None:
    # Random members, some with earlier starts, several jobs each, interleaved: the place
    # each job is told (counted in SQL), the predicted batch (in Python) and the order the
    # dispatcher really claims them must be one and the same.
    rng = random.Random(7)
    users = list(range(10, 22))
    for user in rng.sample(users, 5):
        earlier = await create(store, user, daily=10_000)
        await store.queue.claim_next()
        await store.jobs.finish_done(earlier.id, "https://x.mp4")
        clock.advance(seconds=rng.randint(1, 30))
    queued: list[int] = []
    for _ in range(30):
        job = await create(store, rng.choice(users), daily=10_000, max_jobs=50)
        queued.append(job.id)
        clock.advance(seconds=rng.choice([0, 1, 2]))
    predicted = [job.id for job in await store.queue.next_fair_batch(100)]
    assert sorted(predicted) == sorted(queued)
    positions = {job_id: await store.queue.queue_position(job_id) for job_id in queued}
    assert [job_id for job_id, _ in sorted(positions.items(), key=lambda kv: kv[1])] == predicted
    assert sorted(positions.values()) == list(range(1, len(queued) + 1))
    claimed = []
    while (job := await store.queue.claim_next()) is not None:
        claimed.append(job.id)
        clock.advance(seconds=1)
    assert claimed == predicted


async def test_claim_many_claims_as_one_by_one_claims_would(store: Store, clock: FakeClock) -> None:
    # The dispatcher claims every free slot in one transaction: the jobs, and their order,
    # are those of claims one at a time, members taking turns within the batch too.
    rng = random.Random(11)
    users = list(range(30, 38))
    for _ in range(24):
        await create(store, rng.choice(users), daily=10_000, max_jobs=50)
        clock.advance(seconds=rng.choice([0, 1]))
    predicted = [job.id for job in await store.queue.next_fair_batch(100)]
    first = await store.queue.claim_many(10)
    clock.advance(seconds=1)
    rest = await store.queue.claim_many(50)
    assert len(first) == 10 and len(rest) == 14  # fewer than asked: the queue ran dry
    assert [job.id for job in first + rest] == predicted
    assert all(job.state is JobState.UPLOADING for job in first + rest)
    assert await store.queue.claim_many(5) == []


async def test_waiting_retries_and_excluded_members_are_skipped(
    store: Store, clock: FakeClock
) -> None:
    retry = await create(store, ALICE)
    await store.jobs.set_fields(retry.id, next_attempt_at=clock.now + timedelta(seconds=30))
    bob = await create(store, BOB)
    assert (await pick_next(store)).id == bob.id
    assert await pick_next(store, exclude_users=[BOB]) is None
    clock.advance(seconds=31)
    assert (await pick_next(store)).id == retry.id


async def test_claim_next_never_hands_out_a_job_twice(store: Store) -> None:
    for user in range(20):
        await create(store, 100 + user)
    claimed = await asyncio.gather(*(store.queue.claim_next() for _ in range(30)))
    ids = [job.id for job in claimed if job is not None]
    assert len(ids) == len(set(ids)) == 20


# --- listings -------------------------------------------------------------------------------


async def test_list_for_user_is_newest_first_and_paginated(store: Store) -> None:
    made = [await create(store, ALICE, prompt=f"p{i}", daily=1000) for i in range(5)]
    await create(store, BOB)
    await create(store, ALICE, guild_id=OTHER_GUILD)
    page1 = await store.jobs.list_for_user(GUILD, ALICE, limit=2)
    page2 = await store.jobs.list_for_user(GUILD, ALICE, limit=2, offset=2)
    assert [j.id for j in page1 + page2] == [made[4].id, made[3].id, made[2].id, made[1].id]
    assert await store.jobs.count_for_user(GUILD, ALICE) == 5


async def test_finished_for_user_matches_id_or_prompt(store: Store) -> None:
    jobs = [
        await create(store, ALICE, prompt=prompt, daily=1000)
        for prompt in ("sunset over sea", "100% cat", "dog", "queued one")
    ]
    for job in jobs[:3]:
        await store.jobs.finish_done(job.id, "https://x.mp4")
    await store.jobs.remove_result(jobs[2].id, actor_id=MOD)
    found = await store.jobs.finished_for_user(GUILD, ALICE)
    assert [j.id for j in found] == [jobs[1].id, jobs[0].id]
    assert [j.id for j in await store.jobs.finished_for_user(GUILD, ALICE, "SEA")] == [jobs[0].id]
    assert [j.id for j in await store.jobs.finished_for_user(GUILD, ALICE, "0%")] == [jobs[1].id]
    by_id = await store.jobs.finished_for_user(GUILD, ALICE, str(jobs[1].id))
    assert jobs[1].id in [j.id for j in by_id]
    assert await store.jobs.finished_for_user(GUILD, BOB) == []


async def test_unfinished_lists_every_non_final_job_oldest_first(store: Store) -> None:
    a = await create(store, ALICE)
    b = await create(store, BOB)
    c = await create(store, CAROL)
    await store.jobs.transition(b.id, "queued", "generating")
    await store.jobs.finish_done(a.id, "https://x.mp4")
    assert [job.id for job in await store.jobs.unfinished()] == [b.id, c.id]
    assert await store.jobs.unfinished(guild_id=OTHER_GUILD) == []


async def test_stats_count_the_queue_and_average_generation_time(
    store: Store, clock: FakeClock
) -> None:
    for seconds in (40, 60):
        job = await create(store, ALICE)
        await store.jobs.transition(job.id, "queued", "submitted")
        clock.advance(seconds=seconds)
        await store.jobs.finish_done(job.id, "https://x.mp4")
    await create(store, BOB)
    running = await create(store, CAROL)
    await store.jobs.transition(running.id, "queued", "generating")
    stats = await store.jobs.stats()
    assert (stats.queued, stats.running) == (1, 1)
    assert stats.avg_generation_seconds == {("v4.5", "540p", 5): pytest.approx(50)}
    assert stats.samples == {("v4.5", "540p", 5): 2}


# --- moderation -----------------------------------------------------------------------------


async def test_removing_a_result_refunds_it_once_and_is_audited(store: Store) -> None:
    job = await create(store, ALICE)
    assert await store.jobs.remove_result(job.id, actor_id=MOD) is None  # not finished yet
    await store.jobs.finish_done(job.id, "https://x.mp4")
    assert await store.jobs.remove_result(job.id, actor_id=MOD, reason="rules") == 45
    assert await store.jobs.remove_result(job.id, actor_id=MOD) is None
    stored = await store.jobs.get(job.id)
    assert stored.removed_by == MOD and stored.removed_at is not None
    quota = await store.ledger.quota(GUILD, ALICE)
    assert (quota.used_today, quota.left) == (0, 150)
    [entry] = await store.admin.audit(GUILD, ALICE)
    assert (entry.action, entry.reason, entry.after["refunded"]) == ("job.remove", "rules", 45)


async def test_job_timestamps_are_aware_utc(store: Store) -> None:
    job = await create(store, ALICE)
    stored = await store.jobs.get(job.id)
    assert stored.created_at.tzinfo is UTC
    assert stored.created_at == datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


# --- a transition's two pictures ------------------------------------------------------------


async def test_a_transitions_last_frame_is_kept_until_pixverse_has_both(store: Store) -> None:
    last = JobInput("night.png", "image/png", b"night frame")
    job = await create(store, ALICE, with_input=True, last_input=last)
    assert await store.jobs.get_input(job.id, LAST_FRAME) == last
    first = await store.jobs.get_input(job.id)
    assert first is not None and first.filename == "cat.png"

    assert await store.jobs.transition(job.id, JobState.QUEUED, JobState.UPLOADING)
    assert await store.jobs.transition(
        job.id,
        JobState.UPLOADING,
        JobState.SUBMITTED,
        drop_input=True,
        trace_id="trace-frames",
        pixverse_img_id=11,
        pixverse_last_img_id=12,
    )
    assert await store.jobs.get_input(job.id) is None
    assert await store.jobs.get_input(job.id, LAST_FRAME) is None
    stored = await store.jobs.get(job.id)
    assert stored is not None
    assert (stored.pixverse_img_id, stored.pixverse_last_img_id) == (11, 12)


async def test_a_transition_that_ends_early_leaves_no_picture_behind(store: Store) -> None:
    last = JobInput("night.png", "image/png", b"night frame")
    cancelled = await create(store, ALICE, with_input=True, last_input=last)
    failed = await create(store, BOB, with_input=True, last_input=last)
    assert await count(store, "job_extra_inputs") == 2
    assert (await store.jobs.cancel(cancelled.id, by_user_id=ALICE)).ok
    assert await store.jobs.finish_failed(failed.id, "PixVerse could not generate this video.")
    assert await count(store, "job_extra_inputs") == 0
    assert await count(store, "job_inputs") == 0
