"""/video effect end to end: with PIXVERSE_EFFECTS unset the autocomplete offers PixVerse's
effect list (read from the simulator, cached, one listing at a time); the chosen effect's
template id reaches PixVerse; an unknown one is refused; an effect PixVerse refuses at
720p/1080p (500071) is explained and refunded; with PIXVERSE_EFFECTS set only those."""

from __future__ import annotations

import asyncio
import time

from conftest import status_text
from test_e2e_quota import reply_text

from bot.jobs.effects import EffectsConfig
from bot.simulator import SimulatorConfig
from bot.simulator.config import NO_HD_TEMPLATE_ID
from bot.store.models import JobState

KISS = 315446315336768
PIXVERSE_LIST = {"pixverse_effects": {}}  # PIXVERSE_EFFECTS unset


def listings(sim) -> list:
    return [r for r in sim.requests if r.route == "effect_templates"]


async def offered(world, text: str = "", user=None) -> list[dict]:
    return await world.fake.autocomplete(
        "video",
        focused="effect",
        user=user or world.member,
        channel=world.channel,
        options={"effect": text},
    )


async def listed_once(world, sim) -> None:
    """The list the bot reads at start is in (so later requests can be counted)."""
    await world.until(lambda: len(listings(sim)) == 1)
    async with asyncio.timeout(5):
        while not (await world.bot.effects.current(wait=1)).loaded:
            await asyncio.sleep(0.02)


async def test_autocomplete_offers_pixverse_effects_and_reads_the_list_once(world):
    bot = await world.start_bot(**PIXVERSE_LIST)
    await listed_once(world, bot.simulator)
    choices = await offered(world)
    assert {c["name"]: c["value"] for c in choices} == {
        "Effect example": "302325299692608",
        "Kiss kiss": str(KISS),
        "Muscle Surge": "308621408717184",
        "Retro Flicker": str(NO_HD_TEMPLATE_ID),
    }
    assert [c["name"] for c in await offered(world, "kis")] == ["Kiss kiss"]
    assert [c["name"] for c in await offered(world, "SURGE")] == ["Muscle Surge"]
    for _ in range(10):
        await offered(world, "e")
    assert len(listings(bot.simulator)) == 1
    [request] = listings(bot.simulator)
    assert "type=1" in request.path and "page=1" in request.path and "pageSize=100" in request.path


async def test_the_chosen_effect_is_sent_as_its_template_id(world):
    bot = await world.start_bot(**PIXVERSE_LIST)
    await listed_once(world, bot.simulator)
    [choice] = await offered(world, "muscle")
    handle = await world.video(effect=choice["value"])  # what Discord sends for the pick
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.job_final((await world.latest_job()).id)
    assert job.state is JobState.DONE, job.error
    assert (job.params.effect, job.params.template_id) == ("Muscle Surge", 308621408717184)
    [generate] = bot.simulator.generate_requests
    assert generate.json["template_id"] == 308621408717184
    # A name typed in full works as well.
    handle = await world.video(effect="kiss kiss")
    assert not (await handle.response(timeout=5)).ephemeral
    assert (await world.latest_job()).params.template_id == KISS


async def test_an_unknown_effect_is_refused_with_how_to_find_one(world):
    bot = await world.start_bot(**PIXVERSE_LIST)
    await listed_once(world, bot.simulator)
    handle = await world.video(effect="Dance party")
    response = await handle.response(timeout=5)
    assert response.ephemeral
    text = reply_text(response)
    assert "no PixVerse effect 'Dance party'" in text
    assert "start typing in the `effect` option" in text
    assert await bot.store.jobs.list_for_user(world.guild.id, world.member.id) == []
    assert bot.simulator.generate_requests == []


async def test_the_list_is_read_again_after_its_ttl(world):
    bot = await world.start_bot(effects=EffectsConfig(ttl=1.0), **PIXVERSE_LIST)
    await listed_once(world, bot.simulator)
    await offered(world)
    await offered(world)
    assert len(listings(bot.simulator)) == 1
    bot.simulator.config.template_names = {
        **bot.simulator.config.template_names,
        KISS: "Kiss kiss 2",
    }
    await asyncio.sleep(1.1)
    await offered(world)  # the old list at once; one refresh behind it
    await world.until(lambda: len(listings(bot.simulator)) == 2)

    async def renamed() -> bool:
        return "Kiss kiss 2" in [c["name"] for c in await offered(world, "kiss")]

    async with asyncio.timeout(5):
        while not await renamed():
            await asyncio.sleep(0.05)
    assert len(listings(bot.simulator)) == 2


