"""The poll schedule and the request budget, as pure logic."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bot.jobs.schedule import Estimator, Lane, PollSchedule, RequestBudget, Window

KEY = ("v4.5", "540p", 5)


def test_no_poll_before_the_earliest_likely_finish_then_dense_then_sparse():
    schedule = PollSchedule(first_delay=5, min_delay=1, steady_delay=2, late_delay=15)
    window = Window(earliest=30, median=40, latest=50)
    assert schedule.next_delay(0, window, webhooks=False) == 30
    assert schedule.next_delay(31, window, webhooks=False) == 2
    assert schedule.next_delay(90, window, webhooks=False) == 2
    assert schedule.next_delay(101, window, webhooks=False) == 15


def test_with_webhooks_polls_only_as_a_fallback_past_the_window():
    schedule = PollSchedule(webhook_grace=20)
    window = Window(earliest=30, median=40, latest=50)
    assert schedule.next_delay(0, window, webhooks=True) == 70
    assert schedule.next_delay(75, window, webhooks=True) == schedule.late_delay


def test_estimator_learns_a_window_from_samples():
    estimator = Estimator()
    prior = estimator.window(KEY)
    assert prior.earliest < prior.median < prior.latest
    for seconds in (38, 40, 42, 44, 46, 41):
        estimator.record(KEY, seconds)
    learnt = estimator.window(KEY)
    assert 34 <= learnt.earliest <= 38 and 46 <= learnt.latest <= 51
    assert learnt.median in (41, 42)
    # Inside the window a job is far likelier done than before it.
    assert estimator.chance_done(KEY, 40, 44) > estimator.chance_done(KEY, 10, 14) == 0.0


async def test_budget_serves_the_urgent_lane_first_and_alternates_polls_and_starts():
    budget = RequestBudget(rate=50, burst=1)
    await budget.acquire()  # the bucket is now empty
    order: list[Lane] = []

    async def take(lane: Lane) -> None:
        await budget.acquire(lane)
        order.append(lane)

    tasks = [asyncio.create_task(take(lane)) for lane in (Lane.START, Lane.START, Lane.POLL)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take(Lane.URGENT)))
    async with asyncio.timeout(5):
        await asyncio.gather(*tasks)
    assert order[0] is Lane.URGENT
    assert order[1:] == [Lane.POLL, Lane.START, Lane.START]
    budget.close()


@pytest.mark.parametrize("rate", [20.0, 100.0])
async def test_budget_holds_its_rate(rate):
    budget = RequestBudget(rate=rate, burst=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):
        await asyncio.gather(*(budget.acquire(Lane.POLL) for _ in range(11)))
    assert loop.time() - started >= 10 / rate * 0.9
    budget.close()


async def test_budget_lets_waiting_requests_through_a_quantum_at_a_time():
    # 100/s with a 50 ms quantum: waiting requests go out five at once (one wake-up of
    # the process for five), every 50 ms, so the rate still holds.
    budget = RequestBudget(rate=100, burst=10, quantum=0.05)
    for _ in range(10):
        await budget.acquire(Lane.POLL)  # the bucket is now empty
    loop = asyncio.get_running_loop()
    started = loop.time()
    served: list[float] = []

    async def take() -> None:
        await budget.acquire(Lane.POLL)
        served.append(loop.time())

    async with asyncio.timeout(5):
        await asyncio.gather(*(take() for _ in range(20)))
    assert served[-1] - started >= 20 / 100 * 0.9
    groups = 1 + sum(1 for a, b in itertools.pairwise(served) if b - a > 0.005)
    assert groups <= 5  # four or five groups, not twenty
    budget.close()


def test_an_unseen_combination_borrows_the_accounts_learnt_speed():
    estimator = Estimator()
    published = estimator.estimate(("v4.5", "720p", 8))
    for seconds in (9, 10, 11):  # this account is 4.5x faster than published at 540p 5 s
        estimator.record(KEY, seconds)
    assert estimator.estimate(("v4.5", "720p", 8)) == pytest.approx(published / 4.5)
