"""Failover: two bot processes on one PostgreSQL, one of them SIGKILLed in the middle of a run.

In this process: a throwaway PostgreSQL server (tests/pgserver.py), the PixVerse simulator
(generations of a few seconds, a few failing with status 8, signed result webhooks of which
some are lost) and the fake Discord with two shards and guilds on each. Two real
``python -m bot`` processes share the database, each running one shard (``SHARD_COUNT=2``,
``SHARD_IDS=0`` / ``1``) with the same ``MAX_ACTIVE_JOBS`` and a short ``JOB_LEASE_SECONDS``;
PixVerse's webhooks reach process 0 only, so process 0 also hears of jobs it does not run
(and ignores them: polling finishes every job).

Members of the guilds on both shards send ``/video``; once every command is answered and
jobs are running on both processes, short hangs are queued on PixVerse's upload, generate
and video-download routes so that process 1 holds jobs in every state (uploading,
submitted, generating, finished but not yet shown), and process 1 is SIGKILLed. Process 0
takes over its jobs once their leases lapse and finishes everything; it is then stopped
with SIGTERM. The soak's invariants (bench/soak.py) are checked from outside, on the
database, the simulator's records and the fake Discord's messages:

1. every job is final (done / failed) and delivered; 2. its status message shows that;
3. credits: each member's used credits are what PixVerse charged for their done jobs, each
   done job is committed in the ledger, no other job is, nothing is left reserved;
4. no generation submitted twice: each PixVerse video belongs to one job by its Ai-trace-id;
5. each result delivered once;

and also that PixVerse never had more than ``MAX_ACTIVE_JOBS`` generating at once (the
simulator allows three times as many, so the bot's own bot-wide limit is what holds it), and
that every job the killed process held was picked up and finished by the other.

Measured: the failover time of each job process 1 held when it died, from the SIGKILL to
process 0 owning it (pick-up) and to its final state shown on Discord (finish), read from the
database every 0.1 s.

    .venv/bin/python bench/failover.py [--jobs 100] [--members 20] [--max-active 10]
        [--lease 6] [--gen-time-range 2:5] [--rate 5] [--seed 1] [--no-webhooks] [--keep]

Prints the figures and ``violations: N`` followed by each; the exit code is 1 when N > 0.
With violations (or ``--keep``) the work folder (each process's ``bot.log``) is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))

import soak  # noqa: E402
from fakediscord import FakeDiscord, FakeDiscordError, InteractionHandle, child_env  # noqa: E402
from pgserver import PgServer  # noqa: E402

from bot.simulator import Simulator, SimulatorConfig  # noqa: E402

log = logging.getLogger("failover")

SHARDS = 2
SURVIVOR, VICTIM = 0, 1
RUNNING = ("uploading", "submitted", "generating")
HELD_STATES = (*RUNNING, "delivering")
CONCURRENCY_LIMIT = 500044


@dataclass
class FailPlan(soak.Plan):
    jobs: int = 100
    members: int = 20
    guilds: int = 4  # split evenly over the two shards, one channel each
    max_active: int = 10
    lease: float = 6.0  # JOB_LEASE_SECONDS
    gen_range: tuple[float, float] = (2.0, 5.0)
    rate: float = 5.0  # commands per second
    seed: int = 1
    failure_rate: float = 0.05
    webhooks: bool = True
    webhook_loss_rate: float = 0.25
    kill_wait: float = 20.0  # at most this long for process 1 to hold jobs in every state
    duration: float = 600.0  # the whole run's bound
    drain: float = 240.0  # at most this long for process 0 to finish after the kill
    keep: bool = False


@dataclass
class FailReport(soak.Report):
    kill_at: float = 0.0  # seconds into the run
    held: dict[int, str] = field(default_factory=dict)  # job -> state, when process 1 died
    queued_at_kill: int = 0
    pickup: dict[int, float] = field(default_factory=dict)  # job -> seconds after the kill
    finish: dict[int, float] = field(default_factory=dict)
    took_over_lines: int = 0  # "Took over job" lines in process 0's log
    peak_generating: int = 0
    busy_answers: int = 0  # PixVerse's 500044 (concurrency limit) answers
    generate_requests: int = 0
    trace_ids: int = 0
    resent: int = 0  # trace ids sent more than once (PixVerse replays the first answer)


@dataclass
class Process:
    index: int
    work: Path
    process: asyncio.subprocess.Process | None = None
    owner: str | None = None  # its name in the database (jobs.owner, runners.id)
    stopped: bool = False  # killed or terminated on purpose

    @property
    def log_path(self) -> Path:
        return self.work / "bot.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Failover(soak.Invariants):
    def __init__(self, plan: FailPlan, work: Path, database_url: str) -> None:
        self.plan = plan
        self.work = work
        self.url = database_url
        self.report = FailReport(plan)
        self.rng = random.Random(plan.seed)
        self.hook_port = soak.free_port() if plan.webhooks else None
        self.sim = Simulator(
            SimulatorConfig(
                gen_time_range=plan.gen_range,
                # More than the bot may use: the bot's own limit is what the peak shows.
                max_concurrent=plan.max_active * 3,
                failure_rate=plan.failure_rate,
                seed=plan.seed,
                balance=10**9,
                webhook_url=f"http://127.0.0.1:{self.hook_port}/" if self.hook_port else None,
                webhook_secret=secrets.token_urlsafe(24) if self.hook_port else None,
                webhook_loss_rate=plan.webhook_loss_rate,
            )
        )
        self.fake = FakeDiscord(enforce_rate_limits=True, shards=SHARDS)
        self.handles: list[tuple[str, InteractionHandle]] = []
        self.channels: list[Any] = []
        self.members: list[tuple[Any, Any]] = []  # (user, channel)
        self.procs = [Process(i, work / f"process-{i}") for i in range(SHARDS)]
        self.image = soak.png()
        self.db: asyncpg.Connection | None = None
        self.started = 0.0

    # -- the bot processes -----------------------------------------------------------------

    def env(self, proc: Process) -> dict[str, str]:
        hooks: dict[str, str] = {}
        if self.hook_port is not None and proc.index == SURVIVOR:
            assert self.sim.config.webhook_secret is not None
            hooks = {
                "PIXVERSE_WEBHOOK_SECRET": self.sim.config.webhook_secret,
                "WEBHOOK_PORT": str(self.hook_port),
                "WEBHOOK_HOST": "127.0.0.1",
            }
        return child_env(
            self.fake,
            proc.work,
            code=ROOT,
            DATABASE_URL=self.url,
            SHARD_COUNT=str(SHARDS),
            SHARD_IDS=str(proc.index),
            JOB_LEASE_SECONDS=f"{self.plan.lease:g}",
            PIXVERSE_BASE_URL=self.sim.base_url,
            PIXVERSE_API_KEY="failover-key",
            MAX_ACTIVE_JOBS=str(self.plan.max_active),
            MAX_JOBS_PER_USER="50",
            DAILY_CREDITS="10000000",
            PIXVERSE_REQUESTS_PER_SECOND="50",
            COMMAND_COOLDOWN_SECONDS="0",
            MODERATION_STRIKES="0",
            LOG_LEVEL="INFO",
            **hooks,
        )

    async def start(self, proc: Process) -> None:
        proc.work.mkdir(parents=True, exist_ok=True)
        with proc.log_path.open("ab") as out:
            proc.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=proc.work,
                env=self.env(proc),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def ready(self, proc: Process) -> None:
        """Connected (its shard's guilds arrived), the commands synced, and named in the
        database's runners table."""
        process = proc.process
        assert process is not None and self.db is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(
                    f"process {proc.index} exited with code {process.returncode} at start; "
                    f"see {proc.log_path}"
                )
            if proc.owner is None:
                with contextlib.suppress(asyncpg.UndefinedTableError):  # not migrated yet
                    proc.owner = await self.db.fetchval(
                        "SELECT id FROM runners WHERE id LIKE $1", f"%:{process.pid}:%"
                    )
            if proc.owner and "Connected as" in proc.log_text() and self.fake.synced_commands():
                log.info("process %d ready (pid %d, shard %d)", proc.index, process.pid, proc.index)
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"process {proc.index} was not ready 90 s after its start")

    async def kill(self, proc: Process) -> None:
        process = proc.process
        assert process is not None
        proc.stopped = True
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), timeout=10)

    async def terminate(self, proc: Process) -> None:
        """SIGTERM: the contract is a clean exit (code 0) within 10 seconds."""
        process = proc.process
        if process is None or process.returncode is not None:
            return
        proc.stopped = True
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            self.report.violations.append(f"process {proc.index} ran on 10 s after SIGTERM")
            process.kill()
            await process.wait()
            return
        if code != 0:
            self.report.violations.append(f"process {proc.index} exited with {code} on SIGTERM")

    def crashed(self) -> list[str]:
        out = []
        for proc in self.procs:
            process = proc.process
            if process is None or process.returncode is None or proc.stopped:
                continue
            out.append(f"process {proc.index} exited by itself (code {process.returncode})")
        return out

    # -- traffic ---------------------------------------------------------------------------

    async def send(self, index: int) -> None:
        user, channel = self.members[index % len(self.members)]
        quality, duration = soak.COMBOS[self.rng.randrange(len(soak.COMBOS))]
        self.report.commands["video"] += 1
        try:
            handle = await self.fake.invoke(
                "video",
                user=user,
                channel=channel,
                options={
                    "prompt": f"failover {index}: a lighthouse in a storm",
                    "quality": quality,
                    "duration": duration,
                },
                attachments={"image": (f"in{index}.png", self.image, "image/png")},
                timeout=20,
            )
            await handle.response(timeout=20)
        except (FakeDiscordError, TimeoutError) as exc:
            self.report.answers["not dispatched"] += 1
            log.warning("command %d not answered: %s", index, exc)
            return
        self.handles.append(("video", handle))

    async def traffic(self) -> None:
        tasks = []
        for index in range(self.plan.jobs):
            tasks.append(asyncio.create_task(self.send(index)))
            await asyncio.sleep(soak.rng_gap(self.rng, self.plan.rate))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        log.info("traffic over: %d commands sent", len(tasks))

    # -- the kill --------------------------------------------------------------------------

    async def held_by(self, owner: str) -> dict[int, str]:
        """The jobs ``owner`` holds, by state (a finished job not yet shown: delivering)."""
        assert self.db is not None
        rows = await self.db.fetch(
            "SELECT id, state, delivery_since FROM jobs WHERE owner = $1"
            " AND (state = ANY($2::text[]) OR delivery_since IS NOT NULL)",
            owner,
            list(RUNNING),
        )
        return {
            row["id"]: row["state"] if row["delivery_since"] is None else "delivering"
            for row in rows
        }

    def slow_down(self, missing: set[str]) -> None:
        """Short hangs on PixVerse's routes, so that jobs linger in the states still missing
        from what process 1 holds (whichever process meets them)."""
        pending = {item["route"] for item in self.sim.state.faults.pending()}
        routes = {"uploading": "image_upload", "submitted": "img_generate", "delivering": "media"}
        for state, route in routes.items():
            if state in missing and route not in pending:
                self.sim.inject_fault(route, "hang", count=2, seconds=2.5)

    async def kill_victim(self) -> None:
        """SIGKILL process 1 once it holds jobs in every state (or after ``kill_wait``)."""
        victim = self.procs[VICTIM]
        assert victim.owner is not None
        deadline = time.monotonic() + self.plan.kill_wait
        held: dict[int, str] = {}
        while time.monotonic() < deadline:
            held = await self.held_by(victim.owner)
            missing = set(HELD_STATES) - set(held.values())
            if not missing:
                break
            self.slow_down(missing)
            await asyncio.sleep(0.05)
        await self.kill(victim)
        kill_at = time.monotonic()
        self.report.kill_at = kill_at - self.started
        self.sim.clear_faults()
        # What it held when it died: its leases name it until another process takes over.
        self.report.held = await self.held_by(victim.owner)
        assert self.db is not None
        self.report.queued_at_kill = int(
            await self.db.fetchval("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
        )
        log.info(
            "SIGKILL of process 1 at %.1f s: it held %d jobs (%s)",
            self.report.kill_at,
            len(self.report.held),
            soak._counts(Counter(self.report.held.values())),
        )
        await self.follow(kill_at)

    async def follow(self, kill_at: float) -> None:
        """Until every job process 1 held is finished and shown: when each was picked up
        (its owner changed) and finished (final, delivered), in seconds after the kill."""
        report, victim = self.report, self.procs[VICTIM].owner
        assert self.db is not None
        ids = sorted(report.held)
        deadline = kill_at + self.plan.drain
        while ids and time.monotonic() < deadline:
            rows = await self.db.fetch(
                "SELECT id, owner, state, delivery_since FROM jobs WHERE id = ANY($1::bigint[])",
                ids,
            )
            now = time.monotonic() - kill_at
            for row in rows:
                job_id = row["id"]
                if job_id not in report.pickup and row["owner"] != victim:
                    report.pickup[job_id] = now
                final = row["state"] in soak.FINAL_STATES and row["delivery_since"] is None
                if final and job_id not in report.finish:
                    report.finish[job_id] = now
            ids = [job_id for job_id in ids if job_id not in report.finish]
            await asyncio.sleep(0.1)

    # -- draining --------------------------------------------------------------------------

    async def unsettled(self) -> int:
        assert self.db is not None
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM jobs WHERE state NOT IN ('done', 'failed', 'cancelled')"
                " OR delivery_since IS NOT NULL"
            )
        )

    def stale_messages(self) -> int:
        count = 0
        for channel in self.channels:
            for message in self.fake.store.by_channel.get(channel.id, []):
                parsed = None if message.deleted or message.ephemeral else soak.job_of(message)
                if parsed and parsed[1] not in soak.FINAL_STATES:
                    count += 1
        return count

    async def drain(self) -> None:
        deadline = min(self.started + self.plan.duration, time.monotonic() + self.plan.drain)
        last = 0.0
        while time.monotonic() < deadline:
            if self.crashed():
                return
            left, stale = await self.unsettled(), self.stale_messages()
            if left == 0 and stale == 0:
                await asyncio.sleep(2.0)  # a last edit may be on its way
                if await self.unsettled() == 0 and self.stale_messages() == 0:
                    return
            if time.monotonic() - last >= 15:
                last = time.monotonic()
                log.info("draining: %d jobs unsettled, %d messages not final", left, stale)
            await asyncio.sleep(0.5)
        self.report.notes.append("the drain ended at its bound with work still unsettled")

    # -- the whole run ---------------------------------------------------------------------

    def place(self) -> None:
        plan = self.plan
        for g in range(plan.guilds):
            guild = self.fake.add_guild(f"Failover {g}", shard=(g % SHARDS, SHARDS))
            self.channels.append(self.fake.add_channel(guild, "generate"))
        for i in range(plan.members):
            channel = self.channels[i % len(self.channels)]
            user = self.fake.add_user(f"member{i}")
            self.fake.add_member(channel.guild, user)
            self.members.append((user, channel))

    async def run(self) -> FailReport:
        await self.sim.start(host="127.0.0.1", port=0)
        await self.fake.start()
        self.db = await asyncpg.connect(self.url, timeout=10)
        self.started = time.monotonic()
        try:
            self.place()
            # The survivor first: it migrates the database and syncs the commands.
            for proc in self.procs:
                await self.start(proc)
                await self.ready(proc)
            await self.traffic()
            await self.kill_victim()
            await self.drain()
            await self.terminate(self.procs[SURVIVOR])
            self.report.elapsed = time.monotonic() - self.started
            self.report.violations.extend(self.crashed())
            await self.check()
        finally:
            for proc in self.procs:
                if proc.process is not None and proc.process.returncode is None:
                    proc.process.kill()
                    await proc.process.wait()
            await self.db.close()
            await self.sim.stop()
            await self.fake.stop()
        return self.report

    # -- the invariants --------------------------------------------------------------------

    async def check(self) -> None:
        assert self.db is not None
        jobs = {row["id"]: dict(row) for row in await self.db.fetch("SELECT * FROM jobs")}
        ledger = {row["job_id"]: dict(row) for row in await self.db.fetch("SELECT * FROM ledger")}
        used: Counter[tuple[int, int]] = Counter()
        for row in await self.db.fetch(
            "SELECT guild_id, user_id, SUM(used) AS used FROM member_days"
            " GROUP BY guild_id, user_id"
        ):
            used[(row["guild_id"], row["user_id"])] += int(row["used"])
        self.check_records(jobs, ledger, used)

        report, violations = self.report, self.report.violations
        # MAX_ACTIVE_JOBS holds across the two processes, as PixVerse counts.
        report.peak_generating = self.sim.peak_generating
        if report.peak_generating > self.plan.max_active:
            violations.append(
                f"PixVerse had {report.peak_generating} jobs generating at once; "
                f"MAX_ACTIVE_JOBS is {self.plan.max_active}"
            )
        requests = self.sim.generate_requests
        report.busy_answers = sum(1 for r in requests if r.err_code == CONCURRENCY_LIMIT)
        sent = Counter(r.trace_id for r in requests)
        report.generate_requests, report.trace_ids = len(requests), len(sent)
        report.resent = sum(1 for count in sent.values() if count > 1)
        # The killed process's jobs: each picked up and finished by the other.
        if not report.held:
            violations.append("process 1 held no job when it was killed: nothing failed over")
        for job_id, state in sorted(report.held.items()):
            if job_id not in report.pickup:
                violations.append(f"job {job_id} ({state} on process 1) was never taken over")
            elif job_id not in report.finish:
                violations.append(f"job {job_id} ({state} on process 1) was taken, not finished")
        if violations or self.plan.keep:
            self.dump(jobs)
        survivor = self.procs[SURVIVOR]
        log_text = survivor.log_text()
        report.took_over_lines = log_text.count("Took over job")
        if "Traceback" in log_text:
            report.notes.append(f"process 0's log has a traceback: {survivor.log_path}")

    def dump(self, jobs: dict[int, dict[str, Any]]) -> None:
        """Every job's row and its messages' states, with times from the start, into the
        work folder (``jobs.txt``), to read beside the processes' logs."""
        about: dict[int, list[Any]] = {}
        for channel in self.channels:
            for message in self.fake.store.by_channel.get(channel.id, []):
                parsed = soak.job_of(message)
                if parsed is not None:
                    about.setdefault(parsed[0], []).append(message)
        lines = [f"started at monotonic {self.started:.3f}; SIGKILL at +{self.report.kill_at:.3f}"]
        wall = time.time() - time.monotonic()
        for job_id, job in sorted(jobs.items()):
            stamps = " ".join(
                f"{name}={job[name] - wall - self.started:+.3f}"
                for name in ("created_at", "started_at", "submitted_at", "finished_at")
                if job.get(name) is not None
            )
            lines.append(f"job {job_id}: {job['state']} owner={job['owner']} {stamps}")
            for message in about.get(job_id, []):
                for snap in message.history:
                    title = str(snap.embeds[0].get("title", "")) if snap.embeds else ""
                    lines.append(
                        f"    msg {message.id} +{snap.at - self.started:.3f} {snap.source}"
                        f" {snap.route} {title!r}"
                    )
        (self.work / "jobs.txt").write_text("\n".join(lines) + "\n")


