"""End-to-end harness: the real PixBot (real discord.py) against the fake Discord, with the
PixVerse simulator embedded as under ``python -m bot --simulate``.

Every wait is bounded; everything listens on 127.0.0.1 only.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pgserver
import pytest
from fakediscord import FakeDiscord, Message, permissions
from pgserver import PgServer
from PIL import Image
from store_fixtures import FakeClock, open_store

from bot.app import PixBot, make_bot
from bot.jobs.delivery import DeliveryPolicy
from bot.jobs.effects import EffectsConfig
from bot.jobs.runner import RunnerConfig
from bot.jobs.schedule import PollSchedule
from bot.settings import Settings
from bot.simulator import Simulator, SimulatorConfig
from bot.store import Store

SKIPPED_POSTGRES: list[str] = []

FAST_RUNNER = RunnerConfig(
    max_active=5,
    schedule=PollSchedule(first_delay=0.05, min_delay=0.05, steady_delay=0.1, late_delay=0.2),
    requests_per_second=200,
    request_burst=50,
    retry_delay=0.05,
    busy_delay=0.2,
    unanswered_delay=0.2,
    credit_probe_every=0.2,
    download_retry_delay=0.05,
    idle_check=0.1,
    default_estimate=0.3,
    simulated=True,
    delivery=DeliveryPolicy(first_delay=0.1, max_delay=0.5, give_up_after=60.0),
)
# Tests shorten the edit interval to stay quick; one test checks the real 3 s.
FAST_STATUS_INTERVAL = 0.2


def png_bytes(width: int = 64, height: int = 48, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format=fmt)
    return out.getvalue()


@dataclass
class World:
    """The fake Discord's world and the running bot(s)."""

    fake: FakeDiscord
    tmp_path: Path
    guild: Any = None
    channel: Any = None
    admin: Any = None
    member: Any = None
    other: Any = None
    bots: list[tuple[PixBot, asyncio.Task[None]]] = field(default_factory=list)

    @property
    def bot(self) -> PixBot:
        return self.bots[-1][0]

    def settings(self, *, simulate: bool = True, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_token": self.fake.bot_token,
            "database_path": self.tmp_path / "data" / "bot.sqlite3",
            "dev_guild_id": self.guild.id,
            "daily_credits": 150,
            "max_jobs_per_user": 2,
            "pixverse_effects": {"Kiss kiss": 315446315336768},
            # Tests fire one member's commands in quick succession; the cooldown's own tests
            # (test_e2e_wallet.py) set it.
            "command_cooldown_seconds": 0,
        }
        values.update(overrides)
        return Settings(_env_file=None, simulate=simulate, **values)  # type: ignore[call-arg]

    async def start_bot(
        self,
        *,
        runner: RunnerConfig = FAST_RUNNER,
        simulator: SimulatorConfig | None = None,
        status_interval: float = FAST_STATUS_INTERVAL,
        force_global_sync: bool = False,
        pixverse: Simulator | None = None,
        pixverse_options: dict[str, Any] | None = None,
        effects: EffectsConfig | None = None,
        identify_wait: float = 5.0,
        **settings: Any,
    ) -> PixBot:
        """Start the real bot (sharded when ``shard_count`` is among the settings). With
        ``pixverse``, it talks to that (test-owned) simulator instead of starting its own, so
        two bots in a row (a restart) share one PixVerse. ``identify_wait``: the seconds
        between IDENTIFYs (Discord's 5 s; the fake takes them at once)."""
        if pixverse is not None:
            settings.setdefault("pixverse_api_key", "test-key")
            settings.setdefault("pixverse_base_url", pixverse.base_url)
        bot = make_bot(
            self.settings(simulate=pixverse is None, **settings),
            force_global_sync=force_global_sync,
            runner_config=runner,
            simulator_config=simulator or SimulatorConfig(gen_time=0.3, seed=7),
            effects_config=effects,
            status_interval=status_interval,
            pixverse_options=pixverse_options,
            identify_wait=identify_wait,
            guild_ready_timeout=0.05,
        )
        await bot.login(self.fake.bot_token)
        task = asyncio.create_task(bot.connect(reconnect=False))
        self.bots.append((bot, task))
        await asyncio.wait_for(bot.wait_until_ready(), timeout=10)
        return bot

    async def stop_bot(self) -> None:
        bot, task = self.bots.pop()
        await asyncio.wait_for(bot.close(), timeout=10)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=10)

    async def video(
        self,
        user: Any = None,
        *,
        image: tuple[str, bytes, str] | None = None,
        strict: bool = True,
        **options: Any,
    ):
        options.setdefault("prompt", "a cat turns its head")
        return await self.fake.invoke(
            "video",
            user=user or self.member,
            channel=self.channel,
            options=options,
            attachments={"image": image or ("cat.png", png_bytes(), "image/png")},
            strict=strict,
        )

    async def until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)

    async def job_final(self, job_id: int, timeout: float = 15.0):
        """Wait until the store has the job in a final state and its message was shown (or
        never can be: the delivery mark is cleared either way)."""
        async with asyncio.timeout(timeout):
            while True:
                job = await self.bot.store.jobs.get(job_id)
                if job is not None and job.is_final and job.delivery_since is None:
                    return job
                await asyncio.sleep(0.02)

    async def latest_job(self, user: Any = None):
        user = user or self.member
        jobs = await self.bot.store.jobs.list_for_user(self.guild.id, user.id, limit=1, offset=0)
        assert jobs, "no job was created"
        return jobs[0]


