"""``python -m bot --simulate`` as an operator runs it: a real child process, connected to
the fake Discord, syncing its commands, answering a command, and stopping cleanly on
SIGTERM/SIGINT with exit code 0."""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from pathlib import Path

import pytest
from fakediscord import FakeDiscord, child_env

ROOT = Path(__file__).resolve().parents[1]


async def start_bot_process(fake: FakeDiscord, guild_id: int, workdir: Path, *args: str):
    env = child_env(fake, workdir, code=ROOT, DEV_GUILD_ID=str(guild_id), LOG_LEVEL="INFO")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--simulate",
        *args,
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def wait_synced(fake: FakeDiscord, guild, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not fake.synced_commands(guild):
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_bot_process_connects_syncs_answers_and_stops_cleanly(tmp_path, sig):
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Pixel Lounge")
        channel = fake.add_channel(guild, "generate")
        member = fake.add_user("sam")
        fake.add_member(guild, member)
        process = await start_bot_process(fake, guild.id, tmp_path)
        try:
            await wait_synced(fake, guild)
            names = {command["name"] for command in fake.synced_commands(guild)}
            assert {"video", "extend", "jobs", "cancel", "quota", "quota-admin"} <= names
            await fake.wait_until_ready(timeout=15)
            handle = await fake.invoke("quota", user=member, channel=channel)
            response = await handle.response(timeout=10)
            assert response.ephemeral
            process.send_signal(sig)
            code = await asyncio.wait_for(process.wait(), timeout=10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        output = (await process.stdout.read()).decode(errors="replace")
        assert code == 0, output
        assert "Shut down cleanly" in output
        assert fake.bot_token not in output
        assert (tmp_path / "data" / "bot.sqlite3").exists()


async def test_bot_process_logs_the_invite_url(tmp_path):
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Pixel Lounge")
        process = await start_bot_process(fake, guild.id, tmp_path)
        try:
            await wait_synced(fake, guild)
            await fake.wait_until_ready(timeout=15)
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        output = (await process.stdout.read()).decode(errors="replace")
        assert "scope=bot+applications.commands" in output
        assert f"client_id={fake.application_id}" in output


async def test_bot_process_turns_an_image_into_a_video_with_production_defaults(tmp_path):
    """`python -m bot --simulate` with nothing tuned: the simulator's default 10 s generation,
    the real poll schedule and the real 3 s edit interval."""
    from conftest import png_bytes, status_text

    async with FakeDiscord() as fake:
        guild = fake.add_guild("Pixel Lounge")
        channel = fake.add_channel(guild, "generate")
        member = fake.add_user("sam")
        fake.add_member(guild, member)
        process = await start_bot_process(fake, guild.id, tmp_path)
        try:
            await wait_synced(fake, guild)
            await fake.wait_until_ready(timeout=15)
            handle = await fake.invoke(
                "video",
                user=member,
                channel=channel,
                options={"prompt": "a lighthouse in a storm"},
                attachments={"image": ("lighthouse.png", png_bytes(), "image/png")},
            )
            first = await handle.response(timeout=10)
            assert not first.ephemeral and first.delay < 3
            message = await handle.wait_original(lambda m: bool(m.files), timeout=60)
            text = status_text(message)
            assert "Done" in text and "simulated" in text and "Credits spent: 45" in text
            [video] = message.files.values()
            assert video[4:8] == b"ftyp"
            times = [snapshot.at for snapshot in message.history]
            assert all(b - a >= 2.95 for a, b in itertools.pairwise(times))
            assert not any(snapshot.pings_anyone for snapshot in message.history)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert code == 0
