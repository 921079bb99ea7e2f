"""``python -m bot migrate-to-postgres``: a server's SQLite database copied into PostgreSQL keeps
every member's quota, history and settings, and the bot goes on from there."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest
from store_fixtures import GUILD, MOD, FakeClock, create, open_store

from bot.store import JobState, Store
from bot.store.move import MoveRefused, move_to_postgres

ROOT = Path(__file__).resolve().parents[1]


async def fill(store: Store) -> dict[str, int]:
    """A small server's history: finished, failed, queued and running jobs, grants, a block,
    a role allowance, a server cap, the audit log."""
    done = await create(store, 1, with_input=True)
    await store.queue.claim_next()
    assert await store.jobs.finish_done(done.id, "https://cdn.example/1.mp4", charged=45)
    await store.jobs.delivered(done.id)
    failed = await create(store, 2)
    await store.queue.claim_next()
    assert await store.jobs.finish_failed(failed.id, "PixVerse refused it")
    running = await create(store, 4, with_input=True)
    await store.queue.claim_next()
    await create(store, 3)
    await store.admin.grant(GUILD, MOD, 1, 30)
    await store.admin.block(GUILD, MOD, 5, "spam")
    await store.admin.set_role_daily(GUILD, MOD, 777, 200)
    await store.admin.set_server_cap(GUILD, MOD, 5000)
    return {"done": done.id, "failed": failed.id, "running": running.id}


async def views(store: Store) -> list[object]:
    return [
        [await store.ledger.quota(GUILD, user, role_ids=[777]) for user in range(1, 6)],
        [await store.jobs.list_for_user(GUILD, user) for user in range(1, 6)],
        await store.admin.audit(GUILD, limit=50),
        await store.jobs.unfinished(),
    ]


async def test_a_copied_database_shows_the_same_and_goes_on(tmp_path: Path, pg_url: str) -> None:
    clock = FakeClock()
    async with open_store(tmp_path, clock) as sqlite_store:
        ids = await fill(sqlite_store)
        before = await views(sqlite_store)

    report = await move_to_postgres(tmp_path / "data" / "bot.sqlite3", pg_url)
    assert report.rows["jobs"] == 4 and report.rows["ledger"] == 4
    assert report.rows["job_inputs"] >= 1  # the running job's input is still needed

    async with open_store(pg_url, clock) as pg_store:
        assert await views(pg_store) == before
        running = await pg_store.jobs.get(ids["running"])
        assert running is not None and running.state is JobState.UPLOADING
        assert await pg_store.jobs.get_input(ids["running"]) is not None
        # New rows continue after the copied ids.
        newer = await create(pg_store, 6)
        assert newer.id == report.rows["jobs"] + 1  # ids 1-4 were copied
        await pg_store.admin.grant(GUILD, MOD, 6, 10)
        audit = await pg_store.admin.audit(GUILD, limit=1)
        assert audit[0].target_id == 6


async def test_a_database_that_holds_data_is_refused(tmp_path: Path, pg_url: str) -> None:
    clock = FakeClock()
    async with open_store(tmp_path, clock) as sqlite_store:
        await fill(sqlite_store)
    async with open_store(pg_url, clock) as pg_store:
        await create(pg_store, 9)
    with pytest.raises(MoveRefused, match="already holds data"):
        await move_to_postgres(tmp_path / "data" / "bot.sqlite3", pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM jobs") == 1  # nothing merged
    finally:
        await conn.close()


async def test_the_command_copies_and_says_what_next(tmp_path: Path, pg_url: str) -> None:
    clock = FakeClock()
    async with open_store(tmp_path, clock) as sqlite_store:
        await fill(sqlite_store)
    sqlite_path = tmp_path / "data" / "bot.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "DATABASE"))}
    env["PYTHONPATH"] = str(ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "migrate-to-postgres",
        "--sqlite",
        str(sqlite_path),
        "--url",
        pg_url,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    text = output.decode()
    assert process.returncode == 0, text
    assert "Copied" in text and "DATABASE_URL" in text and "Traceback" not in text
    # A second run finds the data there and refuses, with one line.
    again = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "migrate-to-postgres", "--sqlite", str(sqlite_path),
        "--url", pg_url, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(again.communicate(), timeout=60)
    assert again.returncode == 5
    assert "already holds data" in output.decode() and "Traceback" not in output.decode()
