"""Start-up and command latency on a big database: the real bot process, the fake Discord.

Builds a fresh database file (cached nowhere: every run builds its own) with the real
migrations and bulk rows: by default 1,000,000 jobs of 100,000 members in three servers over
60 days (mostly done, some failed or cancelled, a few removed), their ledger rows, per-day
usage, audit rows and a handful of unfinished jobs waiting for a retry. Then it starts
``python -m bot --simulate`` on it against the fake Discord of tests/fakediscord and measures

* start → ready: process spawned → the first ``/quota`` answered (the store opened, the
  runner started on the unfinished jobs and pending deliveries, the commands synced, the
  gateway READY); the moments of the command sync and of READY are printed too;
* ``/jobs``, ``/quota``, ``/quota-admin top`` (day and week), the ``/extend job``
  autocomplete (empty, a prompt word, an id prefix) and the ``/mod cancel|remove job``
  autocompletes: interaction dispatched → callback received, ``--repeat`` times, as a member
  with Manage Server who has many jobs;
* SIGTERM → exit, and ``/quota-admin top period:week`` on a Sunday (seven days of jobs; timed
  on the store in-process, since the bot's clock cannot be moved).

"Before" is the bot at BASELINE_REVISION (exported with ``git archive``) on the file at its
schema; then the file is upgraded (timed) and the current bot runs on it twice: a first start
without planner statistics, and a restart with those its PRAGMA optimize left.

    python bench/startup.py [--jobs 1000000] [--members 100000] [--repeat 20] [--no-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TESTS))

from fakediscord import FakeDiscord, FakeDiscordError, child_env, permissions  # noqa: E402

from bot.pixverse.catalogue import shipped_catalogue  # noqa: E402
from bot.pixverse.rules import Motion, Quality  # noqa: E402
from bot.store import Limits, Store  # noqa: E402
from bot.store.clock import day_of  # noqa: E402
from bot.store.migrations import MIGRATIONS, migrate  # noqa: E402
from bot.store.models import JobParams  # noqa: E402

# The "before": the last revision without migration 7, the schema it knows, and its bot.
BASELINE_REVISION = "29c958e4776d87acaaa120abb75e9e806f6114cc"
BASELINE_SCHEMA = 6
START_TARGET = 2.0  # seconds
COMMAND_TARGET = 50.0  # milliseconds
DAY = 86_400.0
SPAN_DAYS = 60
BATCH = 100_000
DAILY = 150
MEMBER_BASE = 10**15  # synthetic members' user ids (the measured member is the fake's)
STATUS_BASE = 10**17  # synthetic status message ids

WORDS = (
    "a lighthouse in a storm, a cat surfing a wave, neon rain over tokyo, a fox in the snow,"
    " a dragon over the mountains, slow pan across a desert, a robot making coffee,"
    " waves crashing at sunset, a paper boat on a river, fireworks above a castle,"
    " a hummingbird in slow motion, an astronaut waving, autumn leaves falling"
).split(", ")
ERRORS = (
    "PixVerse refused the content (moderation)",
    "PixVerse failed to generate the video",
    "timed out waiting for PixVerse",
)


@dataclass(frozen=True)
class World:
    """The ids the database and the fake Discord must agree on."""

    guilds: tuple[int, ...]  # the first one is where the measured member lives
    channels: tuple[int, ...]  # one per guild
    heavy_user: int  # the measured member: many jobs, Manage Server
    heavy_jobs: int


# --- building the database ---------------------------------------------------------------


def _combinations() -> list[tuple[str, int]]:
    """(params JSON, cost) for a spread of prompts and every combination PixVerse accepts."""
    rng = random.Random(7)
    out = []
    catalogue = shipped_catalogue()
    for combo in catalogue.combinations():
        if combo.motion is not Motion.NORMAL:
            continue
        cost = catalogue.price(combo)
        for _ in range(12):
            prompt = f"{rng.choice(WORDS)} #{rng.randrange(10_000)}"
            params = JobParams(
                prompt=prompt,
                model=combo.model,
                quality=combo.quality,
                duration=combo.duration,
                seed=rng.randrange(2**31),
            )
            out.append((params.model_dump_json(), cost))
    # The usual choices (the defaults) dominate, as they do in real use.
    default = [p for p in out if '"v4.5"' in p[0] and '"540p"' in p[0] and '"duration":5' in p[0]]
    return out + default * 20


def _member_of(rng: random.Random, members: int) -> int:
    # Half the jobs spread evenly, half skewed to a few heavy users (a power law).
    if rng.random() < 0.5:
        return rng.randrange(members)
    return int(members * rng.random() ** 2)


def _job_rows(
    world: World, jobs: int, members: int, now: float
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(jobs row, ledger row) in id order, ``created_at`` spread evenly over the span."""
    rng = random.Random(42)
    combos = _combinations()
    guilds, channels = world.guilds, world.channels
    heavy_every = max(1, jobs // max(1, world.heavy_jobs))
    start = now - SPAN_DAYS * DAY
    step = (SPAN_DAYS * DAY - 600) / max(1, jobs)
    for job_id in range(1, jobs + 1):
        if job_id % heavy_every == 0:
            user, slot = world.heavy_user, 0
        else:
            index = _member_of(rng, members)
            user = MEMBER_BASE + index
            slot = 0 if index % 10 < 7 else 1 + index % 2
        guild, channel = guilds[slot], channels[slot]
        params, cost = rng.choice(combos)
        created = start + job_id * step
        started: float | None = created + rng.uniform(0.2, 3.0)
        submitted: float | None = created + rng.uniform(3.0, 9.0)
        finished = created + rng.uniform(40.0, 130.0)
        roll = rng.random()
        kind, parent = "video", None
        if roll < 0.08 and job_id > 10:
            kind, parent = "extend", rng.randrange(1, job_id)
        elif roll < 0.12:
            kind = "reroll"
        roll = rng.random()
        video = result = trace = error = removed_at = removed_by = None
        committed = committed_day = released = refunded = None
        if roll < 0.9:
            state, ledger_state = "done", "committed"
            video, trace = 300_000_000 + job_id, f"{rng.getrandbits(128):032x}"
            result = f"https://media.pixverse.invalid/{video}.mp4"
            committed, committed_day = finished, day_of(finished)
            if rng.random() < 0.002:  # a moderator removed it and refunded the credits
                removed_at = refunded = finished + 600
                removed_by, ledger_state = world.heavy_user, "refunded"
        elif roll < 0.97:
            state, ledger_state = "failed", "released"
            trace, error, released = f"{rng.getrandbits(128):032x}", rng.choice(ERRORS), finished
        else:  # cancelled while queued: never started
            state, ledger_state = "cancelled", "released"
            started = submitted = None
            finished = released = created + rng.uniform(1.0, 60.0)
            error = "cancelled by its owner"
        job = (
            job_id, guild, channel, user, kind, parent, params, cost, state, video, trace,
            result, channel, STATUS_BASE + job_id, int(started is not None), error, removed_at,
            removed_by, created, finished, started, submitted, finished,
        )  # fmt: skip
        ledger = (
            job_id, guild, user, cost, DAILY, ledger_state, created, committed, committed_day,
            released, error if released else None, refunded,
        )  # fmt: skip
        yield job, ledger


# Columns left out stay NULL (PixVerse upload ids, interaction tokens, retry times, …).
_JOB_COLUMNS = (
    "id, guild_id, channel_id, user_id, kind, parent_job_id, params, cost, state,"
    " pixverse_video_id, trace_id, result_url, status_channel_id, status_message_id,"
    " attempts, error, removed_at, removed_by, created_at, updated_at, started_at,"
    " submitted_at, finished_at"
)
_LEDGER_COLUMNS = (
    "job_id, guild_id, user_id, amount, base_allowance, state, reserved_at, committed_at,"
    " committed_day, released_at, release_reason, refunded_at"
)


def _insert(conn: sqlite3.Connection, table: str, columns: str, rows: list[Any]) -> None:
    marks = ", ".join("?" for _ in columns.split(","))
    conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def build_database(path: Path, world: World, *, jobs: int, members: int) -> dict[str, int]:
    """The schema of BASELINE_REVISION (the real migrations up to BASELINE_SCHEMA), then the
    rows; returns row counts. ``upgrade`` brings the file to the current schema."""
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=BASELINE_SCHEMA)
    # A bulk load: nothing to protect until it is finished (the bot switches to WAL itself).
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    # The rows are valid by construction; checking json_valid() a million times is a third
    # of the load. Indexes are built once at the end (a sort) rather than row by row: the
    # same CREATE INDEX statements the migrations ran, read back from the schema.
    conn.execute("PRAGMA ignore_check_constraints = ON")
    indexes = [
        (str(name), str(sql))
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    ]
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    job_batch: list[Any] = []
    ledger_batch: list[Any] = []
    for job, ledger in _job_rows(world, jobs, members, now):
        job_batch.append(job)
        ledger_batch.append(ledger)
        if len(job_batch) >= BATCH:
            _insert(conn, "jobs", _JOB_COLUMNS, job_batch)
            _insert(conn, "ledger", _LEDGER_COLUMNS, ledger_batch)
            job_batch.clear()
            ledger_batch.clear()
    _insert(conn, "jobs", _JOB_COLUMNS, job_batch)
    _insert(conn, "ledger", _LEDGER_COLUMNS, ledger_batch)

    # A handful of unfinished jobs: waiting to retry after PixVerse's concurrency limit, so
    # the runner resumes them at start without sending anything anywhere.
    rng = random.Random(3)
    params = JobParams(prompt="waiting for a slot", model="v4.5", quality=Quality.P540, duration=5)
    unfinished = 6
    for offset in range(unfinished):
        user = MEMBER_BASE + rng.randrange(members)
        created = now - 120 + offset
        cursor = conn.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, kind, params, cost, state,"
            " attempts, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, 'video', ?, 45, 'queued', 1, ?, ?, ?)",
            (world.guilds[1], world.channels[1], user, params.model_dump_json(), now + 3600,
             created, created),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO ledger (job_id, guild_id, user_id, amount, base_allowance, state,"
            " reserved_at) VALUES (?, ?, ?, 45, ?, 'reserved', ?)",
            (cursor.lastrowid, world.guilds[1], user, DAILY, created),
        )
    # Per-day usage is what the ledger committed (bonus-funded and refunded credits aside),
    # summed by SQLite in key order.
    conn.execute(
        "INSERT INTO member_days (guild_id, user_id, day, used)"
        " SELECT guild_id, user_id, committed_day, SUM(amount) FROM ledger"
        " WHERE state = 'committed' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    conn.execute(
        "INSERT INTO guild_days (guild_id, day, spent) SELECT guild_id, committed_day,"
        " SUM(amount) FROM ledger WHERE state = 'committed' GROUP BY 1, 2 ORDER BY 1, 2"
    )
    settings = [
        (world.guilds[0] if i % 10 < 7 else world.guilds[1 + i % 2], MEMBER_BASE + i, None,
         rng.choice((0, 0, 50, 200)), int(i % 97 == 0), None, now - rng.uniform(0, SPAN_DAYS * DAY))
        for i in rng.sample(range(members), min(members, 2_000))
    ]  # fmt: skip
    conn.executemany(
        "INSERT INTO member_settings (guild_id, user_id, daily_override, bonus, blocked,"
        " block_reason, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        settings,
    )
    audits = 3_000
    conn.executemany(
        "INSERT INTO audit_log (guild_id, actor_id, action, target_id, before_json, after_json,"
        " created_at) VALUES (?, ?, 'quota.grant', ?, ?, ?, ?)",
        (
            (
                world.guilds[i % 3],
                world.heavy_user if i % 5 == 0 else MEMBER_BASE + rng.randrange(members),
                MEMBER_BASE + rng.randrange(members),
                json.dumps({"bonus": 0}),
                json.dumps({"bonus": 50, "granted": 50}),
                now - SPAN_DAYS * DAY + i * (SPAN_DAYS * DAY / audits),
            )
            for i in range(audits)
        ),
    )
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.execute("PRAGMA ignore_check_constraints = OFF")
    conn.execute("PRAGMA journal_mode = WAL")
    counts = {
        table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        for table in ("jobs", "ledger", "member_days", "audit_log")
    }
    conn.close()
    return counts


