"""/video end to end: the real discord.py client, the fake Discord, the embedded simulator."""

from __future__ import annotations

from conftest import status_text


async def test_video_happy_path_ends_with_the_video_attached(world):
    bot = await world.start_bot()
    handle = await world.video()
    response = await handle.response(timeout=5)
    assert not response.ephemeral
    assert response.delay < 3
    job = await world.latest_job()
    await world.job_final(job.id)
    message = handle.original
    await world.until(lambda: message.files)
    text = status_text(message)
    assert f"#{job.id}" in text and "Done" in text and "simulated" in text
    [name] = list(message.files)
    assert message.files[name][4:8] == b"ftyp"
    assert {f"pixbot:reroll:{job.id}", f"pixbot:extend:{job.id}"} <= set(message.custom_ids())
    assert len(bot.simulator.generate_requests) == 1
