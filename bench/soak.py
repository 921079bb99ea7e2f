"""Invariant soak: hundreds of jobs through the real bot process, with faults everywhere.

In this process: the PixVerse simulator (short generations, some jobs failing with status 8,
prompts carrying the simulator's moderation marker ending in status 7, signed result webhooks
of which a quarter are lost, so polling is the fallback) and the fake Discord (Discord's rate
limits enforced). A child process runs the real ``python -m bot`` against both. Members in
several channels come in every way the bot has: ``/video``, ``/imagine`` (text alone; on v6
sometimes at a wide or tall ratio such as 21:9, a few seconds long), ``/transition`` (a first
and a last frame), ``/extend video:<an uploaded mp4>`` and ``/extend job:<their finished
job>``, some of them with ``audio:true``; and on finished results they press **Re-roll**,
**Extend** (its form) and, on a result without sound, **Sound** (its form, described or left
empty), charged to whoever presses. Meanwhile

- PixVerse faults are queued at random on its routes (image and media uploads, the five
  generate endpoints -- image, text, transition, extend, sound effect --, result, the video
  download): HTTP 5xx, 429 with Retry-After, dropped connections (served, answer lost), hangs
  shorter than the client's timeout and now and then one longer (so the client's timeout
  fires and the call is retried), ErrCode 500069 (high load), and finished videos whose URL
  answers 404 for a few seconds;
- Discord faults are injected on the routes a job's messages take (interaction webhook
  edits and followups, channel message edits and posts): 429 with retry_after, 5xx, dropped
  connections, some after the request was applied (the answer is lost, not the edit);
- the bot process is killed with SIGKILL at random moments and started again.

Then faults stop, the bot gets time to finish, it is stopped with SIGTERM, and the
invariants are checked from outside (its SQLite file, the fake Discord's messages, the
simulator's records):

1. every accepted job is final (done / failed / cancelled) and its delivery is not pending;
2. every job's status message shows its final state (done: the video attached or a link;
   failed: the failure) -- or, when that message is gone, a new message mentioning the owner
   does; and no message about a job shows anything else;
3. each member's used credits equal the sum of what PixVerse charged for their done jobs,
   each done job is committed in the ledger, no other job is, and nothing is reserved;
4. no job was submitted to PixVerse twice: every video PixVerse made belongs, by its
   Ai-trace-id, to exactly one job, and each job has at most one;
5. every result was delivered at most once (one message carries a job's video);
6. each job is what was asked, of whom it was asked: the job a command or a button press
   started belongs to that member (a Sound, Re-roll or Extend press to the presser, not the
   result's owner) and is of that kind from that source; and what PixVerse made for it is
   that kind (image, text, transition, extend, sound effect) with its model, quality,
   duration, audio and ratio, from the right video (an extension's or a sound's source is
   the parent job's video; an uploaded clip is a media id);
7. every call has a timeout: each hang longer than the client's timeout that the bot
   outlived (no SIGKILL or SIGTERM before the timeout had to fire) ended in that call's
   timeout, logged by the bot about that many seconds after the hang struck. Besides the
   random ones, such a hang is queued on the video download when the faults stop, for the
   jobs still finishing: no SIGKILL comes then, so its timeout must fire.

It prints the jobs (by kind), members, faults injected by kind and by route (and how many
struck), each long hang and what ended it, the client timeouts that fired (from the bot's
log), restarts, elapsed time and ``violations: N`` followed by each; the exit code is 1 when
N > 0.

    .venv/bin/python bench/soak.py [--jobs 300] [--members 40] [--restarts 5] [--seed 1]
                                   [--duration 900] [--no-webhooks] [--no-bad-media] [--keep]

The seed fixes the plan (who sends what, which faults, when the kills come); timing on a
busy machine still varies a run. With violations the work folder (database, ``bot.log``
with a marker at every start and kill) is kept and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import io
import json
import logging
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fakediscord import (  # noqa: E402
    FakeDiscord,
    FakeDiscordError,
    InteractionHandle,
    Message,
    child_env,
)
from fakediscord.models import walk_components  # noqa: E402

from bot.pixverse.client import PixVerseClient  # noqa: E402
from bot.simulator import Simulator, SimulatorConfig  # noqa: E402
from bot.simulator.media import sample_video  # noqa: E402
from bot.simulator.params import Kind as SimKind  # noqa: E402
from bot.simulator.state import DONE as SIM_DONE  # noqa: E402
from bot.simulator.state import MODERATED as SIM_MODERATED  # noqa: E402
from bot.simulator.state import MODERATION_MARKER  # noqa: E402
from bot.simulator.state import REFUNDED as SIM_REFUNDED  # noqa: E402

log = logging.getLogger("soak")

FINAL_STATES = ("done", "failed", "cancelled")
# What render.py shows in a status message's title for each state.
STATE_LABELS = {
    "queued": "⏳ Queued",
    "uploading": "📤 Uploading",
    "submitted": "📨 Submitted",
    "generating": "🎬 Generating",
    "done": "✅ Done",
    "failed": "❌ Failed",
    "cancelled": "🚫 Cancelled",
}
# One of the client's timeouts, as the bot logs it (the client's retry warning, or the
# runner's line when it was the last attempt): bot/pixverse/client.py's TransientError.
TIMEOUT_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d).*PixVerse did not answer (?P<what>.+?): "
    r"\w*Timeout\w*\b"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TITLE = re.compile(r"^Job #(?P<job>\d+) · (?P<state>.*)$", re.S)
VIDEO_NAME = re.compile(r"^pixbot-(\d+)\.mp4$")
# v4.5 (the default model): no 1080p with 8 s.
COMBOS: tuple[tuple[str, int], ...] = (
    ("360p", 5),
    ("360p", 8),
    ("540p", 5),
    ("540p", 8),
    ("720p", 5),
    ("1080p", 5),
)
# Paths after /api/v10, as the fake Discord matches them.
WEBHOOK_EDIT = r"^/webhooks/\d+/[^/]+/messages/[^/]+$"
FOLLOWUP = r"^/webhooks/\d+/[^/]+$"
CHANNEL_EDIT = r"^/channels/\d+/messages/\d+$"
CHANNEL_POST = r"^/channels/\d+/messages$"
DISCORD_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("PATCH", WEBHOOK_EDIT, "webhook edit"),
    ("POST", FOLLOWUP, "followup"),
    ("PATCH", CHANNEL_EDIT, "channel edit"),
    ("POST", CHANNEL_POST, "channel post"),
)
# PixVerse's routes (the simulator's names, bot/simulator/faults.py) faults are queued on, and
# how often each is picked: roughly as often as the mix uses it, so that faults do not pile up
# on a route few jobs take (more than the client's attempts in a row would fail a step).
PIXVERSE_ROUTE_WEIGHTS: dict[str, int] = {
    "image_upload": 2,  # /video, /transition (two a job)
    "media_upload": 1,  # /extend video
    "img_generate": 2,
    "text_generate": 1,  # /imagine
    "transition_generate": 1,
    "extend_generate": 1,
    "sound_effect_generate": 1,  # the Sound button
    "result": 2,
    "media": 2,  # the finished video's download
}
PIXVERSE_ROUTES = tuple(PIXVERSE_ROUTE_WEIGHTS)
# The client's timeouts under the soak's environment (no setting shortens them): an API call's
# total and a read's (uploads and downloads). A hang longer than both makes the timeout fire on
# any route; the soak's long hangs last this plus 3 to 10 s.
_CLIENT_DEFAULTS = inspect.signature(PixVerseClient.__init__).parameters
CLIENT_TIMEOUT: float = max(
    float(_CLIENT_DEFAULTS["timeout"].default), float(_CLIENT_DEFAULTS["read_timeout"].default)
)
LONG_HANG = f"pixverse hang past the client's {CLIENT_TIMEOUT:g} s timeout"
LONG_HANG_ROUTES = ("image_upload", "img_generate", "result", "media")
# What the bot's log calls each route's calls (the client's endpoint names).
ENDPOINTS = {
    "image_upload": "POST /image/upload",
    "media_upload": "POST /media/upload",
    "img_generate": "POST /video/img/generate",
    "text_generate": "POST /video/text/generate",
    "transition_generate": "POST /video/transition/generate",
    "extend_generate": "POST /video/extend/generate",
    "sound_effect_generate": "POST /video/sound_effect/generate",
    "result": "GET /video/result/",
    "media": "download",
}
# After a long hang's timeout the bot is given this long to log it.
TIMEOUT_GRACE = 8.0
# The ways in, with their weights in the mix; those needing a finished result (the buttons,
# /extend job) wait until one is on a channel. Weights are renormalised over the kinds
# possible at each command.
MIX: dict[str, float] = {
    "video": 0.28,
    "imagine": 0.14,
    "transition": 0.10,
    "extend video": 0.07,
    "extend job": 0.10,
    "reroll": 0.13,
    "extend button": 0.06,
    "sound": 0.12,
}
# The database kind each way in makes (a Re-roll's is "reroll" whatever its source's kind).
KIND_OF_COMMAND = {
    "video": "video",
    "imagine": "text",
    "transition": "transition",
    "extend video": "extend",
    "extend job": "extend",
    "reroll": "reroll",
    "extend button": "extend",
    "sound": "sound",
}
# /imagine on v6: the three ratios the older models lack, and a few short seconds (v6 prices
# by the second: 5/7 credits a second at 360p/540p, 2 more with audio).
V6_RATIOS = ("21:9", "2:3", "3:2", "16:9", "9:16")
OLD_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16")
SOUND_DESCRIPTIONS = ("rain on a tin roof", "", "distant thunder and gulls")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def png(size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 90, 20)).save(out, format=fmt)
    return out.getvalue()


# -- the plan and the report ---------------------------------------------------------------


@dataclass
class Plan:
    jobs: int = 300  # accepted jobs to reach
    members: int = 40
    channels: int = 6
    restarts: int = 5
    seed: int = 1
    duration: float = 900.0  # the whole run's bound, drain included
    max_active: int = 20
    gen_range: tuple[float, float] = (1.0, 4.0)
    rate: float = 3.0  # commands per second
    fault_every: float = 0.6  # mean seconds between injected faults; 0 = none
    failure_rate: float = 0.05  # share of PixVerse jobs ending in status 8
    moderation_share: float = 0.04  # share of /video prompts ending in status 7
    drain: float = 240.0  # at most this long for the bot to finish after the traffic
    # PixVerse's signed result webhooks, a share of them lost (polling is the fallback).
    webhooks: bool = True
    webhook_loss_rate: float = 0.25
    # Also let the result URL answer 200 with a body that is not a video, or half a video: the
    # bot checks the file's structure before attaching it (bot/jobs/mp4.py).
    bad_media: bool = True
    # Of the injected hangs, the share that outlasts the client's timeout (CLIENT_TIMEOUT):
    # the request is abandoned and retried (a generate with its trace id) while the first
    # one, still held, is served later.
    long_hang_share: float = 0.3
    audio_share: float = 0.15  # commands sent with audio:true
    keep: bool = False  # keep the work folder (database, bot logs) even without violations


@dataclass
class Report:
    plan: Plan
    commands: Counter[str] = field(default_factory=Counter)  # sent, by kind
    options: Counter[str] = field(default_factory=Counter)  # of those, with audio, v6 ratios
    answers: Counter[str] = field(default_factory=Counter)  # accepted / refused / none
    states: Counter[str] = field(default_factory=Counter)  # jobs in the database by state
    kinds: Counter[str] = field(default_factory=Counter)  # jobs in the database by kind
    faults: Counter[str] = field(default_factory=Counter)  # injected, by kind
    struck: Counter[str] = field(default_factory=Counter)  # of those, how many struck
    routes: Counter[str] = field(default_factory=Counter)  # injected, by route
    struck_routes: Counter[str] = field(default_factory=Counter)  # struck, by route
    # Each long hang that struck, and what ended it: the client's timeout, or a SIGKILL
    # first.
    long_hangs: list[str] = field(default_factory=list)
    # The client's timeouts that fired (the bot's retry warnings), by endpoint.
    timeouts: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # ephemeral answers, by text
    outcomes: Counter[str] = field(default_factory=Counter)  # PixVerse's terminal statuses
    restarts: int = 0
    members_used: int = 0
    elapsed: float = 0.0
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    workdir: Path | None = None

    @property
    def jobs(self) -> int:
        return sum(self.states.values())


# -- result URLs that 404 for a while ------------------------------------------------------


class MediaOutages:
    """Finished videos whose URL answers 404 for a few seconds, as a CDN that has not caught
    up. Wraps the simulator's ``served`` (this process owns the simulator): each armed outage
    attaches to the next video first asked for."""

    def __init__(self, sim: Simulator) -> None:
        state = sim.state
        self._served: Callable[[str], Any] = state.served
        state.served = self.served  # type: ignore[method-assign]
        self._armed: list[float] = []
        self._until: dict[str, float] = {}
        self._seen: set[str] = set()
        self.armed_total = 0
        self.struck_videos: set[str] = set()
        self.hits = 0

    def arm(self, seconds: float) -> None:
        self._armed.append(seconds)
        self.armed_total += 1

    def disarm(self) -> None:
        self._armed.clear()
        self._until.clear()

    def served(self, name: str) -> Any:
        now = time.monotonic()
        if name not in self._seen and name.endswith(".mp4"):
            self._seen.add(name)
            if self._armed:
                self._until[name] = now + self._armed.pop(0)
        if self._until.get(name, 0.0) > now:
            self.hits += 1
            self.struck_videos.add(name)
            return None
        return self._served(name)


# -- the invariants ------------------------------------------------------------------------


class Invariants:
    """The five invariants, checked on a run's records: the database's jobs, ledger rows and
    credits used per member (read by the caller from its engine), the simulator's jobs and
    the fake Discord's messages in ``channels``. bench/failover.py checks with it too."""

    report: Report
    handles: list[tuple[str, InteractionHandle]]
    sim: Simulator
    fake: FakeDiscord
    channels: list[Any]

    def check_records(
        self,
        jobs: dict[int, dict[str, Any]],
        ledger: dict[int, dict[str, Any]],
        used: Counter[tuple[int, int]],
    ) -> None:
        report = self.report
        violations = report.violations
        report.states = Counter(job["state"] for job in jobs.values())
        report.kinds = Counter(job["kind"] for job in jobs.values())
        report.answers.update(answer_of(handle) for _, handle in self.handles)
        for kind, handle in self.handles:
            first = handle.accepted
            if first is not None and first.ephemeral:
                report.refusals[f"{kind}: {(first.content or '')[:90]}"] += 1
        report.members_used = len({job["user_id"] for job in jobs.values()})

        # 4. PixVerse: each video belongs to exactly one job, each job has at most one.
        by_trace = {job["trace_id"]: job_id for job_id, job in jobs.items() if job["trace_id"]}
        videos_of: defaultdict[int, list[Any]] = defaultdict(list)
        for sim_job in self.sim.jobs.values():
            report.outcomes[outcome_name(sim_job.outcome)] += 1
            owner = by_trace.get(sim_job.trace_id)
            if owner is None:
                guess = [
                    job_id
                    for job_id, job in jobs.items()
                    if sim_job.params.prompt and sim_job.params.prompt == prompt_of(job)
                ]
                violations.append(
                    f"PixVerse video {sim_job.video_id} (trace {sim_job.trace_id}, prompt "
                    f"{sim_job.params.prompt[:40]!r}) belongs to no job's trace id: a second "
                    f"submission? jobs with that prompt: {guess}"
                )
                continue
            videos_of[owner].append(sim_job)
        for job_id, videos in videos_of.items():
            if len(videos) > 1:
                ids = [video.video_id for video in videos]
                violations.append(
                    f"job {job_id} was submitted to PixVerse {len(videos)} times: {ids}"
                )

        # Messages about each job, from the fake Discord.
        about: defaultdict[int, list[Message]] = defaultdict(list)
        for channel in self.channels:
            for message in self.fake.store.by_channel.get(channel.id, []):
                if message.deleted or message.ephemeral:
                    continue
                parsed = job_of(message)
                if parsed is not None:
                    about[parsed[0]].append(message)
        for job_id in sorted(set(about) - set(jobs)):
            violations.append(f"a message shows job #{job_id}, which the database does not have")

        spent: Counter[tuple[int, int]] = Counter()
        for job_id, job in sorted(jobs.items()):
            state = job["state"]
            videos = videos_of.get(job_id, [])
            # 1. final, and delivered.
            if state not in FINAL_STATES:
                violations.append(f"job {job_id} ({job['kind']}) is not final: {state}")
                continue
            if job["delivery_since"] is not None:
                violations.append(f"job {job_id} is {state} but its delivery is still pending")
            # 2. what Discord shows.
            violations.extend(self.check_messages(job, about.get(job_id, [])))
            # 3. credits.
            row = ledger.get(job_id)
            member = (job["guild_id"], job["user_id"])
            if state == "done":
                if len(videos) != 1:
                    violations.append(f"job {job_id} is done with {len(videos)} PixVerse videos")
                    continue
                video = videos[0]
                if job["pixverse_video_id"] != video.video_id:
                    violations.append(
                        f"job {job_id} records video {job['pixverse_video_id']}, PixVerse made "
                        f"{video.video_id} for its trace id"
                    )
                if self.sim.status(video.video_id) != SIM_DONE:
                    violations.append(f"job {job_id} is done but PixVerse's video is not")
                spent[member] += video.credits
                if row is None or row["state"] != "committed":
                    violations.append(
                        f"job {job_id} is done but its ledger row is "
                        f"{row['state'] if row else 'missing'}"
                    )
                elif row["amount"] != video.credits:
                    violations.append(
                        f"job {job_id}: ledger committed {row['amount']}, PixVerse charged "
                        f"{video.credits}"
                    )
            else:
                if row is not None and row["state"] in ("reserved", "committed"):
                    violations.append(f"job {job_id} is {state} but its credits are {row['state']}")
                for video in videos:
                    charged = video.outcome not in SIM_REFUNDED
                    if charged and self.sim.status(video.video_id) == SIM_DONE:
                        violations.append(
                            f"job {job_id} is {state}, yet PixVerse made and charged its video "
                            f"{video.video_id}"
                        )
        reserved = [job_id for job_id, row in ledger.items() if row["state"] == "reserved"]
        if reserved:
            violations.append(f"credits still reserved for jobs {reserved[:20]}")
        for member in sorted(set(used) | set(spent)):
            if used[member] != spent[member]:
                violations.append(
                    f"member {member[1]}: used {used[member]} credits, their done jobs cost "
                    f"{spent[member]}"
                )

    def check_messages(self, job: dict[str, Any], messages: list[Message]) -> list[str]:
        """What Discord shows for one final job: its status message (or, that gone, a new
        message mentioning the owner) in the final state; nothing showing another state;
        a done job's video on exactly one message."""
        job_id, state, owner = job["id"], job["state"], job["user_id"]
        problems: list[str] = []
        label = STATE_LABELS[state]
        status = None
        if job["status_message_id"] is not None:
            status = next((m for m in messages if m.id == job["status_message_id"]), None)
        if status is None:
            posted = [
                m for m in messages if owner in m.current.mention_user_ids and shows(m, label)
            ]
            if not posted:
                where = (
                    f"status message {job['status_message_id']} is gone"
                    if job["status_message_id"]
                    else "it has no status message"
                )
                problems.append(
                    f"job {job_id} is {state}; {where} and no message mentioning its owner "
                    "shows that"
                )
        elif not shows(status, label):
            problems.append(
                f"job {job_id} is {state}; its status message {status.id} shows "
                f"{title_of(status)!r}"
            )
        for message in messages:
            if not shows(message, label):
                problems.append(
                    f"job {job_id} is {state}; message {message.id} still shows "
                    f"{title_of(message)!r}"
                )
        if state == "done":
            results = [m for m in messages if has_result(m, job_id)]
            if len(results) > 1:
                problems.append(
                    f"job {job_id}'s video was delivered {len(results)} times "
                    f"(messages {[m.id for m in results]})"
                )
            for message in messages:
                if shows(message, label) and not has_result(message, job_id):
                    problems.append(
                        f"job {job_id} is done; message {message.id} has neither the video "
                        f"nor a link (it shows {describe(message)})"
                    )
        return problems


