"""The one SQLite connection of the bot, and how work reaches it.

aiosqlite runs a single worker thread per connection and executes requests in order; every
``await`` on it is a thread hop. So the store runs each write transaction as one synchronous
function on that thread (``write``), and batches the transactions that arrive while the
previous batch runs into one ``BEGIN IMMEDIATE … COMMIT`` (group commit), each inside its own
SAVEPOINT so one caller's error or refusal never undoes another's work. ``transaction()`` is
the general form for code that must await between statements; it holds the same lock.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import aiosqlite

from bot.refusal import Refusal
from bot.store.migrations import MIGRATIONS, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]
SyncFn = Callable[[sqlite3.Connection], T]

BUSY_TIMEOUT_MS = 10_000
# Bounds one batch so a burst cannot hold the write lock (and the other connection) for long.
MAX_BATCH = 512
THREAD_STOP_SECONDS = 5.0  # how long a failed open waits for aiosqlite's thread to stop
# Rows ANALYZE samples per index at shutdown (SQLite suggests 100-1000).
ANALYSIS_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class ExecResult:
    rowcount: int


# What the operator does about each storage fault, keyed by SQLite's primary result code
# (``sqlite3.Error.sqlite_errorname`` without its extended suffix, e.g. SQLITE_READONLY_DBMOVED).
_STORAGE_FAULTS: dict[str, tuple[str, str]] = {
    "SQLITE_READONLY": (
        "is read-only",
        "make the file, its -wal/-shm files and its folder writable by the bot's user",
    ),
    "SQLITE_FULL": ("cannot grow: the disk is full", "free space on that disk"),
    "SQLITE_IOERR": ("hit a disk I/O error", "check the disk and the file system"),
    "SQLITE_CANTOPEN": (
        "cannot be opened or created",
        "check that DATABASE_PATH is right and its folder exists and is writable by the bot's user",
    ),
}
# Python's sqlite3 gives the name since 3.11; older builds or odd errors carry only the text.
_STORAGE_TEXTS = (
    ("readonly", "SQLITE_READONLY"),
    ("database or disk is full", "SQLITE_FULL"),
    ("disk i/o error", "SQLITE_IOERR"),
    ("unable to open database file", "SQLITE_CANTOPEN"),
)

_OS_ERRORS = {
    errno.EROFS: "SQLITE_READONLY",
    errno.ENOSPC: "SQLITE_FULL",
    errno.EIO: "SQLITE_IOERR",
}


class StorageUnavailable(Refusal):
    """The database file cannot be written: read-only, full disk, I/O error, cannot open.

    The transaction did not happen (nothing written, nothing charged). ``str()`` is the line a
    member reads; ``operator_line`` names the file and what to do, for the log."""

    def __init__(self, path: Path | str, code: str, problem: str, fix: str) -> None:
        super().__init__(
            "The bot cannot save anything right now (its storage is failing), so nothing was "
            "started or charged. Please try again later; the operator has been told."
        )
        self.path = path
        self.code = code
        self.operator_line = f"Database {path} {problem}: {fix}, then try again."


def storage_fault(exc: BaseException, path: Path) -> StorageUnavailable | None:
    """The storage fault ``exc`` is, or None for any other error (a bug, a constraint)."""
    if isinstance(exc, StorageUnavailable):
        return exc
    code: str | None
    if isinstance(exc, OSError):
        # Creating the folder failed before SQLite was reached.
        code = _OS_ERRORS.get(exc.errno or 0, "SQLITE_CANTOPEN")
    elif isinstance(exc, sqlite3.DatabaseError):
        name = str(getattr(exc, "sqlite_errorname", "") or "")
        code = next((c for c in _STORAGE_FAULTS if name == c or name.startswith(c + "_")), None)
        if code is None:
            text = str(exc).lower()
            code = next((c for needle, c in _STORAGE_TEXTS if needle in text), None)
    else:
        code = None
    if code is None:
        return None
    problem, fix = _STORAGE_FAULTS[code]
    return StorageUnavailable(path, code, problem, fix)


def _configure(conn: sqlite3.Connection, busy_timeout_ms: int) -> str:
    conn.row_factory = sqlite3.Row
    # Wait for another connection's write lock (a restart overlapping the old process)
    # instead of failing with "database is locked".
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    conn.execute("PRAGMA foreign_keys = ON")
    # A cleared interaction token or a deleted input is overwritten, not left in free space
    # in the file (SECURITY.md); some SQLite builds have this on by default, not all.
    conn.execute("PRAGMA secure_delete = ON")
    # In WAL mode NORMAL loses at most the last transactions on power loss, never integrity.
    conn.execute("PRAGMA synchronous = NORMAL")
    return mode


def _open_reader(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """The read connection, used on the event loop's thread only."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # As the writer's, so the two connections read the same settings back.
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _exec(conn: sqlite3.Connection, sql: str, params: Params) -> ExecResult:
    return ExecResult(conn.execute(sql, params).rowcount)