# --- running the bot ----------------------------------------------------------------------


@dataclass
class Figures:
    start_ready: float = 0.0  # process spawned → first /quota answered
    ready_at: float = 0.0  # process spawned → gateway READY sent
    synced_at: float | None = None  # process spawned → commands synced (None: no sync needed)
    stop: float = 0.0  # SIGTERM → exit
    # probe → seconds from dispatch to the callback; None: not answered within Discord's 3 s
    latencies: dict[str, list[float | None]] = field(default_factory=dict)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def _start_bot(
    fake: FakeDiscord, database: Path, workdir: Path, code: Path
) -> asyncio.subprocess.Process:
    # What an operator runs, with the test shim pointing discord.py at the fake; no
    # DEV_GUILD_ID, so the commands are synced globally when their hash changed (production).
    # ``code`` goes ahead of the editable install on PYTHONPATH: it is the bot that runs.
    env = child_env(fake, workdir, code=code, DATABASE_PATH=str(database), LOG_LEVEL="INFO")
    # A file, not a pipe: nobody has to drain it while the bench waits on the fake.
    with (workdir / "bot.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--simulate", cwd=workdir, env=env, stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


async def measure(
    fake: FakeDiscord, database: Path, workdir: Path, world: World, repeat: int, code: Path = ROOT
) -> Figures:
    """Start the bot in ``code`` on ``database``, time it to ready, probe each command, stop
    it."""
    figures = Figures()
    channel = fake.channels[world.channels[0]]
    member = fake.users[world.heavy_user]
    syncs = fake.sync_count()
    started = time.monotonic()
    process = await _start_bot(fake, database, workdir, code)
    try:
        await fake.wait_until_ready(timeout=120)
        session = max(fake.gateway.connected_sessions(), key=lambda s: s.ready_at or 0.0)
        figures.ready_at = (session.ready_at or time.monotonic()) - started
        if fake.sync_count() > syncs:
            figures.synced_at = min(
                r.at for r in fake.requests("PUT") if r.path.endswith("/commands")
                and r.at >= started
            ) - started  # fmt: skip
        handle = await fake.invoke("quota", user=member, channel=channel, timeout=60)
        callback = await handle.response(timeout=60)
        if not callback.accepted:
            raise RuntimeError(f"the first /quota was not answered in time: {callback!r}")
        figures.start_ready = callback.at - started

        async def command(name: str, options: dict[str, Any] | None = None) -> float | None:
            handle = await fake.invoke(name, user=member, channel=channel, options=options)
            callback = await handle.response(timeout=30)
            return callback.delay if callback.accepted else None

        async def autocomplete(name: str, text: str) -> float | None:
            with contextlib.suppress(FakeDiscordError):  # answered after Discord's deadline
                await fake.autocomplete(
                    name, focused="job", user=member, channel=channel, options={"job": text}
                )
            # The fake keeps the interactions in order: the last one is this one.
            callback = list(fake.interactions.values())[-1].accepted
            return callback.delay if callback is not None else None

        probes: dict[str, Callable[[], Awaitable[float | None]]] = {
            "/jobs": lambda: command("jobs"),
            "/quota": lambda: command("quota"),
            "/quota-admin top period:day": lambda: command("quota-admin top", {"period": "day"}),
            "/quota-admin top period:week": lambda: command("quota-admin top", {"period": "week"}),
            "/extend job: autocomplete ''": lambda: autocomplete("extend", ""),
            "/extend job: autocomplete 'storm'": lambda: autocomplete("extend", "storm"),
            "/extend job: autocomplete '99'": lambda: autocomplete("extend", "99"),
            "/mod cancel job: autocomplete ''": lambda: autocomplete("mod cancel", ""),
            "/mod remove job: autocomplete ''": lambda: autocomplete("mod remove", ""),
        }
        for name, probe in probes.items():
            samples: list[float | None] = []
            for _ in range(repeat):
                samples.append(await probe())
                if samples[-1] is None or samples[-1] > 1.0:
                    break  # the figure is made: no need to wait through twenty of them
            figures.latencies[name] = samples
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), timeout=30)
        figures.stop = time.monotonic() - stopping
        if exit_code != 0:
            raise RuntimeError(f"the bot exited with {exit_code}")
    except BaseException:
        # The temporary folder goes with the bench: show the end of the bot's log now.
        lines = (workdir / "bot.log").read_text(errors="replace").splitlines()
        print("\n".join(["--- the bot's log, last lines:", *lines[-40:]]), file=sys.stderr)
        raise
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return figures