# -- the run -------------------------------------------------------------------------------


class Soak(Invariants):
    def __init__(self, plan: Plan, work: Path) -> None:
        self.plan = plan
        self.work = work
        self.report = Report(plan)
        self.rng = random.Random(plan.seed)
        self.hook_port = free_port() if plan.webhooks else None
        self.sim = Simulator(
            SimulatorConfig(
                gen_time_range=plan.gen_range,
                max_concurrent=plan.max_active,
                failure_rate=plan.failure_rate,
                seed=plan.seed,
                balance=10**9,
                webhook_url=f"http://127.0.0.1:{self.hook_port}/" if self.hook_port else None,
                webhook_secret=secrets.token_urlsafe(24) if self.hook_port else None,
                webhook_loss_rate=plan.webhook_loss_rate,
            )
        )
        self.fake = FakeDiscord(enforce_rate_limits=True)
        self.outages = MediaOutages(self.sim)
        self.watch_long_hangs()
        self.process: asyncio.subprocess.Process | None = None
        self.up = asyncio.Event()
        self.starts = 0
        self.expected_exit = False
        self.crashes: list[str] = []
        self.handles: list[tuple[str, InteractionHandle]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.pixverse_injected: Counter[tuple[str, str, str]] = Counter()
        self.pixverse_labels: dict[tuple[str, str, str], str] = {}
        self.discord_rules: list[tuple[str, Any, str]] = []  # (label, rule, route)
        self.routes_untouched = list(PIXVERSE_ROUTES)
        self.rng.shuffle(self.routes_untouched)
        self.kill_walls: list[float] = []  # when each SIGKILL and the final SIGTERM came
        self.drain_hang: int | None = None  # long hangs struck before the drain's was queued
        self.hangs_struck: list[tuple[float, float, str, float]] = []  # wall, s, route, length
        self.traffic_over = asyncio.Event()
        self.image = png()
        self.last_frame = png((80, 60), "JPEG")  # /transition's last frame
        self.clip = sample_video()  # /extend video's upload
        # Every command or press answered: (way in, handle, the job it started from).
        self.sent: list[tuple[str, InteractionHandle, int | None]] = []
        self.guild: Any = None
        self.started = 0.0
        self.channels: list[Any] = []
        self.members: list[Any] = []

    def watch_long_hangs(self) -> None:
        """Note when each long hang strikes, and on what (this process owns the simulator)."""
        book = self.sim.state.faults
        take = book.take

        def taken(route: Any) -> Any:
            fault = take(route)
            if fault is not None and fault.kind == "hang" and fault.seconds > CLIENT_TIMEOUT:
                moment = time.monotonic() - self.started
                self.hangs_struck.append((time.time(), moment, str(route), fault.seconds))
                log.info(
                    "a %g s hang struck %s at %.0f s (%s, bot start %d)",
                    fault.seconds,
                    route,
                    moment,
                    time.strftime("%H:%M:%S"),
                    self.starts,
                )
            return fault

        book.take = taken  # type: ignore[method-assign]

    @property
    def db_path(self) -> Path:
        return self.work / "data" / "bot.sqlite3"

    @property
    def log_path(self) -> Path:
        return self.work / "bot.log"

    # -- the bot process -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        hooks: dict[str, str] = {}
        if self.hook_port is not None:
            assert self.sim.config.webhook_secret is not None
            hooks = {
                "PIXVERSE_WEBHOOK_SECRET": self.sim.config.webhook_secret,
                "WEBHOOK_PORT": str(self.hook_port),
                "WEBHOOK_HOST": "127.0.0.1",
            }
        return child_env(
            self.fake,
            self.work,
            code=ROOT,
            DEV_GUILD_ID=str(self.guild.id),
            PIXVERSE_BASE_URL=self.sim.base_url,
            PIXVERSE_API_KEY="soak-key",
            DATABASE_PATH=str(self.db_path),
            MAX_ACTIVE_JOBS=str(self.plan.max_active),
            MAX_JOBS_PER_USER="50",
            DAILY_CREDITS="10000000",
            PIXVERSE_REQUESTS_PER_SECOND="50",
            # Issue 9's settings: one member's commands come seconds apart here, and the
            # moderated prompts are the soak's own, not a member to block.
            COMMAND_COOLDOWN_SECONDS="0",
            MODERATION_STRIKES="0",
            LOG_LEVEL="INFO",
            **hooks,
        )

    async def start_bot(self) -> None:
        old = set(map(id, self.fake.gateway.live_sessions()))
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"\n===== soak: bot start {self.starts} =====\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=self.work,
                env=self.env(),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.expected_exit = False
        process = self.process
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(
                    f"the bot exited with code {process.returncode} during start {self.starts}; "
                    f"see {self.log_path}"
                )
            fresh = [s for s in self.fake.gateway.connected_sessions() if id(s) not in old]
            if fresh and self.fake.synced_commands(self.guild):
                await asyncio.sleep(0.5)  # let the GUILD_CREATEs land
                self.up.set()
                log.info("bot start %d ready (pid %d)", self.starts, process.pid)
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the bot was not ready 90 s after start {self.starts}")

    async def kill_bot(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        self.up.clear()
        self.expected_exit = True
        self.kill_walls.append(time.time())
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), timeout=10)
        with self.log_path.open("ab") as out:
            out.write(b"\n===== soak: SIGKILL =====\n")

    async def stop_bot(self) -> None:
        """SIGTERM: the contract is a clean exit (code 0) within 10 seconds."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        self.up.clear()
        self.expected_exit = True
        self.kill_walls.append(time.time())
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            self.report.violations.append("the bot did not exit within 10 s of SIGTERM")
            process.kill()
            await process.wait()
            return
        if code != 0:
            self.report.violations.append(f"the bot exited with code {code} on SIGTERM")

    async def watch_process(self) -> None:
        """An exit nobody asked for is a crash: note it and start the bot again."""
        while not self.traffic_over.is_set() or self.up.is_set():
            process = self.process
            if process is not None and process.returncode is not None and not self.expected_exit:
                self.crashes.append(f"start {self.starts}: exit code {process.returncode}")
                log.warning(
                    "the bot exited by itself (code %s); starting it again", process.returncode
                )
                self.up.clear()
                await self.start_bot()
            await asyncio.sleep(0.5)

    # -- traffic ---------------------------------------------------------------------------

    def db_count(self) -> int:
        if not self.db_path.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(self.db_path, timeout=5)) as db:
                return int(db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
        except sqlite3.Error:
            return 0

    def done_messages(self) -> list[tuple[int, Message]]:
        """Live messages showing a finished video with its buttons: (job id, message)."""
        found: list[tuple[int, Message]] = []
        for channel in self.channels:
            for message in self.fake.store.by_channel.get(channel.id, []):
                if message.deleted or message.ephemeral:
                    continue
                parsed = job_of(message)
                if parsed and parsed[1] == "done":
                    button = f"pixbot:reroll:{parsed[0]}"
                    if message.find_component(button):
                        found.append((parsed[0], message))
        return found

    def pick_kind(self, possible: list[str]) -> str:
        """A way in, by MIX's weights over those possible now; a way that has no job yet
        comes first (up to three tries), so that a short run covers every kind."""
        started = {way for way, handle, _ in self.sent if answer_of(handle) == "accepted (public)"}
        untried = [k for k in possible if k not in started and self.report.commands[k] < 3]
        if untried:
            return untried[0]
        weights = [MIX[kind] for kind in possible]
        return self.rng.choices(possible, weights=weights)[0]

    async def send_one(self, index: int) -> None:
        plan, rng = self.plan, self.rng
        member = self.members[rng.randrange(len(self.members))]
        channel = self.channels[rng.randrange(len(self.channels))]
        done = self.done_messages() if index >= plan.members // 2 else []
        # `/extend job` takes the member's own finished jobs; the buttons anyone's result, and
        # Sound only a result without sound.
        own = [(job_id, m) for job_id, m in done if m.content.startswith(f"<@{member.id}>")]
        silent = [(job_id, m) for job_id, m in done if m.find_component(sound_id(job_id))]
        possible = ["video", "imagine", "transition", "extend video"]
        if own:
            possible.append("extend job")
        if done:
            possible += ["reroll", "extend button"]
        if silent:
            possible.append("sound")
        kind = self.pick_kind(possible)
        try:
            await asyncio.wait_for(self.up.wait(), timeout=60)
        except TimeoutError:
            self.report.answers["bot down"] += 1
            return
        self.report.commands[kind] += 1
        prompt = f"soak {index}: a lighthouse in a storm"
        if kind in ("video", "imagine", "transition") and rng.random() < plan.moderation_share:
            prompt += f" {MODERATION_MARKER}"
        options: dict[str, Any] = {"prompt": prompt}
        if kind in ("video", "imagine", "transition", "extend video"):
            quality, duration = COMBOS[rng.randrange(len(COMBOS))]
            options |= {"quality": quality, "duration": duration}
        if kind == "imagine":
            if rng.random() < 0.5:
                # v6 at one of its ratios, 1 to 4 s at 360p or 540p: 5 to 36 credits.
                ratio = V6_RATIOS[rng.randrange(len(V6_RATIOS))]
                options |= {
                    "model": "v6",
                    "quality": ("360p", "540p")[rng.randrange(2)],
                    "duration": rng.randint(1, 4),
                    "aspect_ratio": ratio,
                }
                self.report.options[f"v6 {ratio}"] += 1
            elif rng.random() < 0.6:
                options["aspect_ratio"] = OLD_RATIOS[rng.randrange(len(OLD_RATIOS))]
        if kind in ("video", "imagine", "transition", "extend video", "extend job"):
            if rng.random() < plan.audio_share:
                options["audio"] = True
                self.report.options["audio:true"] += 1
        source: int | None = None
        handle: InteractionHandle | None
        try:
            if kind == "video":
                handle = await self.fake.invoke(
                    "video",
                    user=member,
                    channel=channel,
                    options=options,
                    attachments={"image": (f"in{index}.png", self.image, "image/png")},
                    timeout=20,
                )
            elif kind == "imagine":
                handle = await self.fake.invoke(
                    "imagine", user=member, channel=channel, options=options, timeout=20
                )
            elif kind == "transition":
                handle = await self.fake.invoke(
                    "transition",
                    user=member,
                    channel=channel,
                    options=options,
                    attachments={
                        "first": (f"first{index}.png", self.image, "image/png"),
                        "last": (f"last{index}.jpg", self.last_frame, "image/jpeg"),
                    },
                    timeout=20,
                )
            elif kind == "extend video":
                options["prompt"] = f"soak {index}: the storm passes"
                handle = await self.fake.invoke(
                    "extend",
                    user=member,
                    channel=channel,
                    options=options,
                    attachments={"video": (f"clip{index}.mp4", self.clip, "video/mp4")},
                    timeout=20,
                )
            elif kind == "extend job":
                source, _ = own[rng.randrange(len(own))]
                options |= {"job": source, "prompt": f"soak {index}: the storm passes"}
                handle = await self.fake.invoke(
                    "extend", user=member, channel=channel, options=options, timeout=20
                )
            elif kind == "reroll":
                source, message = done[rng.randrange(len(done))]
                handle = await self.fake.click(
                    message, f"pixbot:reroll:{source}", user=member, timeout=20
                )
            elif kind == "extend button":
                source, message = done[rng.randrange(len(done))]
                handle = await self.press_form(
                    message, f"pixbot:extend:{source}", member, f"soak {index}: and then dawn"
                )
            else:
                source, message = silent[rng.randrange(len(silent))]
                described = SOUND_DESCRIPTIONS[rng.randrange(len(SOUND_DESCRIPTIONS))]
                handle = await self.press_form(message, sound_id(source), member, described)
        except (FakeDiscordError, TimeoutError) as exc:
            # Most often the bot was killed between the interaction's dispatch and its send.
            self.report.answers["not dispatched"] += 1
            log.debug("command %d not dispatched: %s", index, exc)
            return
        if handle is None:
            self.report.answers["form never opened"] += 1
            return
        self.handles.append((kind, handle))
        self.sent.append((kind, handle, source))

    async def press_form(
        self, message: Message, button: str, member: Any, text: str
    ) -> InteractionHandle | None:
        """Press a button that opens a form (Extend, Sound) and submit it with ``text`` in
        its one text input ("" leaves it untouched). The click's own handle when the bot
        answered it otherwise (a refusal); None when it never answered (killed meanwhile)."""
        click = await self.fake.click(message, button, user=member, timeout=20)
        try:
            await click.response(timeout=20)
        except TimeoutError:
            return None
        if click.modal is None:
            return click
        modal = click.modal
        inputs = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
        values = {inputs[0]["custom_id"]: text} if text and inputs else {}
        return await self.fake.submit_modal(
            modal["custom_id"], values, user=member, message=message, timeout=20
        )

    async def traffic(self) -> None:
        plan = self.plan
        deadline = self.started + plan.duration - plan.drain
        index = 0
        try:
            while time.monotonic() < deadline and index < plan.jobs * 2:
                if index >= plan.jobs and index % 5 == 0:
                    # Sent enough, but some were refused or lost: top up to the goal.
                    await asyncio.sleep(2.0)
                    if self.db_count() >= plan.jobs:
                        break
                task = asyncio.create_task(self.send_one(index))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                index += 1
                await asyncio.sleep(rng_gap(self.rng, plan.rate))
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=90)
        finally:
            self.traffic_over.set()
        log.info("traffic over: %d commands sent, %d jobs in the database", index, self.db_count())

    # -- faults ----------------------------------------------------------------------------

    def inject_pixverse(self) -> None:
        rng = self.rng
        pick = rng.random()
        # A share of the hangs outlast the client's timeout, on routes every job of the
        # commonest kinds takes, so that they strike before the faults stop.
        long_hang = 0.7 <= pick < 0.9 and rng.random() < self.plan.long_hang_share
        if long_hang:
            route = LONG_HANG_ROUTES[rng.randrange(len(LONG_HANG_ROUTES))]
        elif self.routes_untouched:
            route = self.routes_untouched.pop()  # every route once first, then by weight
        else:
            weights = list(PIXVERSE_ROUTE_WEIGHTS.values())
            route = rng.choices(PIXVERSE_ROUTES, weights=weights)[0]
        if route == "media" and pick < 0.3:
            self.outages.arm(rng.uniform(3.0, 12.0))
            self.report.faults["pixverse result URL 404 for a while"] += 1
            self.report.routes["pixverse media"] += 1
            return
        if pick < 0.3:
            kind, label, extra = "http_500", "5xx", {}
        elif pick < 0.5:
            kind, label = "http_429", "429"
            extra = {"retry_after": round(rng.uniform(0.5, 2.5), 1)}
        elif pick < 0.7:
            kind, label, extra = "drop", "reset (served, answer lost)", {}
        elif long_hang:
            # Longer than the client's timeout: it fires, the call is retried (a generate
            # with the same trace id), and the held request is served later, to nobody.
            kind, label = "hang", LONG_HANG.removeprefix("pixverse ")
            extra = {"seconds": round(CLIENT_TIMEOUT + rng.uniform(3.0, 10.0), 1)}
        elif pick < 0.9:
            # Shorter than the client's timeout.
            kind, label, extra = "hang", "hang", {"seconds": round(rng.uniform(1.0, 8.0), 1)}
        elif route != "media":
            kind, label, extra = "err_code", "500069 high load", {"err_code": 500069}
        elif self.plan.bad_media and rng.random() < 0.5:
            # The API's envelope in a 200 answer from the CDN: a body that is not a video.
            kind, label = "err_code", "result URL answers 200 with a non-video body"
            extra = {"err_code": 500069}
        elif self.plan.bad_media:
            kind, label, extra = "truncate", "result URL serves half the video", {}
        else:
            kind, label, extra = "http_500", "5xx", {}
        count = 1 if kind in ("drop", "hang") else rng.randint(1, 2)
        self.sim.inject_fault(route, kind, count=count, **extra)
        # Faults of one kind on one route are told apart by their label (a hang's length).
        self.pixverse_injected[(route, kind, label)] += count
        self.pixverse_labels[(route, kind, label)] = label
        self.report.faults[f"pixverse {label}"] += count
        self.report.routes[f"pixverse {route}"] += count

    def hang_in_the_drain(self) -> None:
        """Once the faults have stopped (and the kills with them), one more hang longer than
        the client's timeout on the video download, which the jobs still finishing take: no
        SIGKILL can end it first, so the client's timeout must (check_timeouts)."""
        if self.plan.long_hang_share <= 0:
            return
        seconds = round(CLIENT_TIMEOUT + self.rng.uniform(3.0, 10.0), 1)
        self.sim.inject_fault("media", "hang", count=1, seconds=seconds)
        self.drain_hang = len(self.hangs_struck)
        self.report.faults[LONG_HANG] += 1
        self.report.routes["pixverse media"] += 1

    def drain_hang_struck(self) -> None:
        if self.drain_hang is None:
            return
        struck = int(len(self.hangs_struck) > self.drain_hang)
        self.report.struck[LONG_HANG] += struck
        self.report.struck_routes["pixverse media"] += struck
        self.sim.clear_faults()

    def inject_discord(self) -> None:
        rng = self.rng
        method, pattern, where = DISCORD_ROUTES[rng.randrange(len(DISCORD_ROUTES))]
        pick = rng.random()
        count = rng.randint(1, 2)
        rule: Any
        if pick < 0.4:
            label = "discord 429"
            rule = self.fake.rate_limit(
                method, pattern, retry_after=round(rng.uniform(0.3, 2.5), 2), count=count
            )
        elif pick < 0.7:
            label = "discord 5xx"
            status = (500, 502, 503)[rng.randrange(3)]
            rule = self.fake.inject_fault(
                method, pattern, "status", count, status=status, after_apply=rng.random() < 0.3
            )
        else:
            after = rng.random() < 0.5
            label = "discord drop (after apply)" if after else "discord drop"
            count = 1
            rule = self.fake.inject_fault(method, pattern, "drop", count, after_apply=after)
        self.discord_rules.append((label, rule, f"discord {where}"))
        self.report.faults[label] += count
        self.report.routes[f"discord {where}"] += count

    async def chaos(self) -> None:
        if self.plan.fault_every <= 0:
            return  # no faults: a calm run
        while not self.traffic_over.is_set():
            gap = rng_gap(self.rng, 1 / self.plan.fault_every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.traffic_over.wait(), timeout=gap)
                return
            if self.rng.random() < 0.5:
                self.inject_pixverse()
            else:
                self.inject_discord()

    def stop_faults(self) -> None:
        """Count what struck, then clear what is still queued so the end can settle."""
        # What is still queued, per route and kind; a hang's length tells the long from the
        # short ones.
        pending: Counter[tuple[str, str, str]] = Counter()
        for item in self.sim.state.faults.pending():
            route, kind = item["route"], item["kind"]
            label = next(
                (
                    label
                    for (r, k, label) in self.pixverse_labels
                    if r == route and k == kind and self._hang_matches(label, item)
                ),
                "",
            )
            pending[(route, kind, label)] += int(item["count"])
        for key, count in self.pixverse_injected.items():
            route, _kind, label = key
            struck = count - pending[key]
            self.report.struck[f"pixverse {label}"] += struck
            self.report.struck_routes[f"pixverse {route}"] += struck
        self.sim.clear_faults()
        outages = len(self.outages.struck_videos)
        self.report.struck["pixverse result URL 404 for a while"] = outages
        self.report.struck_routes["pixverse media"] += outages
        self.outages.disarm()
        for label, rule, route in self.discord_rules:
            self.report.struck[label] += rule.hits
            self.report.struck_routes[route] += rule.hits
            rule.remaining = 0

    @staticmethod
    def _hang_matches(label: str, item: dict[str, Any]) -> bool:
        if item["kind"] != "hang":
            return True
        return ("past the client" in label) == (float(item["seconds"]) > CLIENT_TIMEOUT)

    async def killer(self) -> None:
        """SIGKILL the bot at random moments of the traffic, then start it again."""
        plan = self.plan
        window = plan.jobs / plan.rate
        moments = sorted(self.rng.uniform(0.08, 0.92) * window for _ in range(plan.restarts))
        for moment in moments:
            wait = self.started + moment - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await asyncio.wait_for(self.up.wait(), timeout=120)
            await self.kill_bot()
            self.report.restarts += 1
            log.info(
                "SIGKILL %d of %d at %.0f s",
                self.report.restarts,
                plan.restarts,
                time.monotonic() - self.started,
            )
            await asyncio.sleep(self.rng.uniform(0.0, 2.0))
            await self.start_bot()

    # -- draining --------------------------------------------------------------------------

    def unsettled(self) -> int:
        """Jobs not yet final or whose final state is not yet delivered."""
        if not self.db_path.exists():
            return 0
        try:
            with contextlib.closing(sqlite3.connect(self.db_path, timeout=5)) as db:
                row = db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state NOT IN ('done', 'failed', 'cancelled')"
                    " OR delivery_since IS NOT NULL"
                ).fetchone()
            return int(row[0])
        except sqlite3.Error:
            return -1

    async def drain(self) -> None:
        deadline = min(self.started + self.plan.duration, time.monotonic() + self.plan.drain)
        last = 0.0
        while time.monotonic() < deadline:
            left = self.unsettled()
            stale = self.stale_messages()
            if left == 0 and stale == 0:
                await asyncio.sleep(2.0)  # a last edit may be on its way
                if self.unsettled() == 0 and self.stale_messages() == 0:
                    return
            if time.monotonic() - last >= 15:
                last = time.monotonic()
                log.info("draining: %d jobs unsettled, %d messages not final", left, stale)
            await asyncio.sleep(1.0)
        self.report.notes.append("the drain ended at its bound with work still unsettled")

    def stale_messages(self) -> int:
        count = 0
        for channel in self.channels:
            for message in self.fake.store.by_channel.get(channel.id, []):
                parsed = None if message.deleted or message.ephemeral else job_of(message)
                if parsed and parsed[1] not in FINAL_STATES:
                    count += 1
        return count

    # -- the whole run ---------------------------------------------------------------------

    async def run(self) -> Report:
        plan = self.plan
        await self.sim.start(host="127.0.0.1", port=0)
        await self.fake.start()
        self.started = time.monotonic()
        try:
            self.guild = self.fake.add_guild("Soak")
            self.channels = [
                self.fake.add_channel(self.guild, f"gen-{i}") for i in range(plan.channels)
            ]
            for i in range(plan.members):
                user = self.fake.add_user(f"member{i}")
                self.fake.add_member(self.guild, user)
                self.members.append(user)
            await self.start_bot()
            watcher = asyncio.create_task(self.watch_process())
            chaos = asyncio.create_task(self.chaos())
            killer = asyncio.create_task(self.killer())
            await self.traffic()
            await asyncio.wait_for(asyncio.gather(chaos, killer), timeout=300)
            self.stop_faults()
            self.hang_in_the_drain()
            await self.drain()
            self.drain_hang_struck()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.stop_bot()
            self.report.elapsed = time.monotonic() - self.started
            self.check_timeouts()
            self.check()
        finally:
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            for task in list(self.tasks):
                task.cancel()
            await self.sim.stop()
            await self.fake.stop()
        for crash in self.crashes:
            self.report.violations.append(f"the bot exited by itself: {crash}")
        return self.report

    def check_timeouts(self) -> None:
        """The client's timeouts that fired, from the bot's log; and 7: each long hang the bot
        outlived (no SIGKILL or SIGTERM before its timeout plus a grace) ended in a timeout
        of that call, logged about CLIENT_TIMEOUT seconds after it struck."""
        fired: list[tuple[float, str]] = []
        if self.log_path.exists():
            for line in self.log_path.read_text(errors="replace").splitlines():
                match = TIMEOUT_LINE.search(ANSI.sub("", line))
                if match:
                    at = time.mktime(time.strptime(match["at"], "%Y-%m-%d %H:%M:%S"))
                    fired.append((at, match["what"]))
                    self.report.timeouts[re.sub(r"/\d+", "/{id}", match["what"])] += 1
        for wall, moment, route, seconds in self.hangs_struck:
            due = wall + CLIENT_TIMEOUT
            ends = due + TIMEOUT_GRACE
            what = f"{route} at {moment:.0f} s ({seconds:g} s)"
            if any(wall <= kill < due for kill in self.kill_walls):
                # Its process died before the timeout was due (and it must not take the
                # timeout of another hang on that route).
                self.report.long_hangs.append(f"{what}: the bot was killed first")
                continue
            # Log times are whole seconds: a second early is the same moment.
            match = next(
                (
                    item
                    for item in fired
                    if item[1].startswith(ENDPOINTS[route]) and due - 2 <= item[0] <= ends
                ),
                None,
            )
            if match is not None:
                fired.remove(match)
                self.report.long_hangs.append(f"{what}: timed out")
            elif any(due <= kill <= ends for kill in self.kill_walls):
                self.report.long_hangs.append(f"{what}: the bot was killed or stopped as it fired")
            else:
                self.report.long_hangs.append(f"{what}: NO TIMEOUT")
                self.report.violations.append(
                    f"a {seconds:g} s hang struck {route} at {moment:.0f} s and the bot ran on "
                    f"past it, yet no {ENDPOINTS[route]} call timed out after "
                    f"{CLIENT_TIMEOUT:g} s (a call without a timeout?)"
                )

    # -- the invariants --------------------------------------------------------------------

    def check(self) -> None:
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            db.row_factory = sqlite3.Row
            jobs = {row["id"]: dict(row) for row in db.execute("SELECT * FROM jobs")}
            ledger = {row["job_id"]: dict(row) for row in db.execute("SELECT * FROM ledger")}
            used: Counter[tuple[int, int]] = Counter()
            for row in db.execute(
                "SELECT guild_id, user_id, SUM(used) FROM member_days GROUP BY guild_id, user_id"
            ):
                used[(row[0], row[1])] += int(row[2])
        self.check_records(jobs, ledger, used)
        self.check_ways_in(jobs)

    def check_ways_in(self, jobs: dict[int, dict[str, Any]]) -> None:
        """6. Each job is what was asked, of whom it was asked, and PixVerse made that."""
        report = self.report
        violations = report.violations
        report.kinds.update(
            "extend of an upload"
            for job in jobs.values()
            if job["kind"] == "extend" and json.loads(job["params"]).get("source") == "video"
        )
        report.kinds.update(
            "with audio" for job in jobs.values() if json.loads(job["params"]).get("audio")
        )
        # The job each accepted command or press started, from its status message's title.
        for way, handle, source in self.sent:
            message = handle.original
            if message is None or message.ephemeral or message is handle.message:
                continue
            parsed = job_of(message)
            job = jobs.get(parsed[0]) if parsed else None
            if job is None:
                continue
            job_id = job["id"]
            if job["user_id"] != handle.user.id:
                violations.append(
                    f"job {job_id} ({way}) was started by member {handle.user.id} but belongs "
                    f"to member {job['user_id']}"
                )
            if job["kind"] != KIND_OF_COMMAND[way]:
                violations.append(f"job {job_id} was started by {way} but is a {job['kind']} job")
            if source is not None:
                # A re-roll of an extension or a sound works from that job's own source.
                parent = source
                if way == "reroll" and json.loads(job["params"]).get("source") == "job":
                    parent = jobs[source]["parent_job_id"] if source in jobs else None
                if job["parent_job_id"] != parent:
                    violations.append(
                        f"job {job_id} ({way} of job {source}) has parent job "
                        f"{job['parent_job_id']}, not {parent}"
                    )
        # What PixVerse made for each job.
        by_trace = {job["trace_id"]: job for job in jobs.values() if job["trace_id"]}
        for sim_job in self.sim.jobs.values():
            job = by_trace.get(sim_job.trace_id)
            if job is not None:
                violations.extend(made_as_asked(job, sim_job, jobs))


