"""The paths that must stay fast on a big database (bench/startup.py: a million jobs) never read
a whole table: EXPLAIN QUERY PLAN of every statement they run must show no scan of a table,
no scan of a full index, and no search that reads a whole server's rows through an index made
for something else.

The statements are captured with a trace callback on the store's connection while the real
code runs (the runner's start, the store calls each command makes), so the test follows the
code: a new query on these paths is checked without anyone listing it here. (The trace gives
each statement with its values inlined; these statements' plans do not depend on them.) A scan of a
partial index is accepted (it holds only the unfinished jobs, or the pending deliveries). The
per-member paths must reach the member's jobs through ``user_id``, and the limited lists
(newest first, or a week's top spenders) must walk an index in order rather than sort every
matching row to keep the first few.

Plans are taken three ways: a new database (no statistics), and the statistics ANALYZE leaves
on the benchmark's database, both as the bot's own PRAGMA optimize samples them at shutdown
and exact: the planner must choose the same kind of plan either way.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from conftest import FAST_RUNNER
from store_fixtures import GUILD, MOD, OTHER_GUILD, FakeClock, create, open_store

from bot.jobs.progress import JobUpdate, StatusTarget
from bot.jobs.runner import JobRunner
from bot.pixverse import PixVerseClient
from bot.store import Store
from bot.sync import SYNC_HASH_KEY
from cogs.jobs import PAGE_SIZE

ALICE, BOB = 1, 2
ROLE = 77

# sqlite_stat1 of the benchmark's database (1,000,000 jobs, 100,000 members, 3 servers).
SAMPLED_STATS = {  # what the bot's PRAGMA optimize leaves (db.ANALYSIS_LIMIT rows sampled)
    ("audit_log", "ix_audit_actor"): "3668 501 2 1",
    ("audit_log", "ix_audit_guild"): "3132 501 1",
    ("audit_log", "ix_audit_target"): "2925 501 1 1",
    ("guild_days", "guild_days"): "183 61 1",
    ("jobs", "ix_jobs_active"): "6 1",
    ("jobs", "ix_jobs_done"): "990622 1",
    ("jobs", "ix_jobs_guild_active"): "6 6 1",
    ("jobs", "ix_jobs_guild_kept"): "1069237 1001 1",
    ("jobs", "ix_jobs_member"): "1488843 1001 251 1",
    ("jobs", "ix_jobs_parent"): "1170876 3",
    ("jobs", "ix_jobs_queued"): "6 1 1",
    ("jobs", "ix_jobs_user_started"): "1502820 1001 1",
    ("jobs", "ux_jobs_trace"): "801900 1",
    ("ledger", None): "1000006",
    ("ledger", "ix_ledger_committed"): "966600 1001 667 1 1",
    ("ledger", "ix_ledger_reserved"): "6 6 1 1",
    ("member_days", "member_days"): "852480 1001 49 1",
    ("member_settings", "member_settings"): "2130 530 1",
    ("member_week_spend", "ix_member_week_spend_top"): "586530 1001 1001 38 1",
    ("member_week_spend", "member_week_spend"): "515200 1001 1001 1",
}
EXACT_STATS = {  # a full ANALYZE
    ("audit_log", "ix_audit_actor"): "3000 1000 2 1",
    ("audit_log", "ix_audit_guild"): "3000 1000 1",
    ("audit_log", "ix_audit_target"): "3000 1000 1 1",
    ("guild_days", "guild_days"): "183 61 1",
    ("jobs", "ix_jobs_active"): "6 1",
    ("jobs", "ix_jobs_done"): "899991 1",
    ("jobs", "ix_jobs_guild_active"): "6 6 1",
    ("jobs", "ix_jobs_guild_kept"): "898172 299391 1",
    ("jobs", "ix_jobs_member"): "1000006 333336 11 1",
    ("jobs", "ix_jobs_parent"): "1000006 14",
    ("jobs", "ix_jobs_queued"): "6 1 1",
    ("jobs", "ix_jobs_user_started"): "1000006 11 1",
    ("jobs", "ux_jobs_trace"): "970027 1",
    ("ledger", None): "1000006",
    ("ledger", "ix_ledger_committed"): "898172 299391 4909 2 1",
    ("ledger", "ix_ledger_reserved"): "6 6 1 1",
    ("member_days", "member_days"): "815411 271804 9 1",
    ("member_settings", "member_settings"): "2000 667 1",
    ("member_week_spend", "ix_member_week_spend_top"): "547744 182582 18259 312 1",
    ("member_week_spend", "member_week_spend"): "547744 182582 18259 1",
}
STATISTICS = {"no statistics": None, "sampled statistics": SAMPLED_STATS, "exact": EXACT_STATS}

_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA)\b", re.IGNORECASE)
_SOURCE = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", re.IGNORECASE)
_NOT_ALIAS = {"where", "left", "inner", "cross", "join", "on", "order", "group", "limit", "set"}
_STEP = re.compile(
    r"^(?P<op>SCAN|SEARCH) (?P<name>\w+)"
    r"(?: USING (?:COVERING )?INDEX (?P<index>\w+)(?: \((?P<terms>[^)]*)\))?)?"
)


@dataclass(frozen=True)
class Probe:
    name: str
    run: Callable[[Store], Awaitable[object]]
    member: bool = False  # reads one member's jobs: must go through user_id
    ordered: bool = False  # a limited list: must walk an index in order, not sort every row


@dataclass(frozen=True)
class Schema:
    tables: frozenset[str]
    partial: dict[str, bool]  # index name -> has a WHERE


class Reporter:
    async def show(self, update: JobUpdate) -> StatusTarget | None:
        return None


async def start_runner(store: Store) -> None:
    """What start-up runs: JobRunner.start (stats, unfinished jobs, pending deliveries) and
    the dispatcher's first passes, then the stored command-sync hash."""
    async with aiohttp.ClientSession() as session:
        # Never reached: every unfinished job waits for a retry later.
        pixverse = PixVerseClient(session, base_url="http://127.0.0.1:9", api_key="unused")
        runner = JobRunner(store, pixverse, Reporter(), FAST_RUNNER)
        await runner.start()
        await asyncio.sleep(4 * FAST_RUNNER.idle_check)
        await runner.stop()
    await store.db.get_meta(SYNC_HASH_KEY)


