"""A database left by each earlier version of the bot, opened by the current one.

For every schema version before the current one, the test applies only the first migrations
(each as released: migrations are never edited), writes the rows a bot of that version would
have left — a member with usage, a finished job, a job generating at PixVerse, a queued job
with its input — using only the tables and columns that version had, and starts today's bot
on the file. It must migrate, carry the queued and generating jobs to the end on their own
status messages, list the finished job in /jobs, and keep the credit ledger consistent.
The versions come from ``MIGRATIONS``, so a new migration is covered without editing this.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import png_bytes, status_text
from store_fixtures import ledger_state

from bot.pixverse import ImageToVideoRequest, PixVerseClient, new_trace_id
from bot.store.clock import day_of
from bot.store.migrations import MIGRATIONS, migrate, schema_version
from bot.store.models import JobParams, JobState

COST = 45  # v4.5 540p 5 s
OVERRIDE = 300  # the member's own daily allowance, set by a moderator back then
EARLIER = list(range(1, len(MIGRATIONS)))


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> bool:
    """Insert what this version's table has of ``row``; False when the table did not exist."""
    columns = _columns(conn, table)
    if not columns:
        return False
    kept = {name: value for name, value in row.items() if name in columns}
    names = ", ".join(kept)
    marks = ", ".join("?" for _ in kept)
    conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(kept.values()))
    return True