def made_as_asked(job: dict[str, Any], sim_job: Any, jobs: dict[int, dict[str, Any]]) -> list[str]:
    """How PixVerse's video for ``job`` differs from what the job asked for."""
    params = json.loads(job["params"])
    made = sim_job.params
    job_id = job["id"]
    problems: list[str] = []
    source = params.get("source", "image")
    if params.get("add_sound"):
        expected = SimKind.SOUND
    else:
        expected = {
            "image": SimKind.IMAGE,
            "text": SimKind.TEXT,
            "frames": SimKind.TRANSITION,
            "video": SimKind.EXTEND,
            "job": SimKind.EXTEND,
        }[source]
    if made.kind is not expected:
        problems.append(
            f"job {job_id} ({job['kind']}, source {source}) was made by PixVerse as "
            f"{made.kind.value}, not {expected.value}"
        )
        return problems
    asked = (params["model"], params["quality"], params["duration"])
    got = (made.model, made.quality.value, made.duration)
    if asked != got:
        problems.append(f"job {job_id} asked for {asked}; PixVerse made {got}")
    if expected is not SimKind.SOUND and bool(params.get("audio")) != made.audio:
        problems.append(f"job {job_id}: audio {bool(params.get('audio'))}, PixVerse's {made.audio}")
    if expected is SimKind.TEXT and params.get("aspect_ratio") not in (None, made.aspect_ratio):
        problems.append(
            f"job {job_id} asked for {params['aspect_ratio']}; PixVerse made {made.aspect_ratio}"
        )
    if source == "job":
        parent = jobs.get(job["parent_job_id"])
        wanted = parent["pixverse_video_id"] if parent else None
        if wanted is None or made.source_video_id != wanted:
            problems.append(
                f"job {job_id} ({job['kind']} of job {job['parent_job_id']}) was made from "
                f"PixVerse video {made.source_video_id}, its source's is {wanted}"
            )
    if source == "video" and made.video_media_id is None:
        problems.append(f"job {job_id} extends an upload but PixVerse got no video_media_id")
    return problems