async def top_full_week(database: Path, guild: int, repeat: int) -> list[float]:
    """``/quota-admin top period:week`` at the end of last week (a full week of jobs behind
    it), timed on the store in-process: the bot's clock cannot be moved."""
    today = day_of(time.time())
    sunday = today - 1 - (today + 3) % 7  # day 0 (1970-01-01) was a Thursday
    moment = datetime.fromtimestamp((sunday + 1) * DAY - 1, UTC)
    # The limits only bound new jobs, which this never starts.
    store = await Store.open(database, limits=Limits(150, 2), clock=lambda: moment)
    try:
        samples = []
        for _ in range(repeat):
            began = time.perf_counter()
            await store.admin.top(guild, "week", limit=10)
            samples.append(time.perf_counter() - began)
        return samples
    finally:
        await store.close()


def export_baseline(target: Path) -> bool:
    """BASELINE_REVISION's files in ``target`` (``git archive``: the checkout is untouched)."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASELINE_REVISION, "bot", "cogs"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"No baseline: cannot export {BASELINE_REVISION[:10]} ({exc})")
        return False
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return True


def upgrade(database: Path) -> float:
    """Apply the current migrations to the file (once, as the first start after an upgrade
    would); returns the seconds it took."""
    began = time.perf_counter()
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
        migrate(conn)
    return time.perf_counter() - began


def _forget_statistics(database: Path) -> None:
    """Back to the built file's state: no statistics (a previous run's PRAGMA optimize
    leaves some)."""
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
            conn.execute("DELETE FROM sqlite_stat1")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _report(title: str, figures: Figures) -> bool:
    """Print one run's figures next to the targets; True when all of them are met."""
    ok = figures.start_ready <= START_TARGET
    synced = (
        "no command sync needed"
        if figures.synced_at is None
        else f"commands synced at {figures.synced_at:.2f} s"
    )
    print(f"\n{title}")
    print(
        f"  {'start → ready (first /quota answered)':38} {figures.start_ready:7.2f} s"
        f"{'':17}target ≤ {START_TARGET:.0f} s   {_verdict(ok)}"
        f"   ({synced}; gateway READY at {figures.ready_at:.2f} s)"
    )
    for name, samples in figures.latencies.items():
        answered = [s * 1000 for s in samples if s is not None]
        passed = len(answered) == len(samples) and max(answered) <= COMMAND_TARGET
        ok = ok and passed
        figure = (
            f"p50 {_percentile(answered, 50):7.1f} ms  max {max(answered):7.1f} ms"
            if len(answered) == len(samples)
            else f"{'no answer within 3 s':30}"
        )
        print(
            f"  {name:38} {figure}   target ≤ {COMMAND_TARGET:.0f} ms  {_verdict(passed)}"
            f"   (n={len(samples)})"
        )
    print(f"  {'SIGTERM → exit 0':38} {figures.stop:7.2f} s")
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20, help="samples per command")
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help=f"skip the run of the bot at {BASELINE_REVISION[:10]}",
    )
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" {os.cpu_count()} CPU(s); {args.jobs:,} jobs, {args.members:,} members"
    )
    with tempfile.TemporaryDirectory(prefix="pixbot-startup-") as tmp:
        workdir = Path(tmp)
        database = workdir / "data" / "bot.sqlite3"
        database.parent.mkdir()
        async with FakeDiscord() as fake:
            guilds = [fake.add_guild(name) for name in ("Pixel Lounge", "Render Farm", "Clips")]
            channels = [fake.add_channel(guild, "generate") for guild in guilds]
            heavy = fake.add_user("heavy-user")
            manage = permissions.DEFAULT_EVERYONE | permissions.MANAGE_GUILD
            fake.add_member(guilds[0], heavy, permissions=manage)
            world = World(
                guilds=tuple(g.id for g in guilds),
                channels=tuple(c.id for c in channels),
                heavy_user=heavy.id,
                heavy_jobs=max(100, args.jobs // 500),
            )
            began = time.perf_counter()
            counts = await asyncio.to_thread(
                build_database, database, world, jobs=args.jobs, members=args.members
            )
            size = database.stat().st_size / 2**20
            print(
                f"Built in {time.perf_counter() - began:.1f} s ({size:,.0f} MiB): "
                + ", ".join(f"{n:,} {table}" for table, n in counts.items())
                + f"; the measured member (Manage Server) has {world.heavy_jobs:,} jobs"
            )
            ok = True
            baseline = workdir / "baseline"
            if args.baseline and export_baseline(baseline):
                figures = await measure(fake, database, workdir, world, args.repeat, baseline)
                _report(f"Before: the bot at {BASELINE_REVISION[:10]} (schema 6)", figures)
                _forget_statistics(database)
            seconds = upgrade(database)
            print(
                f"\nUpgrading the file to schema {len(MIGRATIONS)} took {seconds:.1f} s"
                " (once, at the first start of the new version)"
            )
            figures = await measure(fake, database, workdir, world, args.repeat)
            ok = _report("First start on the built database (no statistics yet)", figures) and ok
            # The first run's clean shutdown ran PRAGMA optimize: a restart plans with the
            # statistics a long-lived installation has.
            figures = await measure(fake, database, workdir, world, args.repeat)
            ok = _report("Restart (with what PRAGMA optimize left)", figures) and ok
            week = [s * 1000 for s in await top_full_week(database, world.guilds[0], args.repeat)]
            passed = max(week) <= COMMAND_TARGET
            print(
                f"  {'top week, last Sunday (store call)':38} p50"
                f" {_percentile(week, 50):7.1f} ms  max {max(week):7.1f} ms"
                f"   target ≤ {COMMAND_TARGET:.0f} ms  {_verdict(passed)}   (a full week of jobs)"
            )
            ok = ok and passed
    print(f"\n{_verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
