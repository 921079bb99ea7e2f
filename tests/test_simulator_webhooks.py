"""The simulator's generation-time spread and its PixVerse webhooks.

See docs/pixverse.md, "Latency and polling" and "Webhooks".

Every wait is bounded; everything listens on 127.0.0.1 only.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.jobs.webhook import WebhookReceiver
from bot.pixverse.catalogue import shipped_catalogue
from bot.pixverse.rules import Combination, Quality, RuleViolation
from bot.pixverse.signature import canonical, sign
from bot.simulator import MODERATION_MARKER, SimState, Simulator, SimulatorConfig
from bot.simulator.__main__ import build_config, parse_args
from bot.simulator.params import Kind
from bot.simulator.state import gen_time_weight

KEY = "test-key"
SECRET = "whsec-test"
RANGE = (20.0, 120.0)
QUALITIES = [q.value for q in Quality]


def _allowed(quality: str, duration: int) -> bool:
    try:
        shipped_catalogue().check(Combination("v4.5", Quality(quality), duration))
    except RuleViolation:
        return False
    return True


COMBOS = [
    (quality, duration)
    for quality in QUALITIES
    for duration in (5, 8)
    if _allowed(quality, duration)
]


def t2v(quality: str = "540p", duration: int = 5, prompt: str = "a lighthouse") -> dict[str, Any]:
    return {
        "prompt": prompt,
        "model": "v4.5",
        "quality": quality,
        "duration": duration,
        "aspect_ratio": "16:9",
    }


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


# -- generation-time spread ----------------------------------------------------------------


def gen_times(seed: int | None, jobs: list[tuple[str, int]]) -> list[float]:
    state = SimState(SimulatorConfig(gen_time_range=RANGE, seed=seed, balance=10**9))
    out = []
    for quality, duration in jobs:
        job = state.submit(KEY, state.parse(Kind.TEXT, t2v(quality, duration)), "t")
        out.append(job.finish_at - job.created_at)
        state.finish_now(job.video_id)  # frees the concurrency slot for the next one
    return out


def test_gen_time_spread_is_deterministic_with_a_seed():
    jobs = COMBOS * 5
    first, again = gen_times(11, jobs), gen_times(11, jobs)
    assert first == pytest.approx(again, abs=1e-6)
    assert first != pytest.approx(gen_times(12, jobs), abs=1e-6)


def test_gen_time_spread_grows_with_quality_and_duration_and_covers_the_range():
    per_combo = 60
    times = gen_times(3, [combo for combo in COMBOS for _ in range(per_combo)])
    by_combo = {combo: times[i * per_combo : (i + 1) * per_combo] for i, combo in enumerate(COMBOS)}
    low, high = RANGE
    assert all(low <= t <= high for t in times)
    # The whole range is used: the cheapest combination at the bottom, the dearest at the top.
    assert min(times) == pytest.approx(low, abs=1.0)
    assert max(times) == pytest.approx(high, abs=1.0)
    mean = {combo: statistics.fmean(values) for combo, values in by_combo.items()}
    for duration in (5, 8):
        ladder = [mean[(q, duration)] for q in QUALITIES if (q, duration) in mean]
        assert ladder == sorted(ladder) and len(set(ladder)) == len(ladder)
    for quality in ("360p", "540p", "720p"):
        assert mean[(quality, 8)] > mean[(quality, 5)]
    # No pile-up on the bounds (a clamp would put many jobs on exactly 20 s or 120 s).
    assert sum(t in RANGE for t in times) <= 1
    # ±25 % jitter around each combination's centre, mirrored back into the range.
    for (quality, duration), values in by_combo.items():
        centre = low + gen_time_weight(Quality(quality), duration, (5, 8)) * (high - low)
        assert all(
            max(low, centre * 0.75) - 1e-9 <= v <= min(high, centre * 1.25) + 1e-9 for v in values
        )
        assert statistics.pstdev(values) > 0 or centre * 0.75 >= high or centre * 1.25 <= low


def test_without_a_range_every_job_takes_gen_time():
    state = SimState(SimulatorConfig(gen_time=7.5, seed=1))
    for quality, duration in COMBOS:
        job = state.submit(KEY, state.parse(Kind.TEXT, t2v(quality, duration)), "t")
        assert job.finish_at - job.created_at == pytest.approx(7.5)
        state.finish_now(job.video_id)


def test_a_range_leaves_the_seeded_outcomes_unchanged():
    def outcomes(config: SimulatorConfig) -> list[tuple[int, int, str]]:
        state = SimState(config)
        out = []
        for _ in range(10):
            job = state.submit(KEY, state.parse(Kind.TEXT, t2v()), "t")
            out.append((job.outcome, job.seed, job.file_name))
            state.finish_now(job.video_id)
        return out

    plain = SimulatorConfig(seed=5, failure_rate=0.5)
    spread = SimulatorConfig(seed=5, failure_rate=0.5, gen_time_range=RANGE, webhook_loss_rate=0.5)
    assert outcomes(plain) == outcomes(spread)


@pytest.mark.parametrize("bad", [(10.0, 5.0), (-1.0, 5.0)])
def test_a_bad_range_is_refused(bad: tuple[float, float]):
    with pytest.raises(ValueError, match="low"):
        SimulatorConfig(gen_time_range=bad)


def test_cli_flags_build_the_spread_and_webhook_config(monkeypatch):
    monkeypatch.delenv("PIXVERSE_WEBHOOK_SECRET", raising=False)
    args = parse_args(
        [
            "--gen-time-range",
            "20:120",
            "--webhook-url",
            "http://127.0.0.1:9/hook",
            "--webhook-secret",
            "s3",
            "--webhook-loss-rate",
            "0.05",
            "--webhook-late-rate",
            "0.1",
            "--webhook-late-delay",
            "12",
        ]
    )
    config = build_config(args)
    assert config.gen_time_range == (20.0, 120.0)
    assert config.webhook_url == "http://127.0.0.1:9/hook" and config.webhook_secret == "s3"
    assert (config.webhook_loss_rate, config.webhook_late_rate) == (0.05, 0.1)
    assert config.webhook_late_delay == 12
    assert "s3" not in repr(config)
    monkeypatch.setenv("PIXVERSE_WEBHOOK_SECRET", "from-env")
    assert build_config(parse_args(["--webhook-url", "http://x/"])).webhook_secret == "from-env"
    assert build_config(parse_args([])).gen_time_range is None


@pytest.mark.parametrize(
    "argv",
    [["--gen-time-range", "120"], ["--gen-time-range", "9:3"], ["--webhook-url", "http://x/"]],
)
def test_cli_refuses_bad_spread_and_webhook_flags(argv: list[str], monkeypatch):
    monkeypatch.delenv("PIXVERSE_WEBHOOK_SECRET", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2


# -- webhooks ------------------------------------------------------------------------------


@dataclass
class Hook:
    at: float
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.raw)
        return result


@dataclass
class Catcher:
    """A loopback endpoint that records each webhook and answers ``replies`` in turn
    (then ``"ok"``)."""

    url: str = ""
    hooks: list[Hook] = field(default_factory=list)
    replies: list[tuple[int, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.hooks.append(Hook(time.monotonic(), dict(request.headers), await request.read()))
        status, text = self.replies.pop(0) if self.replies else (200, "ok")
        return web.Response(status=status, text=text)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/pixverse/webhook"


@pytest.fixture
async def catcher() -> AsyncIterator[Catcher]:
    catcher = Catcher()
    app = web.Application()
    app.router.add_post("/{tail:.*}", catcher.handle)
    runner, catcher.url = await serve(app)
    try:
        yield catcher
    finally:
        await runner.cleanup()


def hook_config(url: str, **overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "gen_time": 0.2,
        "seed": 1,
        "webhook_url": url,
        "webhook_secret": SECRET,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


async def generate(sim: Simulator, body: dict[str, Any] | None = None) -> int:
    headers = {"API-KEY": KEY, "Ai-trace-id": str(uuid.uuid4())}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(
            f"{sim.base_url}/openapi/v2/video/text/generate", json=body or t2v(), headers=headers
        ) as response,
    ):
        answer = await response.json()
    assert answer["ErrCode"] == 0, answer
    video_id: int = answer["Resp"]["video_id"]
    return video_id


async def test_a_finished_job_sends_a_correctly_signed_webhook(catcher: Catcher):
    async with Simulator(hook_config(catcher.url)) as sim:
        video_id = await generate(sim, t2v("720p", 5))
        await until(lambda: bool(catcher.hooks))
        [hook] = catcher.hooks
        job = sim.jobs[video_id]
        assert hook.at >= job.finish_at
        assert hook.at - job.finish_at < 1.0
        result = sim.state.result(KEY, video_id, sim.base_url)
        assert list(hook.body) == ["id", "status", "url", "size", "has_audio", "credits"]
        assert hook.body == {name: result[name] for name in hook.body}
        assert hook.body["status"] == 1 and hook.body["url"].endswith(job.file_name)
        timestamp, nonce = hook.headers["Webhook-Timestamp"], hook.headers["Webhook-Nonce"]
        assert abs(int(timestamp) - time.time()) < 5
        assert len(nonce) == 32
        assert hook.headers["Webhook-Signature"] == sign(
            SECRET, timestamp, nonce, canonical(hook.body.items())
        )
        assert uuid.UUID(hook.headers["Ai-Trace-Id"])
        assert hook.headers["Content-Type"].startswith("application/json")
        await until(lambda: bool(sim.webhooks) and sim.webhooks[0].reply_status is not None)
        [record] = sim.webhooks
        assert (record.video_id, record.status, record.attempt) == (video_id, 1, 1)
        assert record.reply_status == 200 and record.ok and not record.late
        assert record.at >= job.finish_at


async def test_the_bots_receiver_accepts_the_simulators_webhooks():
    seen: list[int] = []
    receiver = WebhookReceiver(SECRET, seen.append)
    runner, url = await serve(receiver.app())
    try:
        async with Simulator(hook_config(url)) as sim:
            ids = [await generate(sim) for _ in range(3)]
            moderated = await generate(sim, t2v(prompt=f"a cat {MODERATION_MARKER}"))
            await until(lambda: len(seen) == 4)
            assert sorted(seen) == sorted([*ids, moderated])
            await until(lambda: all(r.reply_status for r in sim.webhooks))
            assert all(r.ok and r.attempt == 1 for r in sim.webhooks)
            assert {r.video_id: r.status for r in sim.webhooks}[moderated] == 7
    finally:
        await runner.cleanup()


async def test_a_wrong_secret_is_refused_by_the_receiver_and_retried():
    seen: list[int] = []
    receiver = WebhookReceiver("another-secret", seen.append)
    runner, url = await serve(receiver.app())
    try:
        async with Simulator(hook_config(url)) as sim:
            await generate(sim)
            await until(lambda: bool(sim.webhooks) and sim.webhooks[0].reply_status is not None)
            assert sim.webhooks[0].reply_status == 401 and not sim.webhooks[0].ok
            assert not seen
    finally:
        await runner.cleanup()


async def test_loss_rate_one_sends_no_webhook(catcher: Catcher):
    async with Simulator(hook_config(catcher.url, gen_time=0.1, webhook_loss_rate=1.0)) as sim:
        ids = [await generate(sim) for _ in range(5)]
        await until(lambda: all(sim.status(video_id) == 1 for video_id in ids))
        await asyncio.sleep(0.3)
        assert catcher.hooks == [] and sim.webhooks == []
        assert sim.webhook_sender is not None and sim.webhook_sender.pending == 0


async def test_a_late_webhook_comes_late_by_the_delay(catcher: Catcher):
    config = hook_config(catcher.url, gen_time=0.1, webhook_late_rate=1.0, webhook_late_delay=0.6)
    async with Simulator(config) as sim:
        video_id = await generate(sim)
        await until(lambda: bool(catcher.hooks))
        assert catcher.hooks[0].at - sim.jobs[video_id].finish_at >= 0.6
        assert sim.webhooks[0].late


async def test_a_reply_other_than_200_ok_is_retried_after_2_seconds(catcher: Catcher):
    catcher.replies = [(200, "OK!")]  # 200 but not exactly "ok": PixVerse retries
    async with Simulator(hook_config(catcher.url, gen_time=0.05)) as sim:
        video_id = await generate(sim)
        await until(lambda: len(catcher.hooks) == 2, timeout=6)
        first, second = catcher.hooks
        assert 1.9 <= second.at - first.at < 3.5
        assert first.body == second.body and first.body["id"] == video_id
        # Each try is signed afresh.
        assert first.headers["Webhook-Nonce"] != second.headers["Webhook-Nonce"]
        await until(lambda: len(sim.webhooks) == 2 and sim.webhooks[1].reply_status is not None)
        assert [(r.attempt, r.reply_status, r.ok) for r in sim.webhooks] == [
            (1, 200, False),
            (2, 200, True),
        ]


async def test_retries_follow_the_schedule_then_give_up(catcher: Catcher):
    catcher.replies = [(500, "boom")] * 10
    async with Simulator(hook_config(catcher.url, gen_time=0.05)) as sim:
        assert sim.webhook_sender is not None
        sim.webhook_sender.retry_delays = (0.05, 0.1, 0.15, 0.2)
        await generate(sim)
        await until(lambda: sim.webhook_sender is not None and sim.webhook_sender.pending == 0)
        assert [r.attempt for r in sim.webhooks] == [1, 2, 3, 4, 5]
        assert all(r.reply_status == 500 and not r.ok for r in sim.webhooks)
        gaps = [b.at - a.at for a, b in zip(catcher.hooks, catcher.hooks[1:], strict=False)]
        assert gaps == pytest.approx([0.05, 0.1, 0.15, 0.2], abs=0.08)


async def test_an_unreachable_url_is_logged_not_raised(caplog):
    probe, url = await serve(web.Application())
    await probe.cleanup()  # nothing listens there any more
    async with Simulator(hook_config(url, gen_time=0.05)) as sim:
        assert sim.webhook_sender is not None
        sim.webhook_sender.retry_delays = (0.05,)
        video_id = await generate(sim)
        await until(lambda: sim.webhook_sender is not None and sim.webhook_sender.pending == 0)
        assert [r.attempt for r in sim.webhooks] == [1, 2]
        assert all(r.reply_status is None and r.error for r in sim.webhooks)
        assert sim.status(video_id) == 1  # the API goes on answering
        await generate(sim)


async def test_finish_now_and_force_status_send_at_once(catcher: Catcher):
    async with Simulator(hook_config(catcher.url, gen_time=60)) as sim:
        first, second = await generate(sim), await generate(sim)
        sim.finish_now(first)
        await until(lambda: len(catcher.hooks) == 1)
        sim.force_status(second, 8)
        await until(lambda: len(catcher.hooks) == 2)
        assert [(h.body["id"], h.body["status"]) for h in catcher.hooks] == [
            (first, 1),
            (second, 8),
        ]
        assert sim.jobs[second].terminal_at <= time.monotonic()


async def test_stop_cancels_pending_webhooks(catcher: Catcher):
    sim = Simulator(hook_config(catcher.url, gen_time=0.5, max_concurrent=50))
    await sim.start()
    for _ in range(50):
        sim.state.submit(KEY, sim.state.parse(Kind.TEXT, t2v()), "t")
    sender = sim.webhook_sender
    assert sender is not None and sender.pending == 50
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 2 and sender.pending == 0
    await asyncio.sleep(0.8)
    assert catcher.hooks == [] and sim.webhooks == []


async def test_stop_cancels_a_send_waiting_to_retry(catcher: Catcher):
    catcher.replies = [(503, "busy")] * 5
    sim = Simulator(hook_config(catcher.url, gen_time=0.05))
    await sim.start()
    try:
        await generate(sim)
        await until(lambda: bool(sim.webhooks) and sim.webhooks[0].reply_status == 503)
    finally:
        started = time.monotonic()
        await sim.stop()
    assert time.monotonic() - started < 1.5
    assert len(catcher.hooks) == 1
    await asyncio.sleep(2.2)  # past the first retry: it never comes
    assert len(catcher.hooks) == 1


async def test_thousands_of_jobs_cost_one_timer_each(catcher: Catcher):
    config = hook_config(catcher.url, gen_time=60, max_concurrent=5000, balance=10**9)
    async with Simulator(config) as sim:
        for _ in range(1000):
            sim.state.submit(KEY, sim.state.parse(Kind.TEXT, t2v()), "t")
        assert sim.webhook_sender is not None and sim.webhook_sender.pending == 1000
        assert len(asyncio.all_tasks()) < 20  # timers, not tasks