# -- reading messages ----------------------------------------------------------------------


def title_of(message: Message) -> str:
    embeds = message.current.embeds
    return str(embeds[0].get("title", "")) if embeds else ""


def describe(message: Message) -> str:
    """A message's files and embed fields, for a violation's evidence."""
    files = [f"{a.filename} ({a.size} bytes)" for a in message.current.attachments]
    fields = [
        f"{f.get('name')}={str(f.get('value'))[:80]!r}"
        for embed in message.current.embeds
        for f in embed.get("fields", [])
    ]
    return f"files {files}, fields {fields}"


def job_of(message: Message) -> tuple[int, str] | None:
    """(job id, state) a bot message shows, from its embed title."""
    match = TITLE.match(title_of(message))
    if match is None:
        return None
    shown = match["state"]
    for state, label in STATE_LABELS.items():
        if shown.startswith(label):
            return int(match["job"]), state
    return int(match["job"]), shown


def shows(message: Message, label: str) -> bool:
    match = TITLE.match(title_of(message))
    return match is not None and match["state"].startswith(label)


def has_result(message: Message, job_id: int) -> bool:
    """The video attached (a real mp4) or a link to it."""
    for attachment in message.current.attachments:
        if attachment.filename == f"pixbot-{job_id}.mp4" and attachment.data[4:8] == b"ftyp":
            return True
    for embed in message.current.embeds:
        for embed_field in embed.get("fields", []):
            if embed_field.get("name") == "Video" and "](http" in str(embed_field.get("value")):
                return True
    return False