def build_old_database(
    path: Path, version: int, *, world: Any, messages: dict[str, int], generating: dict[str, Any]
) -> dict[str, int]:
    """The file a bot at schema ``version`` left; returns the job ids by role."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        assert migrate(conn, MIGRATIONS, target=version) == version
        now = time.time()
        day = day_of(now)
        guild, channel, user = world.guild.id, world.channel.id, world.member.id
        conn.execute("BEGIN IMMEDIATE")
        _insert(
            conn,
            "member_settings",
            {"guild_id": guild, "user_id": user, "daily_override": OVERRIDE, "updated_at": now},
        )
        ids: dict[str, int] = {}
        params = JobParams.model_validate(
            {"prompt": "", "model": "v4.5", "quality": "540p", "duration": 5}
        )
        base = {
            "guild_id": guild,
            "channel_id": channel,
            "user_id": user,
            "kind": "video",
            "cost": COST,
            "status_channel_id": channel,
            "created_at": now - 120,
            "updated_at": now - 60,
            "upload_limit": 10 * 1024 * 1024,
        }
        rows = {
            "finished": {
                "state": "done",
                "prompt": "a finished lighthouse",
                "pixverse_img_id": 1,
                "pixverse_video_id": 1,
                "trace_id": new_trace_id(),
                "result_url": "https://media.example.invalid/finished.mp4",
                "started_at": now - 110,
                "submitted_at": now - 61,  # generated in about the simulator's time
                "finished_at": now - 60,
            },
            "generating": {
                "state": "generating",
                "prompt": "a generating lighthouse",
                "pixverse_img_id": generating["img_id"],
                "pixverse_video_id": generating["video_id"],
                "trace_id": generating["trace_id"],
                "started_at": now - 5,
                "submitted_at": now - 5,
            },
            "queued": {"state": "queued", "prompt": "a queued lighthouse"},
        }
        for role, extra in rows.items():
            prompt = extra.pop("prompt")
            row = {
                **base,
                **extra,
                "params": params.model_copy(update={"prompt": prompt}).model_dump_json(),
                "status_message_id": messages[role],
            }
            if not _insert(conn, "jobs", row):
                break
            ids[role] = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        if "queued" in ids:
            _insert(
                conn,
                "job_inputs",
                {
                    "job_id": ids["queued"],
                    "filename": "lighthouse.png",
                    "content_type": "image/png",
                    "data": png_bytes(),
                    "created_at": now - 120,
                },
            )
        for role, job_id in ids.items():
            committed = role == "finished"
            _insert(
                conn,
                "ledger",
                {
                    "job_id": job_id,
                    "guild_id": guild,
                    "user_id": user,
                    "amount": COST,
                    "base_allowance": 150,
                    "state": "committed" if committed else "reserved",
                    "reserved_at": now - 120,
                    "committed_at": now - 60 if committed else None,
                    "committed_day": day if committed else None,
                },
            )
        if "finished" in ids:
            _insert(
                conn, "member_days", {"guild_id": guild, "user_id": user, "day": day, "used": COST}
            )
            _insert(conn, "guild_days", {"guild_id": guild, "day": day, "spent": COST})
        conn.execute("COMMIT")
        assert schema_version(conn) == version
    finally:
        conn.close()
    return ids


async def _start_at_pixverse(pixverse: Any) -> dict[str, Any]:
    """A generation the old bot had submitted before it stopped."""
    async with aiohttp.ClientSession() as session:
        client = PixVerseClient(session, base_url=pixverse.base_url, api_key="test-key")
        image = await client.upload_image(
            png_bytes(), filename="lighthouse.png", content_type="image/png"
        )
        trace_id = new_trace_id()
        video_id = await client.image_to_video(
            ImageToVideoRequest(
                prompt="a generating lighthouse",
                model="v4.5",
                duration=5,
                quality="540p",
                img_id=image.img_id,
            ),
            trace_id=trace_id,
        )
    return {"img_id": image.img_id, "video_id": video_id, "trace_id": trace_id}


@pytest.mark.parametrize("version", EARLIER, ids=[f"v{v}" for v in EARLIER])
async def test_a_database_from_an_earlier_version_is_migrated_and_its_jobs_finish(
    world: Any, pixverse: Any, version: int
) -> None:
    pixverse.config.gen_time = 1.0
    generating = await _start_at_pixverse(pixverse)
    status = {
        role: world.fake.create_channel_message(
            world.channel, {"content": f"#{role} (status of the old bot)"}, [], route="test"
        )
        for role in ("finished", "generating", "queued")
    }
    database = world.settings().database_path
    ids = build_old_database(
        database,
        version,
        world=world,
        messages={role: message.id for role, message in status.items()},
        generating=generating,
    )

    bot = await world.start_bot(pixverse=pixverse)
    assert await bot.store.db.read(schema_version) == len(MIGRATIONS)
    for role in ("generating", "queued"):
        if role not in ids:
            continue
        job = await world.job_final(ids[role], timeout=30)
        assert job.state is JobState.DONE, (role, job.error)
        message = status[role]
        await world.until(lambda message=message: message.files, timeout=10)
        assert "Done" in status_text(message)
        assert job.status_message_id == message.id  # its own message, not a new post
    # The generating job was not submitted again; the queued one once.
    traces = [r.trace_id for r in pixverse.generate_requests]
    assert traces.count(generating["trace_id"]) == 1
    assert len(set(traces)) == (2 if "queued" in ids else 1)

    listing = await world.fake.invoke("jobs", user=world.member, channel=world.channel)
    text = str((await listing.response(timeout=5)).data)
    for job_id in ids.values():
        assert f"#{job_id}`" in text
    if "finished" in ids:
        assert "a finished lighthouse" in text and "finished.mp4" in text

    # Credits: what the old bot reserved is now committed once; used = the committed ledger.
    quota = await bot.store.ledger.quota(world.guild.id, world.member.id)
    assert quota.allowance == OVERRIDE and quota.reserved == 0
    had_ledger = version >= _first_version_with("ledger")
    if had_ledger:
        for job_id in ids.values():
            assert await ledger_state(bot.store, job_id) == "committed"
        assert quota.used_today == COST * len(ids)
    else:
        # No ledger then, so nothing was reserved: the old jobs finish free of charge.
        assert quota.used_today == 0
    [[integrity]] = await bot.store.db.fetch_all("PRAGMA integrity_check")
    assert integrity == "ok"


def _first_version_with(table: str) -> int:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for version in range(1, len(MIGRATIONS) + 1):
            migrate(conn, MIGRATIONS, target=version)
            if _columns(conn, table):
                return version
    finally:
        conn.close()
    raise AssertionError(f"no migration creates {table}")
