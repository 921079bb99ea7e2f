"""``python -m bot migrate-to-postgres``: copy a SQLite database into an empty PostgreSQL one.

A server that outgrows one process keeps its members' quotas, history and settings: both
databases are first brought to the same schema version (the same numbered migrations), then
every row of every table is copied in one PostgreSQL transaction, in an order that keeps the
foreign keys valid, and the id sequences continue after the highest copied id. A PostgreSQL
database that already holds data is refused: the copy never merges two histories.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bot.store.db import Database
from bot.store.pg import migrate_postgres, redacted

log = logging.getLogger(__name__)

# Tables whose rows reference jobs: copied after it. jobs references itself (an extension's
# parent), which holds in id order since a parent is always older.
_AFTER_JOBS = ("job_inputs", "job_extra_inputs", "ledger", "moderation_strikes")
# Tables with an id PostgreSQL generates: their sequence continues after the copied ids.
_GENERATED_IDS = ("jobs", "audit_log")
# PostgreSQL's own bookkeeping, never copied.
_SKIPPED = ("schema_migrations",)


class MoveRefused(RuntimeError):
    """The copy cannot start; ``str()`` says what to change."""


@dataclass(frozen=True, slots=True)
class MoveReport:
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _table_order(tables: list[str]) -> list[str]:
    first = sorted(t for t in tables if t not in _AFTER_JOBS and t != "jobs")
    middle = ["jobs"] if "jobs" in tables else []
    return first + middle + [t for t in _AFTER_JOBS if t in tables]


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [str(name) for (name,) in rows]


async def move_to_postgres(sqlite_path: Path, url: str) -> MoveReport:
    """Copy the SQLite database at ``sqlite_path`` into the empty PostgreSQL one at ``url``."""
    if not await asyncio.to_thread(sqlite_path.exists):
        raise MoveRefused(f"{sqlite_path} does not exist: pass the bot's DATABASE_PATH")
    # Brings an older file to the current schema, as starting the bot would.
    source_db = await Database.open(sqlite_path)
    await source_db.close()
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        target = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        source.close()
        raise MoveRefused(f"cannot connect to {redacted(url)}: {exc}") from exc
    try:
        await migrate_postgres(target)
        tables = _table_order(_sqlite_tables(source))
        for table in tables:
            if await target.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
                raise MoveRefused(
                    f"{redacted(url)} already holds data (table {table}): copy into an empty "
                    "database (createdb a new one), so two histories are never merged"
                )
        copied: dict[str, int] = {}
        async with target.transaction():
            for table in tables:
                copied[table] = await _copy_table(source, target, table)
            for table in _GENERATED_IDS:
                if table in tables:
                    await target.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f' COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)'
                    )
        for table, count in copied.items():
            (found,) = await target.fetchrow(f'SELECT COUNT(*) FROM "{table}"')
            if found != count:
                raise RuntimeError(f"{table}: copied {count} rows but {found} arrived")
        return MoveReport(copied)
    finally:
        source.close()
        await target.close()


async def _copy_table(source: sqlite3.Connection, target: asyncpg.Connection, table: str) -> int:
    cursor = source.execute(f'SELECT * FROM "{table}"')  # table names from sqlite_master
    columns = [description[0] for description in cursor.description]
    count = 0
    while rows := cursor.fetchmany(5000):
        await target.copy_records_to_table(table, records=rows, columns=columns)
        count += len(rows)
    log.info("copied %d row(s) of %s", count, table)
    return count
