"""The PostgreSQL engine: the store on a server that several bot processes share.

The store's transactions are synchronous functions of a connection (bot/store/db.py), written
once for both engines. Here they run on a worker thread, and each ``execute`` they make is sent
to asyncpg on the event loop and waited for: the store keeps one text per statement, and the
group commit, savepoints and snapshots work as they do on SQLite.

What SQLite gives by having one writer, PostgreSQL gets from a transaction-scoped advisory
lock that every write transaction takes first (``BEGIN IMMEDIATE`` below): writes from all the
processes run one at a time, so a check and the write it guards (a member's credits, the
daily budget, ``MAX_ACTIVE_JOBS``) stay one decision across processes. Reads take no lock.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bot.store.db import Database, Params, StorageUnavailable, SyncFn
from bot.store.dialect import postgres_ddl, postgres_sql
from bot.store.migrations import MIGRATIONS, SchemaTooNew, split_statements

log = logging.getLogger(__name__)

T = TypeVar("T")

# pg_advisory_xact_lock key every write transaction takes ("pixbot" as a number).
WRITE_LOCK = 0x706978626F74
# Session lock for migrations, so processes starting together migrate once.
MIGRATION_LOCK = WRITE_LOCK + 1
READERS = 4  # threads (each with its connection) for reads; reads are short
# How long a statement may wait for the server (or the write lock) before the call fails.
STATEMENT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0

_BEGIN_WRITE = "BEGIN IMMEDIATE"
_BEGIN_READ = "BEGIN"
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def redacted(url: str) -> str:
    """``url`` without its password, for logs and the operator's messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def _numeric(text: str) -> int | float:
    # SUM() of BIGINTs is NUMERIC in PostgreSQL; the store counts credits in ints, as SQLite
    # returns them.
    return float(text) if any(c in text for c in ".eEn") else int(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text"
    )