async def run_failover(plan: FailPlan, database_url: str) -> FailReport:
    folder = Path(tempfile.mkdtemp(prefix="pixbot-failover-"))
    run = Failover(plan, folder, database_url)
    try:
        report = await run.run()
    except BaseException:
        run.report.workdir = folder
        log.error("failover run aborted; work folder kept: %s", folder)
        raise
    if report.violations or plan.keep:
        report.workdir = folder
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return report


# -- the report ----------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {statistics.median(values):.1f} s, max {max(values):.1f} s"


def format_report(report: FailReport) -> list[str]:
    plan = report.plan
    assert isinstance(plan, FailPlan)
    held = Counter(report.held.values())
    lines = [
        f"failover: 2 bot processes on PostgreSQL (shards 0 and 1 of 2), seed {plan.seed}, "
        f"MAX_ACTIVE_JOBS={plan.max_active}, JOB_LEASE_SECONDS={plan.lease:g}, generation "
        f"{plan.gen_range[0]:g}-{plan.gen_range[1]:g} s, webhooks "
        + (f"to process 0 ({plan.webhook_loss_rate:.0%} lost)" if plan.webhooks else "off"),
        f"jobs: {report.jobs} in the database ({soak._counts(report.states)}); "
        f"commands: {sum(report.commands.values())}; answers: {soak._counts(report.answers)}",
        *(f"refused: {count} x {text!r}" for text, count in report.refusals.most_common()),
        f"members: {report.members_used} with jobs, of {plan.members}, in {plan.guilds} guilds",
        f"PixVerse outcomes: {soak._counts(report.outcomes)}",
        f"SIGKILL of process 1 at {report.kill_at:.1f} s: it held {len(report.held)} jobs "
        f"({', '.join(f'{s} {held[s]}' for s in HELD_STATES)}); {report.queued_at_kill} queued",
        f"failover pick-up (SIGKILL -> owned by process 0): {len(report.pickup)} of "
        f"{len(report.held)} jobs, {_spread(list(report.pickup.values()))}",
        f"failover finish (SIGKILL -> final and shown): {len(report.finish)} of "
        f"{len(report.held)} jobs, {_spread(list(report.finish.values()))}",
        f"'Took over job' lines in process 0's log: {report.took_over_lines}",
        f"PixVerse: at most {report.peak_generating} generating at once (MAX_ACTIVE_JOBS "
        f"{plan.max_active}); {report.busy_answers} concurrency-limit answers; "
        f"{report.generate_requests} generate requests for {report.trace_ids} trace ids "
        f"({report.resent} sent again, answered with the first video)",
        f"wall time: {report.elapsed:.0f} s",
    ]
    lines.extend(f"note: {note}" for note in report.notes)
    if report.workdir is not None:
        lines.append(f"work folder (process-0/bot.log, process-1/bot.log): {report.workdir}")
    lines.append(f"violations: {len(report.violations)}")
    lines.extend(f"  - {violation}" for violation in report.violations)
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--guilds", type=int, default=4, help="split over the two shards")
    parser.add_argument("--max-active", type=int, default=10, help="MAX_ACTIVE_JOBS")
    parser.add_argument("--lease", type=float, default=6.0, help="JOB_LEASE_SECONDS")
    parser.add_argument("--gen-time-range", default="2:5", help="LOW:HIGH seconds")
    parser.add_argument("--rate", type=float, default=5.0, help="commands per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-webhooks", action="store_true", help="polling alone")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    low, high = (float(x) for x in args.gen_time_range.split(":"))
    plan = FailPlan(
        jobs=args.jobs,
        members=args.members,
        guilds=args.guilds,
        max_active=args.max_active,
        lease=args.lease,
        gen_range=(low, high),
        rate=args.rate,
        seed=args.seed,
        webhooks=not args.no_webhooks,
        keep=args.keep,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  … %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    try:
        server = PgServer.start()
    except FileNotFoundError as missing:  # no PostgreSQL server binaries here
        print(missing, file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run_failover(plan, server.create_database()))
    finally:
        server.stop()
    for line in format_report(report):
        print(line)
    return 1 if report.violations else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
