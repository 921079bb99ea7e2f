"""Database: opening, pragmas, migrations, transactions, group commit, two connections."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from bot.store import Database
from bot.store.db import StorageUnavailable
from bot.store.migrations import (
    MIGRATIONS,
    SchemaTooNew,
    migrate,
    schema_version,
    split_statements,
)


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            " ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()
    return rows


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
async def db(tmp_path: Path):
    database = await Database.open(tmp_path / "db.sqlite3")
    yield database
    await database.close()


async def test_open_creates_the_folder_and_sets_the_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folder" / "bot.sqlite3"
    db = await Database.open(path)
    try:
        assert path.exists()
        assert (await db.fetch_one("PRAGMA journal_mode"))[0] == "wal"
        assert (await db.fetch_one("PRAGMA foreign_keys"))[0] == 1
        assert (await db.fetch_one("PRAGMA busy_timeout"))[0] >= 1000
        assert (await db.fetch_one("PRAGMA synchronous"))[0] == 1  # NORMAL
    finally:
        await db.close()


async def test_an_empty_file_is_migrated_to_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    path.touch()
    db = await Database.open(path)
    try:
        assert await db.read(schema_version) == len(MIGRATIONS)
        tables = {row[0] for row in await db.fetch_all("SELECT name FROM sqlite_master")}
        for table in ("meta", "jobs", "job_inputs", "ledger", "member_settings", "audit_log"):
            assert table in tables
    finally:
        await db.close()


@pytest.mark.parametrize("start", range(len(MIGRATIONS)))
async def test_every_earlier_version_is_migrated_to_the_same_schema(
    tmp_path: Path, start: int
) -> None:
    fresh = tmp_path / "fresh.sqlite3"
    await (await Database.open(fresh)).close()

    old = tmp_path / f"v{start}.sqlite3"
    conn = sqlite3.connect(old, isolation_level=None)
    assert migrate(conn, MIGRATIONS, target=start) == start
    if start >= 1:  # data written by the old version survives
        conn.execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')")
    conn.close()

    db = await Database.open(old)
    try:
        assert await db.read(schema_version) == len(MIGRATIONS)
        if start >= 1:
            assert await db.get_meta("kept") == "yes"
    finally:
        await db.close()
    assert schema_of(old) == schema_of(fresh)


async def test_reopening_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = await Database.open(path)
    await db.set_meta("commands_hash", "abc")
    await db.close()
    before = schema_of(path)

    db = await Database.open(path)
    try:
        assert await db.read(schema_version) == len(MIGRATIONS)
        assert await db.get_meta("commands_hash") == "abc"
    finally:
        await db.close()
    assert schema_of(path) == before


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        await Database.open(path)


async def test_a_failing_migration_leaves_the_previous_version_whole(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    broken = (MIGRATIONS[0], "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);")
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(path, migrations=broken)
    assert user_version(path) == 1
    assert "half" not in {name for _, name, _ in schema_of(path)}


async def test_a_failed_open_leaves_no_database_thread_behind(tmp_path: Path) -> None:
    # A thread still stopping after open() failed would answer a closed loop and print a
    # traceback under the operator's one-line message.
    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]

    before = workers()
    folder = tmp_path / "a-folder-not-a-file"
    folder.mkdir()
    with pytest.raises(StorageUnavailable):
        await Database.open(folder)
    assert workers() == before


def test_split_statements_keeps_triggers_whole() -> None:
    script = """
    CREATE TABLE t (x INTEGER);
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; UPDATE t SET x = 2; END;
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].endswith("END;")


async def test_meta_keeps_the_latest_value(db: Database) -> None:
    assert await db.get_meta("sync_hash") is None
    await db.set_meta("sync_hash", "one")
    await db.set_meta("sync_hash", "two")
    assert await db.get_meta("sync_hash") == "two"


async def test_transaction_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO meta (key, value) VALUES ('b', '2')")
            raise RuntimeError("boom")
    assert await db.get_meta("a") == "1"
    assert await db.get_meta("b") is None


async def test_concurrent_transactions_queue_instead_of_failing(db: Database) -> None:
    await db.set_meta("counter", "0")

    async def increment() -> None:
        async with db.transaction() as tx:
            row = await tx.fetch_one("SELECT value FROM meta WHERE key = 'counter'")
            await asyncio.sleep(0)  # give the others every chance to interleave
            await tx.execute(
                "UPDATE meta SET value = ? WHERE key = 'counter'", (str(int(row[0]) + 1),)
            )

    await asyncio.gather(*(increment() for _ in range(50)), *(db.get_meta("x") for _ in range(20)))
    assert await db.get_meta("counter") == "50"