async def jobs_command(store: Store) -> None:
    await store.jobs.count_for_user(GUILD, ALICE)
    await store.jobs.list_for_user(GUILD, ALICE, limit=PAGE_SIZE, offset=0)


async def extend_autocomplete(store: Store) -> None:
    for typed in ("", "lighthouse", "1"):
        await store.jobs.finished_for_user(GUILD, ALICE, typed, limit=25)


async def mod_autocompletes(store: Store) -> None:
    for typed in ("", "lighthouse", "1"):
        await store.moderation.unfinished_jobs(GUILD, typed)
        await store.moderation.finished_jobs(GUILD, typed)


PATHS = [
    Probe("start-up", start_runner),
    Probe("/jobs", jobs_command, member=True, ordered=True),
    Probe(
        "/quota",
        lambda store: store.ledger.quota(GUILD, ALICE, role_ids=(ROLE,)),
        member=True,
    ),
    Probe("/quota-admin top day", lambda store: store.admin.top(GUILD, "day", limit=10)),
    Probe(
        "/quota-admin top week",
        lambda store: store.admin.top(GUILD, "week", limit=10),
        ordered=True,
    ),
    Probe("/extend job autocomplete", extend_autocomplete, member=True, ordered=True),
    Probe("/mod cancel|remove job autocomplete", mod_autocompletes, ordered=True),
    # Every Prometheus scrape (METRICS_PORT), on the event loop's thread.
    Probe("metrics scrape", lambda store: store.jobs.unfinished_counts()),
]


async def populate(store: Store, clock: FakeClock) -> None:
    """A little of everything the big database has: finished, failed, cancelled and removed
    jobs over several days in two servers, audit rows, unfinished jobs waiting for a retry,
    and one failed job whose final status is still to be delivered."""
    finished = []
    for day in range(4):
        for user, guild in ((ALICE, GUILD), (BOB, GUILD), (ALICE, OTHER_GUILD)):
            done = await create(store, user, guild_id=guild, prompt=f"a lighthouse, day {day}")
            await store.jobs.transition(done.id, "queued", "submitted", pixverse_video_id=day)
            await store.jobs.finish_done(done.id, f"https://example.invalid/{done.id}.mp4")
            failed = await create(store, user, guild_id=guild, prompt="a storm")
            await store.jobs.finish_failed(failed.id, "PixVerse failed")
            cancelled = await create(store, user, guild_id=guild, prompt="a fox")
            await store.jobs.cancel(cancelled.id, by_user_id=user)
            finished += [done.id, failed.id, cancelled.id]
        clock.advance(days=1)
    await store.jobs.remove_result(done.id, actor_id=MOD, reason="rules")
    await store.admin.grant(GUILD, MOD, ALICE, 50)
    for job_id in finished:
        if job_id != failed.id:
            await store.jobs.delivered(job_id)
    for user in (ALICE, BOB):
        waiting = await create(store, user, prompt="waiting for a slot")
        await store.jobs.set_fields(waiting.id, next_attempt_at=clock.now + timedelta(hours=1))


