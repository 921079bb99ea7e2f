"""The invariant soak (bench/soak.py), short: the real ``python -m bot`` process against the
fake Discord and the PixVerse simulator, with random faults on both and SIGKILL restarts.

Every accepted job must end final, shown on Discord, charged exactly once for what was
delivered, submitted to PixVerse once and delivered once. The full run (300 jobs, 5
restarts) is ``python bench/soak.py``; this one takes about a minute.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_soak():
    spec = importlib.util.spec_from_file_location("soak_bench", ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)
async def test_short_soak_keeps_every_invariant_through_faults_and_kills():
    soak = load_soak()
    plan = soak.Plan(
        jobs=40,
        members=10,
        channels=3,
        restarts=2,
        seed=9,
        duration=240.0,
        max_active=10,
        gen_range=(1.0, 3.0),
        rate=1.0,
        fault_every=0.5,
        drain=150.0,
    )
    report = await soak.run_soak(plan)
    summary = "\n".join(soak.format_report(report))

    assert report.violations == [], summary
    assert report.restarts == 2, summary
    assert report.jobs >= 40, summary
    # The run exercised what it claims to: faults on both sides struck, every job kind ran,
    # and PixVerse's own failures happened.
    assert report.struck.total() > 0, summary
    assert any(k.startswith("pixverse") and report.struck[k] for k in report.struck), summary
    assert any(k.startswith("discord") and report.struck[k] for k in report.struck), summary
    assert report.kinds["video"] > 0, summary
    assert report.kinds["extend"] + report.kinds["reroll"] > 0, summary
    assert report.states["done"] > 0, summary


async def test_soak_checks_catch_each_broken_invariant(tmp_path):
    """The soak's checks are not vacuous: a calm run passes, then each invariant, broken by
    hand in the database, the simulator's records or the fake Discord, is reported."""
    soak = load_soak()
    plan = soak.Plan(
        jobs=5,
        members=2,
        channels=1,
        restarts=0,
        duration=120.0,
        max_active=5,
        gen_range=(0.5, 1.0),
        rate=2.0,
        fault_every=0.0,
        failure_rate=0.0,
        moderation_share=0.0,
        drain=60.0,
        webhook_loss_rate=0.0,  # every result heard at once: a quick calm run
    )
    run = soak.Soak(plan, tmp_path)
    report = await run.run()
    assert report.violations == [], "\n".join(soak.format_report(report))
    done = sorted(job_id for job_id, _ in run.done_messages())
    assert len(done) >= 5

    with sqlite3.connect(run.db_path) as db:
        db.execute("UPDATE jobs SET state = 'generating' WHERE id = ?", (done[0],))
        db.execute("UPDATE ledger SET state = 'reserved' WHERE job_id = ?", (done[1],))
        owner = db.execute("SELECT user_id FROM jobs WHERE id = ?", (done[4],)).fetchone()[0]
        db.execute("UPDATE member_days SET used = used + 5 WHERE user_id = ?", (owner,))
        video_id = db.execute(
            "SELECT pixverse_video_id FROM jobs WHERE id = ?", (done[2],)
        ).fetchone()[0]
    db.close()
    sim_jobs = run.sim.jobs
    again = dataclasses.replace(sim_jobs[video_id], video_id=video_id + 10**6)
    sim_jobs[again.video_id] = again
    stray = dataclasses.replace(again, video_id=video_id + 2 * 10**6, trace_id="nobody's")
    sim_jobs[stray.video_id] = stray
    messages = {job_id: message for job_id, message in run.done_messages()}
    stale = messages[done[3]]
    title = {"title": f"Job #{done[3]} · ⏳ Queued"}
    stale.history.append(dataclasses.replace(stale.current, embeds=[title]))
    twice = copy.copy(messages[done[4]])
    twice.id = messages[done[4]].id + 1
    run.fake.store.by_channel[twice.channel.id].append(twice)

    report.violations.clear()
    run.check()
    found = "\n".join(report.violations)
    assert f"job {done[0]} (video) is not final: generating" in found
    assert f"job {done[1]} is done but its ledger row is reserved" in found
    assert f"credits still reserved for jobs [{done[1]}]" in found
    assert f"job {done[2]} was submitted to PixVerse 2 times" in found
    assert "belongs to no job's trace id" in found
    assert f"job {done[3]} is done; its status message {stale.id} shows" in found
    assert f"job {done[4]}'s video was delivered 2 times" in found
    assert f"member {owner}: used" in found
