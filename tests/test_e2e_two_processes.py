"""Two bots sharing one PostgreSQL database, each running one gateway shard, against the fake
Discord and one simulator: a job accepted by one runs in the other, its status message and
buttons work whichever process touches them, and a moderator's cancel in one stops the job the
other runs. (The SIGKILL failover of real processes is tests/test_failover.py.)"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import aiohttp
import pytest
from conftest import FAST_RUNNER, png_bytes, status_text
from fakediscord import permissions
from test_webhook import SECRET, free_port, signed

from bot.jobs.schedule import PollSchedule
from bot.simulator import Simulator
from bot.store import JobState

# Bot B takes no job itself (a bot-wide limit of 0 slots for its dispatcher), so every job
# runs in bot A whichever process accepted it.
RUNS_NOTHING = dataclasses.replace(FAST_RUNNER, max_active=0)


@dataclasses.dataclass
class Place:
    guild: Any
    channel: Any
    member: Any
    moderator: Any


def place_on(fake: Any, shard_id: int) -> Place:
    guild = fake.add_guild(f"Shard {shard_id} Lounge", shard=(shard_id, 2))
    channel = fake.add_channel(guild, "generate")
    member = fake.add_user(f"member-{shard_id}")
    fake.add_member(guild, member)
    role = fake.add_role(guild, "Moderator", permissions=permissions.MANAGE_GUILD)
    moderator = fake.add_user(f"mod-{shard_id}")
    fake.add_member(guild, moderator, roles=[role])
    return Place(guild, channel, member, moderator)


async def two_bots(
    world: Any,
    pixverse: Simulator,
    pg_url: str,
    *,
    runner_a: Any = FAST_RUNNER,
    a_settings: dict[str, Any] | None = None,
    b_settings: dict[str, Any] | None = None,
    **shared: Any,
) -> tuple[Any, Any]:
    """Bot A on shard 0 (runs every job) and bot B on shard 1 (runs none), on one database;
    ``shared`` settings go to both, ``a_settings``/``b_settings`` to one."""
    common = {
        "shard_count": 2,
        "dev_guild_id": None,
        "identify_wait": 0,
        "database_url": pg_url,
        "job_lease_seconds": 3,
        "pixverse": pixverse,
        **shared,
    }
    a = await world.start_bot(shard_ids=[0], runner=runner_a, **common, **(a_settings or {}))
    b = await world.start_bot(shard_ids=[1], runner=RUNS_NOTHING, **common, **(b_settings or {}))
    return a, b


async def final(bot: Any, job_id: int, timeout: float = 15.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            job = await bot.store.jobs.get(job_id)
            if job is not None and job.is_final and job.delivery_since is None:
                return job
            await asyncio.sleep(0.05)


async def test_a_job_accepted_by_one_process_runs_in_the_other_and_its_buttons_work(
    world: Any, pixverse: Simulator, pg_url: str
) -> None:
    place = place_on(world.fake, 1)
    a, b = await two_bots(world, pixverse, pg_url)

    handle = await world.fake.invoke(
        "video",
        user=place.member,
        channel=place.channel,
        options={"prompt": "a cat on shard 1"},
        attachments={"image": ("cat.png", png_bytes(), "image/png")},
    )
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral
    [job] = await b.store.jobs.list_for_user(place.guild.id, place.member.id, limit=5, offset=0)
    done = await final(b, job.id)
    assert done.state is JobState.DONE
    owner = await a.store.db.fetch_one("SELECT owner FROM jobs WHERE id = ?", (job.id,))
    assert owner is not None and owner[0] == a.store.leases.owner  # A ran it
    status = handle.original
    await world.until(lambda: status.files, timeout=5)
    assert "Done" in status_text(status)

    # The Re-roll button on that message reaches B (the guild's shard); A runs the new job.
    click = await world.fake.click(status, f"pixbot:reroll:{job.id}", user=place.member)
    assert (await click.response(timeout=5)).accepted
    jobs = await b.store.jobs.list_for_user(place.guild.id, place.member.id, limit=5, offset=0)
    reroll = next(j for j in jobs if j.id != job.id)
    assert (await final(b, reroll.id)).state is JobState.DONE
    assert len(pixverse.generate_requests) == 2  # each generated once
    quota = await b.store.ledger.quota(place.guild.id, place.member.id)
    assert quota.used_today == 90


async def test_a_moderators_cancel_in_one_process_stops_the_job_the_other_runs(
    world: Any, pixverse: Simulator, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.jobs.runner")
    place = place_on(world.fake, 1)
    _, b = await two_bots(world, pixverse, pg_url)
    pixverse.config.gen_time = 6.0

    handle = await world.fake.invoke(
        "video",
        user=place.member,
        channel=place.channel,
        options={"prompt": "a long cat"},
        attachments={"image": ("cat.png", png_bytes(), "image/png")},
    )
    await handle.response(timeout=5)
    [job] = await b.store.jobs.list_for_user(place.guild.id, place.member.id, limit=5, offset=0)
    await world.until(lambda: "Generating" in status_text(handle.original), timeout=10)

    cancel = await world.fake.invoke(
        "mod cancel",
        user=place.moderator,
        channel=place.channel,
        options={"job": job.id, "reason": "not here"},
    )
    assert (await cancel.response(timeout=5)).ephemeral
    ended = await final(b, job.id)
    assert ended.state is JobState.CANCELLED
    await world.until(lambda: "ancel" in status_text(handle.original), timeout=10)
    # A hears of it at its next renewal (a third of the 3 s lease) and lets the job go.
    await world.until(
        lambda: any("letting go" in r.getMessage() for r in caplog.records), timeout=10
    )
    await asyncio.sleep(pixverse.config.gen_time)  # PixVerse finishes it meanwhile
    assert "Done" not in status_text(handle.original)
    assert (await b.store.jobs.get(job.id)).state is JobState.CANCELLED
    quota = await b.store.ledger.quota(place.guild.id, place.member.id)
    assert quota.used_today == 0 and quota.reserved == 0


async def test_a_webhook_that_lands_on_the_other_process_finishes_the_job_at_once(
    world: Any, pixverse: Simulator, pg_url: str
) -> None:
    """PixVerse calls whichever process its webhook address reaches: B passes the call on
    (PostgreSQL NOTIFY) to A, which runs the job and polls it only every minute."""
    place = place_on(world.fake, 1)
    slow_polls = dataclasses.replace(
        FAST_RUNNER,
        schedule=PollSchedule(first_delay=60, min_delay=60, steady_delay=60, late_delay=60),
        default_estimate=300,
        webhooks=True,
    )
    port_b = free_port()
    a, b = await two_bots(
        world,
        pixverse,
        pg_url,
        runner_a=slow_polls,
        a_settings={"webhook_port": free_port()},
        b_settings={"webhook_port": port_b},
        pixverse_webhook_secret=SECRET,
        webhook_host="127.0.0.1",
    )
    pixverse.config.gen_time = 300

    handle = await world.fake.invoke(
        "video",
        user=place.member,
        channel=place.channel,
        options={"prompt": "a cat called by webhook"},
        attachments={"image": ("cat.png", png_bytes(), "image/png")},
    )
    await handle.response(timeout=5)
    [job] = await b.store.jobs.list_for_user(place.guild.id, place.member.id, limit=5, offset=0)
    async with asyncio.timeout(10):
        while (job := await a.store.jobs.get(job.id)).pixverse_video_id is None:
            await asyncio.sleep(0.05)
    pixverse.finish_now(job.pixverse_video_id)
    data, headers = signed({"id": job.pixverse_video_id, "status": 1})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port_b}/", data=data, headers=headers) as r:
            assert r.status == 200
    done = await final(a, job.id, timeout=10)  # long before A's next poll, a minute away
    assert done.state is JobState.DONE
