"""Two bot processes on one PostgreSQL, one SIGKILLed mid-run (bench/failover.py, short).

Two real ``python -m bot`` processes share a throwaway PostgreSQL database, each running one
of two shards of the fake Discord, against one PixVerse simulator. Members of guilds on both
shards send 100 ``/video`` from 20 members; process 1 is SIGKILLed while it holds jobs, and
process 0 must take them over and finish everything: every job final and shown exactly once,
credits consistent, no generation submitted twice, ``MAX_ACTIVE_JOBS`` never exceeded at
PixVerse. The full benchmark with its figures is ``python bench/failover.py``.

It needs PostgreSQL's server binaries (the ``pg_server`` fixture): skipped without them,
failed under ``PIXBOT_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_failover():
    spec = importlib.util.spec_from_file_location("failover_bench", ROOT / "bench" / "failover.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(420)
async def test_two_processes_one_killed_every_job_still_ends_once(pg_server) -> None:
    failover = load_failover()
    plan = failover.FailPlan(
        jobs=100,
        members=20,
        guilds=4,
        max_active=10,
        lease=4.0,
        gen_range=(1.0, 3.0),
        rate=6.0,
        seed=3,
        kill_wait=20.0,
        duration=360.0,
        drain=200.0,
    )
    report = await failover.run_failover(plan, pg_server.create_database())
    summary = "\n".join(failover.format_report(report))

    assert report.violations == [], summary
    assert report.jobs == 100 and report.answers["accepted (public)"] == 100, summary
    assert report.members_used == 20, summary
    assert report.states["done"] > 0, summary
    # The killed process really held work, in several states, that the other finished.
    assert len(report.held) >= 2, summary
    assert len(set(report.held.values())) >= 2, summary
    assert set(report.finish) == set(report.held), summary
    assert report.took_over_lines >= len(report.held), summary
    # Taken over once the lease lapsed: no sooner than two thirds of a lease (it was renewed
    # a third of one before the kill), within a lease and a third (and some slack).
    assert all(plan.lease / 2 <= s <= plan.lease * 4 / 3 + 3 for s in report.pickup.values()), (
        summary
    )
    assert report.peak_generating <= plan.max_active, summary