async def use_statistics(store: Store, stats: dict[tuple[str, str | None], str] | None) -> None:
    if stats is None:
        return

    def load(conn):
        conn.execute("ANALYZE")  # creates sqlite_stat1
        conn.execute("DELETE FROM sqlite_stat1")
        conn.executemany(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
            [(table, index, stat) for (table, index), stat in stats.items()],
        )
        conn.execute("ANALYZE sqlite_master")  # the planner reloads them

    await store.db.write(load)


async def trace(store: Store, path: Probe) -> list[str]:
    statements: list[str] = []
    await store.db.read(lambda conn: conn.set_trace_callback(statements.append))
    try:
        await path.run(store)
    finally:
        await store.db.read(lambda conn: conn.set_trace_callback(None))
    return [s for s in dict.fromkeys(statements) if not _CONTROL.match(s)]


def problems(sql: str, plan: list[str], schema: Schema, probe: Probe) -> list[str]:
    """What in ``plan`` (the EXPLAIN QUERY PLAN of ``sql``) reads more than ``probe`` needs."""
    names = {table: table for table in schema.tables}
    for table, alias in _SOURCE.findall(sql):
        if table in schema.tables and alias and alias.lower() not in _NOT_ALIAS:
            names[alias] = table
    found = []
    for step in plan:
        if probe.ordered and "TEMP B-TREE FOR ORDER BY" in step:
            found.append(f"sorts every matching row: {step}")
        match = _STEP.match(step)
        if match is None or match["name"] not in names:
            continue  # a constant row, a subquery, json_each, ...
        table, index, terms = names[match["name"]], match["index"], match["terms"] or ""
        if index is not None and schema.partial[index]:
            continue  # bounded by what the index keeps
        if match["op"] == "SCAN":
            found.append(f"reads all of {table}: {step}")
        elif index is not None and terms == "guild_id=?":
            found.append(f"reads a whole server's {table}: {step}")
        if probe.member and table == "jobs" and index is not None and "user_id=" not in terms:
            found.append(f"reaches the member's jobs without user_id: {step}")
    return found


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock):
    async with open_store(tmp_path, clock) as opened:
        await populate(opened, clock)
        yield opened


@pytest.mark.parametrize("stats", list(STATISTICS), ids=list(STATISTICS))
@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
async def test_path_reads_only_what_it_needs(store: Store, path: Probe, stats: str) -> None:
    await use_statistics(store, STATISTICS[stats])
    statements = await trace(store, path)
    assert statements, f"{path.name} ran no SQL: the trace missed it"

    def explain(conn):
        tables = frozenset(
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
        partial = {
            name: " WHERE " in sql.upper()
            for name, sql in conn.execute(
                "SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'index'"
            )
        }
        plans = {s: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + s)] for s in statements}
        return Schema(tables, partial), plans

    schema, plans = await store.db.read(explain)
    report = {
        sql: found for sql, plan in plans.items() if (found := problems(sql, plan, schema, path))
    }
    assert not report, "\n\n".join(
        f"{sql}\n  " + "\n  ".join([*found, "plan:", *plans[sql]]) for sql, found in report.items()
    )


def test_the_checker_reports_what_the_paths_must_not_do() -> None:
    schema = Schema(
        frozenset({"jobs", "ledger", "one"}),
        {"ix_jobs_member": False, "ix_jobs_active": True, "ix_ledger_committed": True},
    )
    plain = Probe("any", jobs_command)
    member = Probe("member", jobs_command, member=True, ordered=True)
    assert problems("SELECT * FROM jobs", ["SCAN jobs"], schema, plain)
    assert problems("SELECT 1 FROM ledger AS l", ["SCAN l"], schema, plain)
    full_index = ["SCAN jobs USING COVERING INDEX ix_jobs_member"]
    assert problems("SELECT id FROM jobs ORDER BY guild_id", full_index, schema, plain)
    partial = ["SCAN j USING INDEX ix_jobs_active"]
    assert not problems("SELECT * FROM jobs AS j", partial, schema, plain)
    server = ["SEARCH jobs USING INDEX ix_jobs_member (guild_id=?)", "USE TEMP B-TREE FOR ORDER BY"]
    assert len(problems("SELECT * FROM jobs", server, schema, member)) == 3
    own = ["SEARCH jobs USING INDEX ix_jobs_member (guild_id=? AND user_id=?)"]
    assert not problems("SELECT * FROM jobs", own, schema, member)
    by_id = ["SEARCH jobs USING INTEGER PRIMARY KEY (rowid=?)"]
    assert not problems("UPDATE jobs SET state = 'done' WHERE id = 1", by_id, schema, member)
    assert not problems("SELECT 1 FROM (SELECT 1) AS one", ["SCAN CONSTANT ROW"], schema, plain)
