"""Discord misbehaving while jobs run: the gateway reconnects, resumes or drops the session, the
channel is deleted, the bot loses its Send permission.

None of these may lose a job or charge it twice: every job still ends final exactly once, and
a result that cannot be shown ends its delivery at once (no retry storm, which Discord
punishes) while ``/jobs`` keeps listing it with its link.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import status_text
from fakediscord import permissions
from store_fixtures import ledger_state

import bot.ui.status
from bot.simulator import SimulatorConfig
from bot.store.models import JobState

COST = 45  # v4.5 540p 5 s
# Long enough to do something to Discord while the job generates.
SLOW = SimulatorConfig(gen_time=1.5, seed=7)


@pytest.fixture(autouse=True)
def quick_route_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A route that hangs in discord.py's own retries is left for the next one this soon.
    monkeypatch.setattr(bot.ui.status, "FINAL_TIMEOUT", 1.0)


async def start_job(world: Any, user: Any, prompt: str = "a cat turns its head") -> tuple[Any, Any]:
    handle = await world.video(user, prompt=prompt)
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral
    return handle, await world.latest_job(user)


async def wait_state(world: Any, job_id: int, state: JobState, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while (job := await world.bot.store.jobs.get(job_id)).state is not state:
            await asyncio.sleep(0.02)
    return job


async def assert_charged_once(world: Any, job_id: int, user: Any) -> None:
    assert await ledger_state(world.bot.store, job_id) == "committed"
    quota = await world.bot.store.ledger.quota(world.guild.id, user.id)
    assert (quota.used_today, quota.reserved) == (COST, 0)


def requests_since(world: Any, since: float, *needles: str) -> list[Any]:
    """Requests to Discord after ``since`` whose path names one of ``needles``."""
    return [
        r for r in world.fake.request_log if r.at >= since and any(n in r.path for n in needles)
    ]


# -- the gateway -----------------------------------------------------------------------------


async def _break_gateway(world: Any, fault: str) -> None:
    """Do it to the bot's connection, and wait until the bot is back."""
    fake = world.fake
    resumes, identifies = fake.resume_count, fake.gateway.identifies
    if fault == "reconnect":
        fake.request_reconnect()  # op 7: reconnect and RESUME
    elif fault == "resume":
        await fake.drop_connections(4000)  # the connection dies; the session lives on
    else:
        # op 9, not resumable: the session is gone; the bot must IDENTIFY afresh.
        assert fake.gateway.invalidate_sessions() == 1
    if fault == "invalid-session":
        back = lambda: fake.gateway.identifies > identifies  # noqa: E731
    else:
        back = lambda: fake.resume_count > resumes  # noqa: E731
    await fake.wait_for(
        lambda: back() and fake.gateway.connected_sessions(), 10, what=f"the bot back after {fault}"
    )


@pytest.mark.parametrize("fault", ["reconnect", "resume", "invalid-session"])
async def test_jobs_running_through_a_gateway_fault_each_end_once(world: Any, fault: str) -> None:
    await world.start_bot(simulator=SLOW)
    first, first_job = await start_job(world, world.member, "the first")
    second, second_job = await start_job(world, world.other, "the second")
    await wait_state(world, first_job.id, JobState.GENERATING)

    await _break_gateway(world, fault)
    # Commands still reach the bot on the new connection, and start jobs.
    third, third_job = await start_job(world, world.admin, "after the fault")

    handles = {first_job.id: first, second_job.id: second, third_job.id: third}
    owners = {first_job.id: world.member, second_job.id: world.other, third_job.id: world.admin}
    for job_id, handle in handles.items():
        job = await world.job_final(job_id, timeout=20)
        assert job.state is JobState.DONE, job.error
        await world.until(lambda handle=handle: handle.original.files, timeout=5)
        assert "Done" in status_text(handle.original)
        assert len(handle.original.files) == 1
        await assert_charged_once(world, job_id, owners[job_id])
    public = [m for m in world.fake.messages_in(world.channel) if not m.ephemeral]
    assert sorted(m.id for m in public) == sorted(h.original.id for h in handles.values())
    pixverse = world.bot.simulator
    assert len({r.trace_id for r in pixverse.generate_requests}) == 3
    assert len(pixverse.jobs) == 3


