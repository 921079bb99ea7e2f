"""Ledger benchmark: reserve → commit cycles through the real JobStore path.

Each cycle is what a job does to the ledger: ``JobStore.create`` (checks + job row +
reservation, one transaction) then ``JobStore.finish_done`` (state done + commit, one
transaction), on a temporary WAL database file, for 1,000 members of one server.

Two shapes, because of Little's law: with C closed-loop workers each waiting for its previous
cycle, latency = C / throughput, so "1,000 members hammering at once" in a closed loop can
only show capacity, not the latency a member sees.

(a) capacity: closed loop with N concurrent workers, cycles/s;
(b) latency: open loop, arrivals scheduled at a fixed rate (default 3,000/s) over the 1,000
    members; latency is measured from each cycle's *scheduled* arrival to its commit, so a
    backlog shows up in the figures instead of silently slowing the arrivals.

Each run is on SQLite (a temporary WAL file) and on PostgreSQL (a throwaway server started
by tests/pgserver.py, or ``--database-url``), one after the other in the same run.

    python bench/ledger.py [--rate 3000] [--seconds 5] [--workers 50,1000] [--server-cap]
                           [--engine sqlite|postgres|both] [--database-url URL] [--pg-rate 150]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bot.pixverse.rules import Quality  # noqa: E402
from bot.store import JobParams, Limits, NewJob, Store  # noqa: E402

GUILD = 1
MEMBERS = 1_000
DAILY = 1_000_000_000  # nobody runs out: the benchmark measures the path, not refusals
PARAMS = JobParams(prompt="a cat surfing", model="v4.5", quality=Quality.P540, duration=5)


async def cycle(store: Store, member: int) -> None:
    job = await store.jobs.create(
        NewJob(guild_id=GUILD, channel_id=10, user_id=1_000 + member, params=PARAMS),
        role_ids=(),
    )
    if not await store.jobs.finish_done(job.id, "https://example.invalid/v.mp4"):
        raise RuntimeError(f"job {job.id} was not committed")


def percentile(sorted_ms: list[float], p: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms)) - 1))
    return sorted_ms[index]


def describe(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    return (
        f"p50 {percentile(ms, 50):7.2f} ms  p95 {percentile(ms, 95):7.2f} ms  "
        f"p99 {percentile(ms, 99):7.2f} ms  max {ms[-1]:7.2f} ms  "
        f"(mean {statistics.fmean(ms):.2f} ms)"
    )


async def closed_loop(store: Store, workers: int, seconds: float) -> None:
    latencies: list[float] = []
    counter = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < deadline:
            member = counter % MEMBERS
            counter += 1
            start = time.perf_counter()
            await cycle(store, member)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - began
    print(
        f"  closed loop, {workers:5d} workers: {len(latencies) / elapsed:8.0f} cycles/s"
        f"  ({len(latencies)} cycles in {elapsed:.1f} s)"
    )
    print(f"      latency {describe(latencies)}")


async def open_loop(store: Store, rate: float, seconds: float) -> None:
    total = int(rate * seconds)
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def one(member: int, scheduled: float) -> None:
        try:
            await cycle(store, member)
        except Exception as exc:  # counted and reported, not swallowed
            failures.append(exc)
            return
        latencies.append(time.perf_counter() - scheduled)

    began = time.perf_counter()
    launched = 0
    while launched < total:
        now = time.perf_counter()
        due = min(total, int((now - began) * rate) + 1)
        while launched < due:
            scheduled = began + launched / rate
            task = asyncio.create_task(one(launched % MEMBERS, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            launched += 1
        await asyncio.sleep(max(0.0, began + launched / rate - time.perf_counter()))
    while tasks:
        await asyncio.gather(*list(tasks))
    elapsed = time.perf_counter() - began
    print(
        f"  open loop at {rate:.0f}/s offered: {len(latencies) / elapsed:8.0f} cycles/s achieved"
        f"  ({len(latencies)} cycles in {elapsed:.2f} s, {len(failures)} failed)"
    )
    print(f"      latency {describe(latencies)}")
    if failures:
        print(f"      first failure: {failures[0]!r}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3000.0, help="open-loop cycles/s")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--workers", default="50,1000", help="closed-loop concurrencies")
    parser.add_argument(
        "--server-cap",
        action="store_true",
        help="set a (huge) server cap so every reserve "
        "also sums the server's usage and reservations",
    )
    parser.add_argument(
        "--pg-rate",
        type=float,
        default=150.0,
        help="open-loop cycles/s on PostgreSQL (each statement is a round trip to the server)",
    )
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--database-url", default=None, help="an empty PostgreSQL database to use instead"
    )
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {MEMBERS} members" + (", server cap on" if args.server_cap else "")
    )
    if args.engine in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            print("SQLite (WAL file):")
            await run(Path(folder) / "bench.sqlite3", args)
    if args.engine in ("postgres", "both"):
        if args.database_url:
            print("PostgreSQL (--database-url):")
            await run(args.database_url, args, rate=args.pg_rate)
            return
        from pgserver import PgServer

        server = PgServer.start()
        try:
            print(f"PostgreSQL (throwaway server, fsync off, port {server.port}):")
            await run(server.create_database(), args, rate=args.pg_rate)
        finally:
            server.stop()


async def run(target: Path | str, args: argparse.Namespace, *, rate: float | None = None) -> None:
    limits = Limits(daily_credits=DAILY, max_jobs_per_user=MEMBERS)
    store = await Store.open(target, limits=limits)
    try:
        if args.server_cap:
            await store.admin.set_server_cap(GUILD, 1, 999_999_999)
        await asyncio.gather(*(cycle(store, m) for m in range(MEMBERS)))  # warm up
        for workers in (int(n) for n in args.workers.split(",") if n):
            await closed_loop(store, workers, args.seconds)
        await open_loop(store, rate or args.rate, args.seconds)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
