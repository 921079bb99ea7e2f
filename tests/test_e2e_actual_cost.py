"""Actual cost end to end: the simulator charges other than the catalogue's price and reports
it in the result; the member's ledger commits what PixVerse charged, /quota shows it, /status
tells admins which prices differ, and a restart during delivery does not commit again."""

from __future__ import annotations

import asyncio
import logging

from conftest import status_text
from store_fixtures import ledger_state
from test_e2e_quota import fields, quota, reply_text

from bot.simulator import SimulatorConfig
from bot.store.models import JobState

# v4.5 540p: the catalogue reserves 45 for 5 s and 90 for 8 s; this PixVerse takes 30 and 100.
CHARGES = {"v4.5/540p/5/normal": 30, "v4.5/540p/8/normal": 100}


async def finished(world, **options):
    handle = await world.video(**options)
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.latest_job()
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE, job.error
    return handle, job


async def status_reply(world, user):
    handle = await world.fake.invoke("status", user=user, channel=world.channel)
    response = await handle.response(timeout=5)
    assert response.ephemeral
    return str(response.data)


async def test_the_ledger_commits_what_pixverse_charged_and_status_tells_admins(world, caplog):
    caplog.set_level(logging.INFO, logger="bot.jobs.runner")
    await world.start_bot(simulator=SimulatorConfig(gen_time=0.3, seed=7, price_overrides=CHARGES))

    cheaper, job = await finished(world)  # reserved 45, charged 30
    assert job.cost == 30
    assert "Credits spent: 30" in status_text(cheaper.original)
    assert fields(await quota(world))["Used today"] == "30"

    _, job8 = await finished(world, duration=8)  # reserved 90, charged 100
    assert job8.cost == 100
    response = await quota(world)
    assert fields(response)["Used today"] == "130"
    assert fields(response)["Reserved by running jobs"] == "0"
    assert "**20** credits left" in reply_text(response)

    logged = [r.getMessage() for r in caplog.records if "PixVerse charged" in r.getMessage()]
    assert any(
        f"Job {job.id}: PixVerse charged 30" in m and "45 were reserved" in m for m in logged
    )
    assert any(f"Job {job8.id}: PixVerse charged 100" in m and "540p 8 s" in m for m in logged)

    shown = await status_reply(world, world.admin)
    assert "Prices PixVerse charged differently" in shown
    assert "v4.5 540p 5 s: reserved 45, PixVerse charged 30 (1 job)" in shown
    assert "v4.5 540p 8 s: reserved 90, PixVerse charged 100 (1 job)" in shown
    assert "Correct the catalogue" in shown
    # Members see how busy the bot is, not the operator's price list.
    assert "PixVerse charged" not in await status_reply(world, world.member)


async def test_a_charge_above_what_is_left_is_committed_and_left_shows_zero(world):
    overcharge = {"v4.5/540p/8/normal": 200}
    await world.start_bot(
        simulator=SimulatorConfig(gen_time=0.3, seed=7, price_overrides=overcharge)
    )
    await finished(world, duration=8)  # 90 of 150 reserved; PixVerse takes 200
    response = await quota(world)
    assert fields(response)["Used today"] == "200"
    assert "**0** credits left" in reply_text(response)
    # Nothing more starts today: the member is past their allowance.
    refused = await world.video()
    assert (await refused.response(timeout=5)).ephemeral


async def test_status_shows_no_price_section_when_pixverse_charged_the_catalogue_price(world):
    await world.start_bot()
    await finished(world)
    assert "charged differently" not in await status_reply(world, world.admin)


async def test_a_restart_during_delivery_does_not_commit_the_charge_again(world, pixverse):
    pixverse.config.price_overrides = dict(CHARGES)
    bot = await world.start_bot(pixverse=pixverse)
    committed = asyncio.Event()
    show = bot.reporter.show

    async def crash_before_delivery(update):
        if update.final:
            committed.set()
            await asyncio.Event().wait()  # the process dies here
        return await show(update)

    bot.reporter.show = crash_before_delivery  # type: ignore[method-assign]
    handle = await world.video()
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.latest_job()
    await asyncio.wait_for(committed.wait(), timeout=10)
    stored = await bot.store.jobs.get(job.id)
    assert stored is not None and stored.state is JobState.DONE
    assert stored.delivery_since is not None
    await world.stop_bot()

    await world.start_bot(pixverse=pixverse)
    job = await world.job_final(job.id)
    assert "Done" in status_text(handle.original)
    assert "Credits spent: 30" in status_text(handle.original)
    assert await ledger_state(world.bot.store, job.id) == "committed"
    view = await world.bot.store.ledger.quota(world.guild.id, world.member.id)
    assert (view.used_today, view.reserved) == (30, 0)
    [difference] = await world.bot.store.jobs.price_differences()
    assert (difference.reserved, difference.charged, difference.jobs) == (45, 30, 1)
    assert len(pixverse.generate_requests) == 1
