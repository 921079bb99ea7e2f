"""The Discord budget for status messages, as pure logic on a fake clock."""

from __future__ import annotations

import asyncio

from bot.ui.pacing import DiscordPacer, PacingLimits, Priority

CHANNEL = 7


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_leaves_room_in_the_channel_bucket_and_waits_for_its_share():
    clock = Clock()
    pacer = DiscordPacer(PacingLimits(channel_requests=5, progress_per_channel=3), clock=clock)
    for _ in range(3):
        assert pacer.progress_wait(CHANNEL, channel_route=True) == 0
        pacer.record_progress(CHANNEL, channel_route=True)
    assert pacer.progress_wait(CHANNEL, channel_route=True) == 5.0  # its share is used up
    clock.now += 5.0
    assert pacer.progress_wait(CHANNEL, channel_route=True) == 0


async def test_finals_go_ahead_of_progress_and_results_ahead_of_failures():
    pacer = DiscordPacer(PacingLimits(channel_requests=1, channel_window=0.3))
    await pacer.final_turn(CHANNEL, channel_route=True)  # the bucket is now full
    order: list[Priority] = []

    async def final(priority: Priority) -> None:
        await pacer.final_turn(CHANNEL, channel_route=True, priority=priority)
        order.append(priority)

    failure = asyncio.create_task(final(Priority.FAILURE))
    await asyncio.sleep(0)
    result = asyncio.create_task(final(Priority.RESULT))
    await asyncio.sleep(0)
    assert pacer.progress_wait(CHANNEL, channel_route=False) > 0  # finals are waiting
    async with asyncio.timeout(5):
        await asyncio.gather(failure, result)
    assert order == [Priority.RESULT, Priority.FAILURE]