def status_text(message: Message) -> str:
    """Everything a member reads on a status message: content and embeds."""
    parts = [message.content or ""]
    for embed in message.embeds or []:
        parts.append(embed.get("title", ""))
        parts.append(embed.get("description", ""))
        for item in embed.get("fields", []):
            parts.append(f"{item.get('name')}: {item.get('value')}")
        parts.append((embed.get("footer") or {}).get("text", ""))
    return "\n".join(parts)


@pytest.fixture
def clock() -> FakeClock:
    """The store tests' clock (2025-03-10 12:00 UTC); a module may bring its own."""
    return FakeClock()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the session (tests/pgserver.py)."""
    try:
        server = PgServer.start()
    except FileNotFoundError as missing:
        if pgserver.REQUIRED:
            pytest.fail(f"PIXBOT_REQUIRE_POSTGRES=1 but {missing}")
        SKIPPED_POSTGRES.append(str(missing))
        pytest.skip(str(missing))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a new, empty PostgreSQL database on the session's server."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a store test keeps its store: a fresh folder (SQLite), then a fresh PostgreSQL
    database, so every store test runs on both engines."""
    if request.param == "sqlite":
        return tmp_path
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(db_target: Path | str, clock: FakeClock) -> AsyncIterator[Store]:
    """A migrated store on a fresh database of each engine, on ``clock``."""
    async with open_store(db_target, clock) as opened:
        yield opened


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SKIPPED_POSTGRES:
        terminalreporter.write_line(f"NOTE: {SKIPPED_POSTGRES[0]}", yellow=True)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeDiscord() as fake:
        world = World(fake=fake, tmp_path=tmp_path)
        world.guild = fake.add_guild("Pixel Lounge")
        world.channel = fake.add_channel(world.guild, "generate")
        mod_role = fake.add_role(world.guild, "Moderator", permissions=permissions.MANAGE_GUILD)
        world.admin = fake.add_user("mod")
        fake.add_member(world.guild, world.admin, roles=[mod_role])
        world.member = fake.add_user("sam")
        fake.add_member(world.guild, world.member)
        world.other = fake.add_user("alex")
        fake.add_member(world.guild, world.other)
        with fake.patch_discord():
            try:
                yield world
            finally:
                while world.bots:
                    await world.stop_bot()


@pytest.fixture
async def pixverse(world: World) -> AsyncIterator[Simulator]:
    """A simulator owned by the test, for bots started with ``start_bot(pixverse=...)``: it
    outlives a restart, so the second bot finds the first one's uploads and videos."""
    sim = Simulator(SimulatorConfig(gen_time=0.3, seed=7))
    await sim.start()
    try:
        yield sim
    finally:
        while world.bots:
            await world.stop_bot()
        await sim.stop()
