"""/status: queue depth, running jobs, typical time and PixVerse's health, ephemerally."""

from __future__ import annotations


async def test_status_is_ephemeral_and_reports_pixverse_answering(world):
    await world.start_bot()
    handle = await world.fake.invoke("status", user=world.member, channel=world.channel)
    response = await handle.response(timeout=5)
    assert response.ephemeral
    text = str(response.data)
    assert "Waiting in the queue" in text and "answering" in text
    assert "no finished jobs yet" in text


async def test_status_shows_typical_time_after_a_job(world):
    await world.start_bot()
    await (await world.video()).response(timeout=5)
    job = await world.latest_job()
    await world.job_final(job.id)
    handle = await world.fake.invoke("status", user=world.member, channel=world.channel)
    response = await handle.response(timeout=5)
    assert "no finished jobs yet" not in str(response.data)
    assert "Typical generation time" in str(response.data)


async def test_status_says_when_pixverse_does_not_answer(world):
    bot = await world.start_bot()
    bot.simulator.inject_fault("balance", "http_500", count=10)
    handle = await world.fake.invoke("status", user=world.member, channel=world.channel)
    response = await handle.response(timeout=5)
    assert "not answering" in str(response.data)