async def test_one_failing_write_in_a_batch_does_not_undo_the_others(db: Database) -> None:
    def insert(key: str):
        def fn(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, 'v')", (key,))
            if key == "bad":
                raise ValueError("refused after writing")
            return key

        return fn

    results = await asyncio.gather(
        *(db.write(insert(k)) for k in ("a", "b", "bad", "c")), return_exceptions=True
    )
    assert results[:2] == ["a", "b"] and results[3] == "c"
    assert isinstance(results[2], ValueError)
    keys = {row[0] for row in await db.fetch_all("SELECT key FROM meta")}
    assert keys == {"a", "b", "c"}


async def test_reads_never_see_an_open_transactions_writes(db: Database) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO meta (key, value) VALUES ('dirty', '1')")
                inside.set()
                await release.wait()
                raise RuntimeError("roll back")

    task = asyncio.create_task(writer())
    await inside.wait()
    try:
        # Reads run on their own connection: they see what is committed, at once, without
        # waiting for the transaction.
        assert await asyncio.wait_for(db.get_meta("dirty"), timeout=1) is None
    finally:
        release.set()
        await task
    assert await db.get_meta("dirty") is None


async def test_reads_see_a_write_as_soon_as_it_returns(db: Database) -> None:
    await db.execute("INSERT INTO meta (key, value) VALUES ('seen', '1')")
    assert await db.get_meta("seen") == "1"
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO meta (key, value) VALUES ('later', '2')")
    assert await db.get_meta("later") == "2"


async def test_using_the_database_inside_its_own_transaction_is_an_error(db: Database) -> None:
    async with db.transaction():
        with pytest.raises(RuntimeError, match=r"inside db\.transaction"):
            await db.get_meta("x")


async def test_a_write_that_may_wait_joins_the_next_batch_or_goes_alone_in_time(
    db: Database,
) -> None:
    hops = 0
    call = db._call

    async def counted(fn):  # type: ignore[no-untyped-def]
        nonlocal hops
        hops += 1
        return await call(fn)

    db._call = counted  # type: ignore[method-assign]
    insert = "INSERT INTO meta (key, value) VALUES (?, 'v')"
    waiting = asyncio.create_task(db.execute(insert, ("later",), within=30))
    await asyncio.sleep(0.05)
    assert not waiting.done() and hops == 0  # no batch of its own yet
    await db.execute(insert, ("now",))  # the next write takes it along: one thread hop
    assert (await waiting).rowcount == 1 and hops == 1
    assert await db.get_meta("later") == "v"

    loop = asyncio.get_running_loop()
    started = loop.time()
    await db.execute(insert, ("alone",), within=0.2)  # nobody comes: it goes by itself
    assert 0.15 <= loop.time() - started < 5 and hops == 2


async def test_close_finishes_writes_that_may_wait(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = await Database.open(path)
    pending = asyncio.create_task(
        db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')", within=60)
    )
    await asyncio.sleep(0)
    await db.close()
    assert (await pending).rowcount == 1
    db = await Database.open(path)
    try:
        assert await db.get_meta("k") == "v"
    finally:
        await db.close()


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = await Database.open(path)
    pending = [asyncio.create_task(db.set_meta(f"k{i}", "v")) for i in range(100)]
    await asyncio.sleep(0)
    await db.close()
    await asyncio.gather(*pending)
    db = await Database.open(path)
    try:
        assert len(await db.fetch_all("SELECT key FROM meta")) == 100
    finally:
        await db.close()


async def test_two_connections_on_one_file_wait_for_each_other(tmp_path: Path) -> None:
    """A restart overlapping the old process: busy_timeout instead of 'database is locked'."""
    path = tmp_path / "db.sqlite3"
    first = await Database.open(path)
    second = await Database.open(path)
    try:

        async def hold_lock() -> None:
            async with first.transaction() as tx:
                await tx.execute("INSERT INTO meta (key, value) VALUES ('held', '1')")
                await asyncio.sleep(0.3)  # the other connection must wait, not fail

        async def writes(db: Database, prefix: str) -> None:
            await asyncio.gather(*(db.set_meta(f"{prefix}{i}", "v") for i in range(100)))

        await asyncio.gather(hold_lock(), writes(second, "b"), writes(first, "a"))
        for db in (first, second):
            assert (await db.fetch_one("SELECT COUNT(*) FROM meta"))[0] == 201
    finally:
        await first.close()
        await second.close()
