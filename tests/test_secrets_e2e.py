"""Secrets never leave the process: a full run at DEBUG, every log line and exception text
captured, every message the bot sent and the SQLite file afterwards, grepped for the bot
token, the PixVerse key, the webhook secret and every interaction token Discord issued.

Both ways the bot runs: in-process (the real PixBot through the fake Discord, logging set
up by the same function ``python -m bot`` calls) and as a ``python -m bot`` child process
at LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import World, png_bytes
from fakediscord import FakeDiscord, child_env

from bot.logs import MASK, configured_secrets, setup_logging
from bot.simulator import Simulator, SimulatorConfig
from bot.store.models import JobState

ROOT = Path(__file__).resolve().parents[1]
# Recognisable, and long enough that a partial leak would still be found.
PIXVERSE_KEY = "pv-key-SECRET-4f7d2a9c81e0b356"
WEBHOOK_SECRET = "whsec-SECRET-0c9e71b2d4a6"


class Capture(logging.Handler):
    """Every record that reaches the root logger, rendered as a handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if record.exc_info and record.exc_info[1] is not None:
            # The exception's own text too, as an error reporter would show it.
            self.lines.append(str(record.exc_info[1]))


@contextmanager
def production_logging(
    monkeypatch: pytest.MonkeyPatch, secrets: list[str]
) -> Iterator[tuple[io.StringIO, Capture]]:
    """``setup_logging`` as ``python -m bot`` calls it, at DEBUG, writing to a buffer instead
    of stderr; plus a capture of every record at the root. Undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    factory = logging.getLogRecordFactory()
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    capture = Capture()
    try:
        setup_logging("DEBUG", secrets)
        root.addHandler(capture)
        yield stderr, capture
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.setLogRecordFactory(factory)


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, secret in secrets.items() if secret and secret in text]


def database_bytes(path: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_full_run_at_debug_leaks_no_secret(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = world.fake
    sim = Simulator(SimulatorConfig(gen_time=0.3, seed=7, api_key=PIXVERSE_KEY))
    await sim.start()
    overrides = {
        "pixverse_api_key": PIXVERSE_KEY,
        "pixverse_webhook_secret": WEBHOOK_SECRET,
        "webhook_port": free_port(),
        "webhook_host": "127.0.0.1",
    }
    secrets = configured_secrets(world.settings(simulate=False, **overrides))
    assert set(secrets) == {fake.bot_token, PIXVERSE_KEY, WEBHOOK_SECRET}
    try:
        with production_logging(monkeypatch, secrets) as (stderr, capture):
            bot = await world.start_bot(pixverse=sim, **overrides)
            # One job whose token works throughout, one whose token dies mid-job (discord.py
            # then logs the refused webhook URL), and commands that answer ephemerally.
            first = await world.video()
            await first.response(timeout=5)
            second = await world.video(world.other, prompt="a dog shakes off water")
            await second.response(timeout=5)
            fake.expire_token(second)
            await (await fake.invoke("jobs", user=world.member, channel=world.channel)).response(
                timeout=5
            )
            mine = await world.latest_job()
            await (
                await fake.invoke(
                    "cancel", user=world.other, channel=world.channel, options={"job": mine.id}
                )
            ).response(timeout=5)
            theirs = await world.latest_job(world.other)
            for job in (mine, theirs):
                done = await world.job_final(job.id)
                assert done.state is JobState.DONE
            await world.until(lambda: first.original.files and second.original.files)
            reprs = "\n".join(
                [
                    repr(bot.settings),
                    str(bot.settings),
                    repr(bot.settings.model_dump()),
                    repr(bot.pixverse),
                    repr(bot.webhooks),
                    repr(sim),
                ]
            )
            await world.stop_bot()
    finally:
        await sim.stop()

    tokens = {f"interaction token {n}": t for n, t in enumerate(fake.interactions_by_token)}
    assert len(tokens) >= 4
    every = {
        "bot token": fake.bot_token,
        "PixVerse key": PIXVERSE_KEY,
        "webhook secret": WEBHOOK_SECRET,
        **tokens,
    }
    # The capture saw the traffic that carries tokens: without redaction these lines would
    # hold them (so the test cannot pass by capturing nothing).
    logged = "\n".join(capture.lines)
    assert "WebSocket Event" in logged and "INTERACTION_CREATE" in logged
    assert f"/webhooks/{fake.application_id}/{MASK}" in logged
    assert f"'token': '{MASK}'" in logged
    assert leaks(logged, every) == []
    assert leaks(stderr.getvalue(), every) == []
    assert "INTERACTION_CREATE" in stderr.getvalue()
    assert leaks(reprs, every) == []

    sent = "\n".join(
        repr((snap.content, snap.embeds, snap.components, snap.filenames))
        for message in fake.store.by_id.values()
        for snap in message.history
    )
    assert "Done" in sent
    assert leaks(sent, every) == []

    # After a clean stop the file holds none of them, and no interaction token either: each
    # was cleared once its job's final status was shown.
    stored = database_bytes(world.tmp_path / "data" / "bot.sqlite3")
    assert len(stored) > 0
    assert [name for name, s in every.items() if s.encode() in stored] == []


async def test_python_m_bot_at_debug_leaks_no_secret(tmp_path: Path) -> None:
    # The production poll schedule waits for PixVerse's real generation times; the
    # simulator's signed webhook tells the bot at once (and runs that path too).
    hook_port = free_port()
    config = SimulatorConfig(
        gen_time=0.5,
        seed=7,
        api_key=PIXVERSE_KEY,
        webhook_url=f"http://127.0.0.1:{hook_port}/",
        webhook_secret=WEBHOOK_SECRET,
    )
    async with FakeDiscord() as fake, Simulator(config) as sim:
        guild = fake.add_guild("Pixel Lounge")
        channel = fake.add_channel(guild, "generate")
        member = fake.add_user("sam")
        fake.add_member(guild, member)
        env = child_env(
            fake,
            tmp_path,
            code=ROOT,
            DEV_GUILD_ID=str(guild.id),
            LOG_LEVEL="DEBUG",
            PIXVERSE_API_KEY=PIXVERSE_KEY,
            PIXVERSE_BASE_URL=sim.base_url,
            PIXVERSE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            WEBHOOK_PORT=str(hook_port),
            WEBHOOK_HOST="127.0.0.1",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        # Read as it comes: a DEBUG log fills a pipe buffer long before the bot stops.
        output = bytearray()

        async def drain() -> None:
            assert process.stdout is not None
            while chunk := await process.stdout.read(65536):
                output.extend(chunk)

        reader = asyncio.create_task(drain())
        try:
            await fake.wait_until_ready(timeout=30)
            async with asyncio.timeout(30):
                while not fake.synced_commands(guild):
                    await asyncio.sleep(0.05)
            handle = await fake.invoke(
                "video",
                user=member,
                channel=channel,
                options={"prompt": "a lighthouse in a storm"},
                attachments={"image": ("lighthouse.png", png_bytes(), "image/png")},
            )
            await handle.wait_original(lambda m: bool(m.files), timeout=60)
            assert any(record.ok for record in sim.webhooks)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=15)
            await asyncio.wait_for(reader, timeout=5)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            reader.cancel()
        text = output.decode(errors="replace")
        assert code == 0, text[-2000:]
        every = {
            "bot token": fake.bot_token,
            "PixVerse key": PIXVERSE_KEY,
            "webhook secret": WEBHOOK_SECRET,
            **{f"interaction token {n}": t for n, t in enumerate(fake.interactions_by_token)},
        }
        assert "INTERACTION_CREATE" in text and MASK in text
        assert leaks(text, every) == []
        stored = database_bytes(tmp_path / "data" / "bot.sqlite3")
        assert [name for name, s in every.items() if s.encode() in stored] == []