def sound_id(job_id: int) -> str:
    """The Sound button's custom id under a result without sound."""
    return f"pixbot:sound:{job_id}"


def prompt_of(job: dict[str, Any]) -> str | None:
    prompt = json.loads(job["params"]).get("prompt")
    return prompt if isinstance(prompt, str) else None


def answer_of(handle: InteractionHandle) -> str:
    if not handle.callbacks:
        return "no answer"
    first = handle.accepted
    if first is None:
        return "answer refused by Discord"
    return "refused (ephemeral)" if first.ephemeral else "accepted (public)"


def outcome_name(status: int) -> str:
    if status == SIM_DONE:
        return "1 done"
    if status == SIM_MODERATED:
        return "7 moderation"
    return "8 failed" if status in SIM_REFUNDED else str(status)


def rng_gap(rng: random.Random, per_second: float) -> float:
    """An exponential gap (a Poisson stream) with ``per_second`` events a second, capped."""
    return min(rng.expovariate(per_second), 5.0 / per_second)


async def run_soak(plan: Plan) -> Report:
    folder = Path(tempfile.mkdtemp(prefix="pixbot-soak-"))
    soak = Soak(plan, folder)
    try:
        report = await soak.run()
    except BaseException:
        soak.report.workdir = folder
        log.error("soak aborted; work folder kept: %s", folder)
        raise
    if report.violations or plan.keep:
        report.workdir = folder
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return report


