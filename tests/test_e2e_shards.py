"""A sharded gateway (``SHARD_COUNT`` / ``SHARD_IDS``) end to end: the real PixBot as an
``AutoShardedBot`` against the fake Discord, which routes each guild to its shard
(``(guild_id >> 22) % SHARD_COUNT``) as Discord does, and the embedded simulator."""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import png_bytes, status_text
from discord.ext import commands
from fakediscord import FakeDiscord, FakeDiscordTimeout, child_env

from bot.app import ShardedPixBot

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Place:
    """A guild on a known shard, with a channel and a member."""

    guild: Any
    channel: Any
    member: Any


def place_on(fake: FakeDiscord, shard_id: int, shard_count: int = 2) -> Place:
    guild = fake.add_guild(f"Shard {shard_id} Lounge", shard=(shard_id, shard_count))
    channel = fake.add_channel(guild, "generate")
    member = fake.add_user(f"member-of-{shard_id}")
    fake.add_member(guild, member)
    return Place(guild, channel, member)


async def video(fake: FakeDiscord, place: Place, prompt: str, timeout: float = 5.0) -> Any:
    return await fake.invoke(
        "video",
        user=place.member,
        channel=place.channel,
        options={"prompt": prompt},
        attachments={"image": ("cat.png", png_bytes(), "image/png")},
        timeout=timeout,
    )


def carried_by(fake: FakeDiscord, interaction_id: int) -> list[tuple[int, int]]:
    """The shards whose gateway session the interaction was dispatched on."""
    return [
        session.shard
        for session in fake.gateway.live_sessions()
        if any(
            frame["t"] == "INTERACTION_CREATE" and int(frame["d"]["id"]) == interaction_id
            for frame in session.frames
        )
    ]


async def finished_video(world: Any, handle: Any, place: Place) -> str:
    """Wait for the job of ``handle`` to end and its status message to carry the video."""
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral and response.delay < 3
    [job] = await world.bot.store.jobs.list_for_user(
        place.guild.id, place.member.id, limit=5, offset=0
    )
    async with asyncio.timeout(15):
        while True:
            stored = await world.bot.store.jobs.get(job.id)
            if stored.is_final and stored.delivery_since is None:
                break
            await asyncio.sleep(0.02)
    message = handle.original
    await world.until(lambda: message.files)
    return status_text(message)


async def test_one_process_running_both_shards_finishes_jobs_of_guilds_on_each(
    world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    places = [place_on(world.fake, 0), place_on(world.fake, 1)]
    bot = await world.start_bot(shard_count=2, dev_guild_id=None, identify_wait=0)

    assert isinstance(bot, ShardedPixBot) and isinstance(bot, commands.AutoShardedBot)
    assert (bot.shard_count, sorted(bot.shards)) == (2, [0, 1])
    assert world.fake.gateway.connected_shards() == [(0, 2), (1, 2)]
    for shard_id, place in enumerate(places):
        cached = bot.get_guild(place.guild.id)
        assert cached is not None and cached.shard_id == shard_id

    # Both jobs run at once: one accepted on each shard before either finishes.
    handles = [await video(world.fake, p, f"a cat on shard {n}") for n, p in enumerate(places)]
    for shard_id, (handle, place) in enumerate(zip(handles, places, strict=True)):
        assert carried_by(world.fake, handle.id) == [(shard_id, 2)]
        text = await finished_video(world, handle, place)
        assert "Done" in text and "simulated" in text
    assert len(bot.simulator.generate_requests) == 2
    ready = [r.getMessage() for r in caplog.records if "Connected as" in r.getMessage()]
    assert ready and ready[-1].endswith("on shards 0, 1 of 2")


async def test_a_process_running_shard_1_gets_only_the_guilds_and_interactions_of_shard_1(
    world: Any,
) -> None:
    mine, theirs = place_on(world.fake, 1), place_on(world.fake, 0)
    bot = await world.start_bot(shard_count=2, shard_ids=[1], dev_guild_id=None, identify_wait=0)

    assert (bot.shard_count, bot.shard_ids) == (2, [1])
    assert world.fake.gateway.connected_shards() == [(1, 2)]
    # GUILD_CREATE came for shard 1's guilds only (the world's own guild may be on either).
    assert mine.guild.id in {g.id for g in bot.guilds}
    assert bot.get_guild(theirs.guild.id) is None
    assert all(world.fake.shard_of(g.id, 2) == 1 for g in bot.guilds)

    handle = await video(world.fake, mine, "a cat on shard 1")
    assert carried_by(world.fake, handle.id) == [(1, 2)]
    assert "Done" in await finished_video(world, handle, mine)

    # Discord sends shard 0's interactions to shard 0's connection, which no one runs here.
    with pytest.raises(FakeDiscordTimeout):
        await video(world.fake, theirs, "a cat on shard 0", timeout=0.5)
    assert (
        await bot.store.jobs.list_for_user(theirs.guild.id, theirs.member.id, limit=5, offset=0)
        == []
    )

    # A guild that joins later reaches this process only when it lives on shard 1.
    later_theirs = world.fake.add_guild("Later 0", shard=(0, 2))
    later_mine = world.fake.add_guild("Later 1", shard=(1, 2))
    await world.until(lambda: bot.get_guild(later_mine.id) is not None, timeout=5)
    assert bot.get_guild(later_theirs.id) is None


async def test_python_m_bot_with_shard_ids_connects_only_those_shards(tmp_path: Path) -> None:
    """The operator's road: SHARD_COUNT and SHARD_IDS in the environment of ``python -m bot``."""
    async with FakeDiscord() as fake:
        mine, theirs = place_on(fake, 1), place_on(fake, 0)
        env = child_env(fake, tmp_path, code=ROOT, SHARD_COUNT="2", SHARD_IDS="1", LOG_LEVEL="INFO")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--simulate",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        lines: list[str] = []
        reader = asyncio.create_task(read_lines(process.stdout, lines))
        try:
            await fake.wait_for(lambda: fake.synced_commands(), timeout=30, what="a global sync")
            await fake.wait_until_ready(timeout=15)
            handle = await fake.invoke("quota", user=mine.member, channel=mine.channel)
            assert (await handle.response(timeout=10)).ephemeral
            assert fake.gateway.connected_shards() == [(1, 2)]
            with pytest.raises(FakeDiscordTimeout):
                await fake.invoke("quota", user=theirs.member, channel=theirs.channel, timeout=0.5)
            # on_ready comes once every guild of the shard arrived (discord.py waits 2 s more).
            async with asyncio.timeout(15):
                while not any("Connected as" in line for line in lines):
                    await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=10)
            await asyncio.wait_for(reader, timeout=5)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            reader.cancel()
        output = "".join(lines)
        assert code == 0, output
        assert "to 1 server(s) on shard 1 of 2" in output
        assert "Shard 1 of 2 connected (1 server(s))" in output
        assert fake.bot_token not in output


async def read_lines(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode(errors="replace"))


async def test_discord_requiring_sharding_stops_the_start_with_one_line_naming_shard_count(
    tmp_path: Path,
) -> None:
    """Past Discord's guilds per shard (2,500; 1 here) the gateway closes with 4011."""
    async with FakeDiscord(max_guilds_per_shard=1) as fake:
        fake.add_guild("One")
        fake.add_guild("Two")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--simulate",
            cwd=tmp_path,
            env=child_env(fake, tmp_path, code=ROOT, LOG_LEVEL="INFO"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.stdout is not None
        output = (await process.stdout.read()).decode(errors="replace")
    assert code == 2, output
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "requires sharding" in line]
    assert "set SHARD_COUNT" in line