def _fetch_one(conn: sqlite3.Connection, sql: str, params: Params) -> sqlite3.Row | None:
    return cast("sqlite3.Row | None", conn.execute(sql, params).fetchone())


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Params) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _run_batch(conn: sqlite3.Connection, fns: Sequence[SyncFn[Any]]) -> list[tuple[bool, Any]]:
    """Run write functions in one transaction; returns (ok, result or exception) for each."""
    outcomes: list[tuple[bool, Any]] = []
    single = len(fns) == 1
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn in fns:
            if single:
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as exc:
                    # SQLite may have rolled the transaction back itself (SQLITE_FULL,
                    # SQLITE_IOERR): a second ROLLBACK would hide the real error.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    return [(False, exc)]
                continue
            conn.execute("SAVEPOINT op")
            try:
                result = fn(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    # SQLite rolled back the whole transaction, the writes of the callers
                    # before this one included: the batch failed for everybody.
                    raise
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, exc))
            else:
                conn.execute("RELEASE op")
                outcomes.append((True, result))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _optimize(conn: sqlite3.Connection) -> None:
    # Keeps the planner's statistics current for the next start. Without a limit the first
    # ANALYZE it runs reads every row of every index: about a second per million jobs, taken
    # from the 10 s a SIGTERM allows. Sampled statistics plan these queries just as well.
    conn.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
    conn.execute("PRAGMA optimize")


def _check_writable(conn: sqlite3.Connection) -> None:
    # Rewriting the version writes the file's header: a read-only file fails here, at start.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _read(conn: sqlite3.Connection, fn: SyncFn[T]) -> T:
    # A deferred transaction gives several SELECTs one consistent snapshot.
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        # An I/O error may have ended the transaction already; COMMIT would hide it.
        if conn.in_transaction:
            conn.execute("COMMIT")


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class Transaction:
    """An open ``BEGIN IMMEDIATE`` transaction; see ``Database.transaction``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.closed = False

    async def run(self, fn: SyncFn[T]) -> T:
        """Run ``fn(connection)`` inside this transaction in one thread hop."""
        if self.closed:
            raise RuntimeError("transaction already finished")
        return await self._db._call(fn)

    async def execute(self, sql: str, params: Params = ()) -> ExecResult:
        return await self.run(lambda conn: _exec(conn, sql, params))

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        return await self.run(lambda conn: _fetch_one(conn, sql, params))

    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: _fetch_all(conn, sql, params))


class Engine(Protocol):
    """Where the statements run: SQLite here, PostgreSQL in bot/store/pg.py. The store's
    functions take a connection that answers ``execute(sql, params)`` as sqlite3's does."""

    where: Path | str  # the file, or the server (never its password): for the operator

    async def call(self, fn: SyncFn[T]) -> T:
        """Run ``fn(connection)`` on the writing connection, in order, one at a time."""
        ...

    async def read(self, fn: SyncFn[T]) -> T:
        """Run ``fn(connection)`` in one read snapshot of what is committed."""
        ...

    async def read_statement(self, fn: SyncFn[T]) -> T:
        """Run ``fn(connection)``, a single SELECT, on a reading connection."""
        ...

    def fault(self, exc: BaseException) -> StorageUnavailable | None:
        """``exc`` as a storage fault the operator must fix, or None."""
        ...

    async def optimize(self) -> None: ...

    async def close(self) -> None: ...


