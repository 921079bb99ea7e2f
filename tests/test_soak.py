"""The invariant soak (bench/soak.py), short: the real ``python -m bot`` process against the
fake Discord and the PixVerse simulator, with random faults on both and SIGKILL restarts.

Members come in every way the bot has (/video, /imagine, /transition, /extend with an upload
or a job, Re-roll, Extend and Sound on results, some with audio). Every accepted job must end
final, shown on Discord, charged to the member who started it exactly once for what was
delivered, submitted to PixVerse once, as asked, and delivered once. The full run (300 jobs,
5 restarts) is ``python bench/soak.py``; this one takes about a minute and a half.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import sqlite3
import sys
import time
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
    # The run exercised what it claims to: faults on both sides struck, every way in ran
    # (each command, each button, an uploaded clip, audio), and PixVerse's own failures
    # happened.
    assert report.struck.total() > 0, summary
    assert any(k.startswith("pixverse") and report.struck[k] for k in report.struck), summary
    assert any(k.startswith("discord") and report.struck[k] for k in report.struck), summary
    for kind in ("video", "text", "transition", "extend", "reroll", "sound"):
        assert report.kinds[kind] > 0, (kind, summary)
    assert report.kinds["extend of an upload"] > 0, summary
    assert report.kinds["with audio"] > 0, summary
    for way in soak.MIX:
        assert report.commands[way] > 0, (way, summary)
    assert report.states["done"] > 0, summary
    # Faults are queued on every PixVerse route the mix uses, and the client's timeout
    # really fired: a hang outlasting it struck and the bot logged the call timing out
    # (each such hang the bot outlived must end so, or it is a violation).
    assert {f"pixverse {route}" for route in soak.PIXVERSE_ROUTES} <= set(report.routes), summary
    assert any(hang.endswith(": timed out") for hang in report.long_hangs), summary
    assert report.timeouts.total() > 0, summary


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
        video_id, kind = db.execute(
            "SELECT pixverse_video_id, kind FROM jobs WHERE id = ?", (done[2],)
        ).fetchone()
        # Another kind than its command makes, and another member than the one who sent it.
        other_kind = "text" if kind == "video" else "video"
        db.execute(
            "UPDATE jobs SET kind = ?, user_id = user_id + 1 WHERE id = ?", (other_kind, done[2])
        )
        asked_video = db.execute(
            "SELECT pixverse_video_id FROM jobs WHERE id = ?", (done[3],)
        ).fetchone()[0]
    db.close()
    sim_jobs = run.sim.jobs
    again = dataclasses.replace(sim_jobs[video_id], video_id=video_id + 10**6)
    sim_jobs[again.video_id] = again
    stray = dataclasses.replace(again, video_id=video_id + 2 * 10**6, trace_id="nobody's")
    sim_jobs[stray.video_id] = stray
    # PixVerse made another duration than the job asked for.
    made = sim_jobs[asked_video]
    longer = dataclasses.replace(made.params, duration=made.params.duration + 1)
    sim_jobs[asked_video] = dataclasses.replace(made, params=longer)
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
    assert f"job {done[2]} (" in found and "but belongs to member" in found
    assert f"but is a {other_kind} job" in found
    assert f"job {done[3]} asked for" in found

    # A hang past the client's timeout, long ago, with the bot up and no timeout logged.
    report.violations.clear()
    run.hangs_struck.append((time.time() - 100, 5.0, "result", soak.CLIENT_TIMEOUT + 5))
    run.check_timeouts()
    assert report.violations == [
        f"a {soak.CLIENT_TIMEOUT + 5:g} s hang struck result at 5 s and the bot ran on past it, "
        f"yet no GET /video/result/ call timed out after {soak.CLIENT_TIMEOUT:g} s (a call "
        "without a timeout?)"
    ]