async def test_concurrent_autocompletes_share_one_slow_listing_and_answer_in_time(world, pixverse):
    pixverse.inject_fault("effect_templates", "hang", seconds=1.0)  # the listing at start
    await world.start_bot(pixverse=pixverse, **PIXVERSE_LIST)
    started = time.monotonic()
    answers = await asyncio.gather(*(offered(world, user=world.other) for _ in range(6)))
    assert time.monotonic() - started < 3  # Discord's window for an autocomplete
    assert len(listings(pixverse)) == 1
    # Each waited (within its bound) for the one listing and offers its effects.
    assert [len(a) for a in answers] == [4] * 6
    assert len(await offered(world)) == 4
    assert len(listings(pixverse)) == 1


async def test_autocomplete_never_waits_past_the_bound_for_a_hung_listing(world, pixverse):
    pixverse.inject_fault("effect_templates", "hang", seconds=5.0)
    await world.start_bot(pixverse=pixverse, effects=EffectsConfig(wait=0.5), **PIXVERSE_LIST)
    started = time.monotonic()
    assert await offered(world) == []
    assert time.monotonic() - started < 2
    # The command refuses the effect, saying why, rather than wait for PixVerse.
    handle = await world.video(effect="Kiss kiss")
    response = await handle.response(timeout=5)
    assert response.ephemeral
    assert "could not be read just now" in reply_text(response)
    assert len(listings(pixverse)) == 1


async def test_a_failed_listing_is_retried_later_and_keeps_the_list_it_had(world, pixverse):
    # The first listing fails (a refusal is not retried by the client); nothing to offer.
    pixverse.inject_fault("effect_templates", "err_code", err_code=500020)
    await world.start_bot(
        pixverse=pixverse, effects=EffectsConfig(ttl=0.3, retry_after=1.0), **PIXVERSE_LIST
    )
    await world.until(lambda: len(listings(pixverse)) == 1)
    await asyncio.sleep(0.05)
    assert await offered(world) == []
    assert len(listings(pixverse)) == 1  # not retried before retry_after
    # After retry_after the next autocomplete reads it again.
    await asyncio.sleep(1.05)
    async with asyncio.timeout(5):
        while len(await offered(world)) != 4:
            await asyncio.sleep(0.05)
    count = len(listings(pixverse))
    assert count == 2
    # Once known, a failing refresh keeps what was there.
    pixverse.inject_fault("effect_templates", "err_code", err_code=500020, count=50)
    await asyncio.sleep(0.35)
    for _ in range(3):
        assert len(await offered(world)) == 4
        await asyncio.sleep(0.05)
    assert len(listings(pixverse)) == count + 1


async def test_an_effect_without_hd_is_explained_and_refunded(world):
    bot = await world.start_bot(**PIXVERSE_LIST)
    await listed_once(world, bot.simulator)
    handle = await world.video(effect="Retro Flicker", quality="720p")
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.job_final((await world.latest_job()).id)
    assert job.state is JobState.FAILED
    message = handle.original
    await world.until(lambda: "Failed" in status_text(message))
    assert "no 720p or 1080p version" in status_text(message)
    assert "540p or lower" in status_text(message)
    quota = await bot.store.ledger.quota(world.guild.id, world.member.id)
    assert (quota.used_today, quota.reserved) == (0, 0)
    [refused] = bot.simulator.generate_requests
    assert refused.err_code == 500071
    assert bot.simulator.jobs == {}
    # The same effect at 540p is made.
    handle = await world.video(effect="Retro Flicker", quality="540p")
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.job_final((await world.latest_job()).id)
    assert job.state is JobState.DONE, job.error


async def test_with_pixverse_effects_set_only_those_are_offered(world):
    bot = await world.start_bot(
        simulator=SimulatorConfig(gen_time=0.3, seed=7),
        pixverse_effects={"Kiss kiss": KISS, "House special": NO_HD_TEMPLATE_ID},
    )
    choices = await offered(world)
    assert [(c["name"], c["value"]) for c in choices] == [
        ("House special", str(NO_HD_TEMPLATE_ID)),
        ("Kiss kiss", str(KISS)),
    ]
    handle = await world.video(effect="Muscle Surge")
    response = await handle.response(timeout=5)
    assert "choose one of House special, Kiss kiss" in reply_text(response)
    await asyncio.sleep(0.1)
    assert listings(bot.simulator) == []