class PgCursor:
    """The part of sqlite3's cursor the store uses: rows, and how many rows changed."""

    def __init__(self, rows: Sequence[Any], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        row = self._rows[self._next]
        self._next += 1
        return row

    def fetchall(self) -> list[Any]:
        rows = list(self._rows[self._next :])
        self._next = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _rowcount(status: str) -> int:
    # "UPDATE 3", "INSERT 0 1", "DELETE 2"; SELECT counts as -1 there, as in sqlite3.
    verb, _, rest = status.partition(" ")
    if verb not in ("INSERT", "UPDATE", "DELETE"):
        return -1
    return int(rest.rsplit(" ", 1)[-1])


def _as_sqlite_error(exc: asyncpg.PostgresError) -> sqlite3.Error:
    # The store catches sqlite3's exceptions (a constraint, a failing statement); the same
    # classes from PostgreSQL keep it engine-neutral.
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return sqlite3.IntegrityError(text)
    return sqlite3.OperationalError(text)


class _ThreadLink:
    """A worker thread's own event loop and connection. A store function runs on that thread
    and each of its statements runs to completion on that loop: no hop back to the bot's
    event loop per statement (that hop, two thread wake-ups, cost more than the statement)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection | None = None

    def connection(self) -> asyncpg.Connection:
        # A server restart closes the connection; the next statement opens a new one.
        if self._conn is None or self._conn.is_closed():
            self._conn = self.run(_connect(self._url))
        return self._conn

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, STATEMENT_TIMEOUT))

    def close(self) -> None:
        """From any thread, once this one is idle."""
        try:
            if self._conn is not None and not self._conn.is_closed():
                self.loop.run_until_complete(self._conn.close(timeout=5))
        except Exception:
            if self._conn is not None:
                self._conn.terminate()
        finally:
            self.loop.close()


class PgConnection:
    """What a store function gets on PostgreSQL, used on its worker thread only."""

    def __init__(self, link: _ThreadLink) -> None:
        self._link = link
        self._conn = link.connection()

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.is_in_transaction())

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._link.run(coro)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, _UNREACHABLE) or _fault_code(exc) is not None:
                raise
            raise _as_sqlite_error(exc) from exc

    def execute(self, sql: str, params: Params = ()) -> PgCursor:
        text = sql.strip()
        if text == _BEGIN_WRITE:
            self._wait(self._begin_write())
            return PgCursor((), -1)
        if text == _BEGIN_READ:
            self._wait(self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            return PgCursor((), -1)
        statement = postgres_sql(sql)
        arguments = statement.arguments(params)
        rows, status = self._wait(self._run(statement.sql, arguments))
        return PgCursor(rows, _rowcount(status))

    async def _begin_write(self) -> None:
        # One round trip (the simple query protocol takes both statements).
        await self._conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")

    async def _run(self, sql: str, arguments: list[Any]) -> tuple[Sequence[Any], str]:
        # asyncpg's public calls give rows or the status, not both; _execute (stable since
        # 0.18) gives both, from its statement cache.
        rows, status, _ = await self._conn._execute(sql, arguments, 0, None, return_status=True)
        return rows, status.decode()


def _fault_code(exc: BaseException) -> str | None:
    if isinstance(exc, _UNREACHABLE):
        return "PG_UNREACHABLE"
    if isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        return "PG_LOGIN"
    if isinstance(exc, asyncpg.exceptions.InvalidPasswordError):
        return "PG_LOGIN"
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return "PG_NO_DATABASE"
    if isinstance(exc, asyncpg.exceptions.DiskFullError):
        return "PG_FULL"
    if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
        return "PG_READONLY"
    return None


_PG_FAULTS = {
    "PG_UNREACHABLE": (
        "cannot be reached",
        "check DATABASE_URL and that the PostgreSQL server is running and accepts connections",
    ),
    "PG_LOGIN": ("refused the bot's login", "check the user and password in DATABASE_URL"),
    "PG_NO_DATABASE": ("has no such database", "create it (createdb) or fix DATABASE_URL"),
    "PG_FULL": ("cannot grow: its disk is full", "free space on the PostgreSQL server"),
    "PG_READONLY": (
        "is read-only (a standby?)",
        "point DATABASE_URL at the primary server",
    ),
}


def pg_fault(exc: BaseException, where: str) -> StorageUnavailable | None:
    if isinstance(exc, StorageUnavailable):
        return exc
    cause = exc.__cause__ if isinstance(exc, sqlite3.Error) else exc
    code = _fault_code(cause) if cause is not None else None
    if code is None:
        return None
    problem, fix = _PG_FAULTS[code]
    return StorageUnavailable(where, code, problem, fix)


async def _connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    await _init_connection(conn)
    return conn


class _Workers:
    """Threads, each with its own ``_ThreadLink``, running store functions."""

    def __init__(self, url: str, threads: int, name: str) -> None:
        self._url = url
        self._local = threading.local()
        self._links: list[_ThreadLink] = []
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=name)

    def run(self, fn: Callable[[PgConnection], T]) -> T:
        """On a worker thread: ``fn`` with that thread's connection."""
        link: _ThreadLink | None = getattr(self._local, "link", None)
        if link is None:
            link = _ThreadLink(self._url)
            self._local.link = link
            with self._lock:
                self._links.append(link)
        return fn(PgConnection(link))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        for link in self._links:
            link.close()


class PostgresEngine:
    """One writing thread (and connection), a few reading ones, each with its own loop."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.where: Path | str = redacted(url)
        self._url = url
        self._loop = loop
        # LISTEN/NOTIFY between processes, on the bot's own loop (bot/jobs/runner.py relays
        # webhooks of jobs another process runs).
        self._listener: asyncpg.Connection | None = None
        self._writer = _Workers(url, 1, "pg-write")
        self._readers = _Workers(url, READERS, "pg-read")

    @classmethod
    async def open(cls, url: str, *, migrations: Sequence[str]) -> PostgresEngine:
        engine = cls(url, asyncio.get_running_loop())
        try:
            conn = await _connect(url)
            try:
                version = await migrate_postgres(conn, migrations)
            finally:
                await conn.close()
            await engine.call(lambda _: None)  # the writing connection, now: fail at start
        except BaseException as exc:
            await engine.close()
            fault = pg_fault(exc, str(engine.where))
            if fault is None:
                raise
            raise fault from exc
        log.info("database %s open at schema version %d", engine.where, version)
        return engine

    async def call(self, fn: SyncFn[T]) -> T:
        return await self._loop.run_in_executor(self._writer.executor, self._writer.run, _as_pg(fn))

    async def read(self, fn: SyncFn[T]) -> T:
        return await self._reading(lambda conn: _read_snapshot(conn, fn))

    async def read_statement(self, fn: SyncFn[T]) -> T:
        return await self._reading(_as_pg(fn))

    async def _reading(self, fn: Callable[[PgConnection], T]) -> T:
        return await self._loop.run_in_executor(self._readers.executor, self._readers.run, fn)

    def fault(self, exc: BaseException) -> StorageUnavailable | None:
        return pg_fault(exc, str(self.where))

    async def _listening(self) -> asyncpg.Connection:
        if self._listener is None or self._listener.is_closed():
            self._listener = await _connect(self._url)
        return self._listener

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` on the bot's loop for each NOTIFY on ``channel``, from
        any process (this one included)."""
        conn = await self._listening()

        def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            callback(payload)

        await conn.add_listener(channel, heard)

    async def notify(self, channel: str, payload: str) -> None:
        conn = await self._listening()
        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def optimize(self) -> None:
        return None  # PostgreSQL's autovacuum keeps the planner's statistics

    async def close(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close(timeout=5)
        # Waits for a statement in flight (bounded by STATEMENT_TIMEOUT), then closes each
        # thread's connection.
        await asyncio.to_thread(self._writer.close)
        await asyncio.to_thread(self._readers.close)


def _as_pg(fn: SyncFn[T]) -> Callable[[PgConnection], T]:
    # The store's functions are typed for sqlite3's connection; PgConnection answers the part
    # of it they use.
    return cast("Callable[[PgConnection], T]", fn)


def _read_snapshot(conn: PgConnection, fn: SyncFn[T]) -> T:
    conn.execute(_BEGIN_READ)
    try:
        return _as_pg(fn)(conn)
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


async def schema_version_postgres(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))


async def migrate_postgres(conn: asyncpg.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the pending migrations (the same numbered ones as SQLite's, in PostgreSQL's
    words) and return the schema version. The versions applied are rows of
    ``schema_migrations``."""
    await conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = await schema_version_postgres(conn)
        if current > len(migrations):
            raise SchemaTooNew(
                f"database schema version {current} is newer than this bot knows "
                f"({len(migrations)}): upgrade the bot or use another DATABASE_URL"
            )
        for version in range(current + 1, len(migrations) + 1):
            async with conn.transaction():
                for statement in split_statements(migrations[version - 1]):
                    ddl = postgres_ddl(statement)
                    await conn.execute(ddl)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        return await schema_version_postgres(conn)
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")


async def open_postgres(url: str, *, migrations: Sequence[str] = MIGRATIONS) -> Database:
    """Connect to ``url``, migrate, and return the store's database on it."""
    return Database(await PostgresEngine.open(url, migrations=migrations))