class SqliteEngine:
    """One aiosqlite connection for writes (its own thread), and a second connection for
    reads on the event loop's thread."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._raw: sqlite3.Connection = conn._conn
        self.where: Path | str = path
        self.path = path
        # Reads run on the event loop's own thread, on a second connection: WAL gives it the
        # last committed state without waiting for writers, and a read of a few indexed rows
        # takes microseconds, while a hop to the database thread and back wakes two threads
        # (docs/architecture.md, "CPU"). Writes keep their thread and group commit.
        self._reader: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls, path: Path, *, migrations: Sequence[str], busy_timeout_ms: int
    ) -> SqliteEngine:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: the store issues BEGIN/COMMIT itself, never Python's
            # implicit ones.
            connecting = aiosqlite.connect(
                path, isolation_level=None, timeout=busy_timeout_ms / 1000
            )
        except OSError as exc:
            fault = storage_fault(exc, path)
            if fault is None:
                raise
            raise fault from exc
        try:
            conn = await connecting
        except (OSError, sqlite3.Error) as exc:
            # aiosqlite stops its thread after a failed connect without waiting for it; the
            # thread then answers a loop that may be closed by the time it runs, and prints
            # a traceback over the operator's one line. Wait for it here.
            await asyncio.to_thread(connecting._thread.join, THREAD_STOP_SECONDS)
            fault = storage_fault(exc, path)
            if fault is None:
                raise
            raise fault from exc
        engine = cls(conn, path)
        try:
            mode = await engine.call(lambda raw: _configure(raw, busy_timeout_ms))
            version = await engine.call(lambda raw: migrate(raw, migrations))
            await engine.call(_check_writable)
            if mode.lower() != "wal":
                raise RuntimeError(f"could not switch {path} to WAL mode (got {mode!r})")
            engine._reader = _open_reader(path, busy_timeout_ms)
        except BaseException as exc:
            await conn.close()
            fault = storage_fault(exc, path)
            if fault is None:
                raise
            raise fault from exc
        log.info("database %s open at schema version %d", path, version)
        return engine

    async def call(self, fn: SyncFn[T]) -> T:
        # aiosqlite has no public "run this function on your thread" call; _execute is that
        # (stable since 0.17), and one hop per transaction is what makes the store fast.
        return cast(T, await self._conn._execute(fn, self._raw))

    async def read(self, fn: SyncFn[T]) -> T:
        return self._read_now(lambda conn: _read(conn, fn))

    async def read_statement(self, fn: SyncFn[T]) -> T:
        # Outside a transaction SQLite gives each statement its own snapshot, so the BEGIN
        # and COMMIT that ``read`` wraps several statements in are not needed.
        return self._read_now(fn)

    def _read_now(self, fn: SyncFn[T]) -> T:
        if self._reader is None:
            raise RuntimeError("database is not open")
        return fn(self._reader)

    def fault(self, exc: BaseException) -> StorageUnavailable | None:
        return storage_fault(exc, self.path)

    async def optimize(self) -> None:
        await self.call(_optimize)

    async def close(self) -> None:
        await self._conn.close()
        if self._reader is not None:
            self._reader.close()


class Database:
    """The store's database: serialized write transactions with group commit, and reads
    from a snapshot, on either engine (SQLite by default, PostgreSQL with ``DATABASE_URL``)."""

    def __init__(self, engine: Engine) -> None:
        """Use ``Database.open`` (SQLite) or ``bot.store.pg.open_postgres``."""
        self.engine = engine
        self.where = engine.where
        self._lock = asyncio.Lock()
        # (function, its caller's future, when it must be flushed by: loop time, 0 = now)
        self._queue: list[tuple[SyncFn[Any], asyncio.Future[Any], float]] = []
        self._urgent = 0  # queued writes that do not wait for company (``within`` None)
        self._later: asyncio.TimerHandle | None = None  # flushes writes that did wait
        self._flusher: asyncio.Task[None] | None = None
        self._tx_owner: asyncio.Task[Any] | None = None
        self._closed = False
        self._failing: str | None = None  # the storage fault last reported, until a write works

    @property
    def path(self) -> Path | str:
        """The SQLite file, or the PostgreSQL server (without its password)."""
        return self.where

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        migrations: Sequence[str] = MIGRATIONS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> Database:
        """Open (creating the file and its folder) and migrate the SQLite database at ``path``.

        Raises ``StorageUnavailable`` (one line for the operator in ``operator_line``) when
        the file cannot be created, opened or written: a bot that starts on a read-only file
        would only fail later, on a member's first job."""
        engine = await SqliteEngine.open(
            Path(path), migrations=migrations, busy_timeout_ms=busy_timeout_ms
        )
        return cls(engine)

    async def close(self) -> None:
        """Finish queued writes, then close the connection."""
        if self._closed:
            return
        self._closed = True
        while self._queue or self._flusher is not None:
            self._start_flush()
            if self._flusher is not None:
                await self._flusher
        async with self._lock:
            try:
                await self.engine.optimize()
            except Exception as exc:
                # A storage fault was reported already; the statistics wait for a writable
                # database.
                if self.engine.fault(exc) is None:
                    raise
            finally:
                await self.engine.close()

    async def _call(self, fn: SyncFn[T]) -> T:
        try:
            return await self.engine.call(fn)
        except Exception as exc:
            fault = self._fault(exc)
            if fault is None:
                raise
            raise fault from exc

    def _fault(self, exc: BaseException) -> StorageUnavailable | None:
        """``exc`` as a storage fault, reported once (not at every failing write: a full
        disk would otherwise fill the log it cannot write either)."""
        fault = self.engine.fault(exc)
        if fault is not None and self._failing != fault.code:
            self._failing = fault.code
            log.error("%s New jobs are refused until then.", fault.operator_line)
        return fault

    def _writes_work(self) -> None:
        if self._failing is not None:
            self._failing = None
            log.warning("Database %s is writable again; new jobs are accepted.", self.where)

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("database is closed")
        if self._tx_owner is not None and self._tx_owner is asyncio.current_task():
            # The lock is not reentrant: this would wait for itself forever.
            raise RuntimeError("inside db.transaction(): use the transaction's methods")

    async def write(self, fn: SyncFn[T], *, within: float | None = None) -> T:
        """Run ``fn(connection)`` as one write transaction on the database thread.

        ``fn`` must not BEGIN/COMMIT itself. If it raises, its changes are rolled back and the
        exception is raised here; other callers batched with it are unaffected. Cancelling
        the caller does not undo a write that was already queued.

        With ``within``, a write that nobody needs done at once (a mark to clear) waits for
        company: it joins the next batch another write starts, or starts its own after
        ``within`` seconds. Under load that saves it a thread hop (docs/architecture.md,
        "CPU").
        """
        self._check_usable()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if within is None:
            self._queue.append((fn, future, 0.0))
            self._urgent += 1
            self._start_flush()
        else:
            due = loop.time() + within
            self._queue.append((fn, future, due))
            if self._flusher is None:
                self._flush_by(due)
        return await future

    def _start_flush(self) -> None:
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._flusher is None and self._queue:
            self._flusher = asyncio.create_task(self._flush(), name="db-group-commit")

    def _flush_by(self, due: float) -> None:
        """Have the queued writes flushed by loop time ``due`` at the latest."""
        if self._later is not None and self._later.when() <= due:
            return
        if self._later is not None:
            self._later.cancel()
        self._later = asyncio.get_running_loop().call_at(due, self._start_flush)

    async def _flush(self) -> None:
        try:
            # The first batch whatever started this; then only while writes that do not
            # wait are queued (the others wait for the next one, or for their time).
            first = True
            while self._queue and (first or self._urgent):
                first = False
                async with self._lock:
                    batch = self._queue[:MAX_BATCH]
                    del self._queue[:MAX_BATCH]
                    self._urgent -= sum(1 for _, _, due in batch if not due)
                    try:
                        outcomes = await self._call(
                            partial(_run_batch, fns=[fn for fn, _, _ in batch])
                        )
                    except Exception as exc:
                        # The whole batch was rolled back (e.g. COMMIT failed): nobody's
                        # write happened, so everybody hears about it. A storage fault was
                        # reported once by _call.
                        if not isinstance(exc, StorageUnavailable):
                            log.warning("write batch of %d rolled back: %r", len(batch), exc)
                        for _, future, _ in batch:
                            if not future.done():
                                future.set_exception(exc)
                        continue
                    if any(ok for ok, _ in outcomes):
                        self._writes_work()
                    for (_, future, _), (ok, value) in zip(batch, outcomes, strict=True):
                        if not ok:
                            fault = self._fault(value)
                            if fault is not None:
                                fault.__cause__ = value
                                value = fault
                        if future.done():  # the caller was cancelled meanwhile
                            continue
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(value)
        finally:
            self._flusher = None
            if self._queue:
                self._flush_by(min(due for _, _, due in self._queue))

    async def read(self, fn: SyncFn[T]) -> T:
        """Run ``fn(connection)`` in a read snapshot of what is committed. A write that has
        returned is committed (group commit answers after COMMIT), so it is seen."""
        self._check_usable()
        try:
            return await self.engine.read(fn)
        except Exception as exc:
            fault = self._fault(exc)
            if fault is None:
                raise
            raise fault from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``async with db.transaction() as tx:`` — BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error.

        Concurrent callers queue on a lock rather than failing. Prefer ``write`` on hot paths:
        each statement here is a separate thread hop while the write lock is held.
        """
        self._check_usable()
        async with self._lock:
            self._tx_owner = asyncio.current_task()
            tx = Transaction(self)
            try:
                await self._call(_begin)
                try:
                    yield tx
                except BaseException:
                    # Shielded so a second cancellation cannot skip the ROLLBACK; the hop is
                    # already queued on the database thread either way.
                    await asyncio.shield(self._call(_rollback))
                    raise
                try:
                    await self._call(_commit)
                except BaseException:
                    await asyncio.shield(self._call(_rollback))
                    raise
                self._writes_work()
            finally:
                tx.closed = True
                self._tx_owner = None

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        return await self._read_statement(lambda conn: _fetch_one(conn, sql, params))

    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self._read_statement(lambda conn: _fetch_all(conn, sql, params))

    async def _read_statement(self, fn: SyncFn[T]) -> T:
        self._check_usable()
        try:
            return await self.engine.read_statement(fn)
        except Exception as exc:
            fault = self._fault(exc)
            if fault is None:
                raise
            raise fault from exc

    async def execute(
        self, sql: str, params: Params = (), *, within: float | None = None
    ) -> ExecResult:
        """One statement in its own (group-committed) write transaction; ``within`` as
        for ``write``."""
        return await self.write(lambda conn: _exec(conn, sql, params), within=within)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> bool:
        """Hear what any process sharing this database ``notify``s on ``channel``; False
        when the engine has no such thing (SQLite: one process, nobody else to hear)."""
        listen = getattr(self.engine, "listen", None)
        if listen is None:
            return False
        await listen(channel, callback)
        return True

    async def notify(self, channel: str, payload: str) -> None:
        """Tell every process listening on ``channel`` (see ``listen``)."""
        notify = getattr(self.engine, "notify", None)
        if notify is not None:
            await notify(channel, payload)

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetch_one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        await self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