# -- the report ----------------------------------------------------------------------------


def format_report(report: Report) -> list[str]:
    plan = report.plan
    lines = [
        f"soak: seed {plan.seed}, MAX_ACTIVE_JOBS={plan.max_active}, generation "
        f"{plan.gen_range[0]:g}-{plan.gen_range[1]:g} s, {plan.channels} channels, "
        f"{plan.rate:g} commands/s, webhooks "
        + (f"on ({plan.webhook_loss_rate:.0%} lost)" if plan.webhooks else "off"),
        f"jobs: {report.jobs} in the database ({_counts(report.states)}); "
        f"by kind: {_counts(report.kinds)}",
        f"commands: {sum(report.commands.values())} sent ({_counts(report.commands)}); "
        f"answers: {_counts(report.answers)}",
        f"options: {_counts(report.options)}",
        *(f"refused: {count} x {text!r}" for text, count in report.refusals.most_common()),
        f"PixVerse outcomes: {_counts(report.outcomes)}",
        f"members: {report.members_used} with jobs, of {plan.members}",
        "faults injected (struck):",
    ]
    for kind, count in sorted(report.faults.items()):
        lines.append(f"  {kind}: {count} ({report.struck.get(kind, 0)})")
    lines.append(
        "  by route: "
        + ", ".join(
            f"{route} {count} ({report.struck_routes.get(route, 0)})"
            for route, count in report.routes.most_common()
        )
    )
    if report.long_hangs:
        lines.append(f"  long hangs struck: {'; '.join(report.long_hangs)}")
    lines.append(
        f"client timeouts fired (the bot's retry warnings): {report.timeouts.total()}"
        + (f" ({_counts(report.timeouts)})" if report.timeouts else "")
    )
    lines.append(f"restarts: {report.restarts} (SIGKILL)")
    lines.append(f"elapsed: {report.elapsed:.0f} s")
    lines.extend(f"note: {note}" for note in report.notes)
    if report.workdir is not None:
        lines.append(f"work folder (database, bot.log): {report.workdir}")
    lines.append(f"violations: {len(report.violations)}")
    lines.extend(f"  - {violation}" for violation in report.violations)
    return lines


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common()) or "none"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300, help="accepted jobs to reach")
    parser.add_argument("--members", type=int, default=40)
    parser.add_argument("--channels", type=int, default=6)
    parser.add_argument("--restarts", type=int, default=5, help="SIGKILLs of the bot")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--duration", type=float, default=900.0, help="bound of the whole run, in seconds"
    )
    parser.add_argument("--max-active", type=int, default=20, help="MAX_ACTIVE_JOBS")
    parser.add_argument("--gen-time-range", default="1:4", help="LOW:HIGH seconds")
    parser.add_argument("--rate", type=float, default=3.0, help="commands per second")
    parser.add_argument("--fault-every", type=float, default=0.6, help="seconds between faults")
    parser.add_argument(
        "--no-webhooks", action="store_true", help="no PixVerse webhooks: polling alone"
    )
    parser.add_argument(
        "--no-bad-media",
        action="store_true",
        help="never make result URLs answer 200 with a body that is not a whole video",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    low, high = (float(x) for x in args.gen_time_range.split(":"))
    plan = Plan(
        jobs=args.jobs,
        members=args.members,
        channels=args.channels,
        restarts=args.restarts,
        seed=args.seed,
        duration=args.duration,
        max_active=args.max_active,
        gen_range=(low, high),
        rate=args.rate,
        fault_every=args.fault_every,
        drain=min(240.0, args.duration / 3),
        keep=args.keep,
        webhooks=not args.no_webhooks,
        bad_media=not args.no_bad_media,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  … %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    # The simulator's server logs a traceback for each request cut by a SIGKILL: expected.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    report = asyncio.run(run_soak(plan))
    for line in format_report(report):
        print(line)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