# -- the channel and the bot's permissions -----------------------------------------------------


async def _listed_with_links(world: Any, job: Any) -> None:
    """``/jobs`` (from another channel) lists the job as done, with its status and video
    links."""
    elsewhere = world.fake.add_channel(world.guild, "elsewhere")
    listing = await world.fake.invoke("jobs", user=world.member, channel=elsewhere)
    response = await listing.response(timeout=5)
    assert response.ephemeral
    text = str(response.data)
    assert f"#{job.id}`" in text and "done" in text
    assert job.result_url and job.result_url in text
    assert f"/{job.status_message_id})" in text


async def test_a_channel_deleted_while_a_job_runs_ends_it_done_without_retrying(world: Any) -> None:
    await world.start_bot(simulator=SLOW)
    handle, job = await start_job(world, world.member)
    await wait_state(world, job.id, JobState.GENERATING)
    deleted = time.monotonic()
    world.fake.delete_channel(world.channel)

    job = await world.job_final(job.id, timeout=20)
    assert job.state is JobState.DONE, job.error  # PixVerse made it: the credits are spent
    assert job.delivery_since is None  # given up for good, not retried for 30 minutes
    await assert_charged_once(world, job.id, world.member)
    ended = time.monotonic()
    await asyncio.sleep(1.5)  # longer than the first delivery retry would wait
    # The final edit and the fallback post were tried, then nothing more.
    tried = requests_since(world, deleted, str(world.channel.id), handle.token)
    assert 1 <= len(tried) <= 6, [(r.method, r.status) for r in tried]
    assert requests_since(world, ended, str(world.channel.id), handle.token) == []
    await _listed_with_links(world, job)


async def test_send_permission_removed_while_a_job_runs_still_shows_the_result(
    world: Any,
) -> None:
    # Editing its own message needs no Send permission: the result still lands, through the
    # channel once the interaction token is gone.
    await world.start_bot(simulator=SLOW)
    handle, job = await start_job(world, world.member)
    await wait_state(world, job.id, JobState.GENERATING)
    world.fake.expire_token(handle)
    bot_can = world.fake.bot_permissions(world.channel)
    world.fake.set_bot_permissions(world.channel, bot_can & ~permissions.SEND_MESSAGES)

    job = await world.job_final(job.id, timeout=20)
    assert job.state is JobState.DONE, job.error
    await world.until(lambda: handle.original.files, timeout=5)
    assert "Done" in status_text(handle.original)
    assert handle.original.current.source == "channel"
    await assert_charged_once(world, job.id, world.member)


async def test_send_permission_removed_and_status_message_gone_ends_delivery_at_once(
    world: Any,
) -> None:
    await world.start_bot(simulator=SLOW)
    handle, job = await start_job(world, world.member)
    await wait_state(world, job.id, JobState.GENERATING)
    world.fake.delete_message(world.channel, handle.original)
    bot_can = world.fake.bot_permissions(world.channel)
    world.fake.set_bot_permissions(world.channel, bot_can & ~permissions.SEND_MESSAGES)
    removed = time.monotonic()

    job = await world.job_final(job.id, timeout=20)
    assert job.state is JobState.DONE, job.error
    assert job.delivery_since is None
    await assert_charged_once(world, job.id, world.member)
    refused = [
        r
        for r in requests_since(world, removed, f"/channels/{world.channel.id}/messages")
        if r.method == "POST"
    ]
    assert [r.status for r in refused] == [403]  # one try at a new message, no storm
    ended = time.monotonic()
    await asyncio.sleep(1.5)
    assert requests_since(world, ended, str(world.channel.id), handle.token) == []
    assert not [m for m in world.fake.messages_in(world.channel) if not m.ephemeral]
    await _listed_with_links(world, job)
