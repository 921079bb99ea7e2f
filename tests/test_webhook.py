"""PixVerse's signed result webhooks: verified calls make the runner look at once."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from bot.jobs.runner import RunnerConfig
from bot.jobs.schedule import PollSchedule
from bot.jobs.webhook import MAX_SKEW, WebhookReceiver
from bot.pixverse.signature import sign, verify
from bot.simulator import SimulatorConfig

SECRET = "whsec-test-secret"


def signed(
    body: dict, *, secret: str = SECRET, nonce: str = "n" * 32, ts: float | None = None, order=None
):
    timestamp = str(int(ts if ts is not None else time.time()))
    items = order(body.items()) if order else body.items()
    canonical = urlencode([(k, str(v)) for k, v in items])
    headers = {
        "Webhook-Timestamp": timestamp,
        "Webhook-Nonce": nonce,
        "Webhook-Signature": sign(secret, timestamp, nonce, canonical),
        "Ai-Trace-Id": "trace",
        "Content-Type": "application/json",
    }
    return json.dumps(body), headers


@pytest.fixture
async def receiver():
    seen: list[int] = []
    hooks = WebhookReceiver(SECRET, seen.append)
    runner = web.AppRunner(hooks.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}/pixverse", seen
    await runner.cleanup()


async def test_a_verified_call_is_answered_ok_and_handed_on(receiver):
    session, url, seen = receiver
    data, headers = signed({"id": 425918148159561, "status": 1, "url": "https://x/v.mp4"})
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status == 200 and await response.text() == "ok"
    assert seen == [425918148159561]


async def test_sorted_key_order_is_accepted_too(receiver):
    session, url, seen = receiver
    data, headers = signed({"status": 1, "id": 7, "credits": 45}, order=sorted)
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status == 200
    assert seen == [7]


async def test_a_bad_signature_is_refused(receiver):
    session, url, seen = receiver
    data, headers = signed({"id": 7, "status": 1}, secret="someone-else")
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status == 401
    assert seen == []


async def test_a_stale_timestamp_is_refused(receiver):
    session, url, seen = receiver
    data, headers = signed({"id": 7, "status": 1}, ts=time.time() - 3600)
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status == 401
    assert seen == []


async def test_a_replayed_nonce_is_refused(receiver):
    session, url, seen = receiver
    data, headers = signed({"id": 7, "status": 1})
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status == 200
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status == 409 and await response.text() == "replayed"
    assert seen == [7]


async def test_a_nonce_is_refused_even_with_a_new_signed_body(receiver):
    session, url, seen = receiver
    first, headers = signed({"id": 7, "status": 1}, nonce="a" * 32)
    second, again = signed({"id": 8, "status": 1}, nonce="a" * 32)
    for data, hdrs in ((first, headers), (second, again)):
        async with session.post(url, data=data, headers=hdrs) as response:
            pass
    assert response.status == 409
    assert seen == [7]


async def test_a_tampered_body_is_refused(receiver):
    session, url, seen = receiver
    _, headers = signed({"id": 7, "status": 1})
    tampered = json.dumps({"id": 8, "status": 1})
    async with session.post(url, data=tampered, headers=headers) as response:
        assert response.status == 401
    assert seen == []


async def test_a_timestamp_from_the_future_is_refused(receiver):
    session, url, seen = receiver
    data, headers = signed({"id": 7, "status": 1}, ts=time.time() + 3600)
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status == 401
    assert seen == []


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf", "", "soon"])
async def test_a_timestamp_that_is_not_a_time_is_refused(receiver, stamp):
    session, url, seen = receiver
    data, headers = signed({"id": 7, "status": 1})
    # Signed over the odd timestamp itself: only the window check can refuse it.
    nonce = headers["Webhook-Nonce"]
    canonical = urlencode([("id", "7"), ("status", "1")])
    headers["Webhook-Timestamp"] = stamp
    headers["Webhook-Signature"] = sign(SECRET, stamp, nonce, canonical)
    async with session.post(url, data=data, headers=headers) as response:
        assert response.status in (400, 401)
    assert seen == []


async def test_a_call_without_nonce_or_signature_is_refused(receiver):
    session, url, seen = receiver
    for missing in ("Webhook-Nonce", "Webhook-Signature"):
        data, headers = signed({"id": 7, "status": 1})
        del headers[missing]
        async with session.post(url, data=data, headers=headers) as response:
            assert response.status == 400
    assert seen == []


def test_a_signature_that_is_not_ascii_never_matches():
    # hmac.compare_digest raises TypeError on non-ASCII text: that would be an HTTP 500.
    assert not verify(SECRET, "1", "n" * 32, {"id": 7}, "sïgnature")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clocked():
    """A receiver on a clock the test moves, remembering at most 3 nonces."""
    clock = FakeClock()
    seen: list[int] = []
    hooks = WebhookReceiver(SECRET, seen.append, clock=clock, nonce_memory=3)
    runner = web.AppRunner(hooks.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{port}/", seen, clock, hooks
    await runner.cleanup()


async def post(session, url, data, headers) -> int:
    async with session.post(url, data=data, headers=headers) as response:
        return response.status


async def test_a_replay_after_the_window_is_refused_as_stale(clocked):
    session, url, seen, clock, _hooks = clocked
    data, headers = signed({"id": 7, "status": 1}, ts=clock.now)
    assert await post(session, url, data, headers) == 200
    clock.now += MAX_SKEW + 1
    assert await post(session, url, data, headers) in (401, 409)
    clock.now += 2
    assert await post(session, url, data, headers) == 401
    assert seen == [7]


async def test_nonces_are_forgotten_once_their_window_ends(clocked):
    session, url, _seen, clock, hooks = clocked
    for n in range(2):
        data, headers = signed({"id": n, "status": 1}, nonce=f"{n:032d}", ts=clock.now)
        assert await post(session, url, data, headers) == 200
    assert len(hooks._nonces) == 2
    clock.now += MAX_SKEW + 2
    data, headers = signed({"id": 9, "status": 1}, nonce="9" * 32, ts=clock.now)
    assert await post(session, url, data, headers) == 200
    assert len(hooks._nonces) == 1


async def test_the_nonce_memory_is_bounded(clocked):
    session, url, seen, clock, hooks = clocked
    for n in range(6):
        data, headers = signed({"id": n, "status": 1}, nonce=f"{n:032d}", ts=clock.now)
        assert await post(session, url, data, headers) == 200
    assert len(hooks._nonces) == 3
    # The newest are the ones kept: replaying one of them is still refused.
    data, headers = signed({"id": 5, "status": 1}, nonce=f"{5:032d}", ts=clock.now)
    assert await post(session, url, data, headers) == 409
    assert seen == [0, 1, 2, 3, 4, 5]


def test_the_receiver_repr_hides_the_secret():
    assert SECRET not in repr(WebhookReceiver(SECRET, print))


async def test_malformed_calls_are_refused(receiver):
    session, url, seen = receiver
    async with session.post(url, data="not json", headers={"Webhook-Timestamp": "1"}) as r:
        assert r.status == 400
    assert seen == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_webhook_finishes_a_job_long_before_its_next_poll(world):
    port = free_port()
    slow_polls = RunnerConfig(
        schedule=PollSchedule(first_delay=60, min_delay=60, steady_delay=60, late_delay=60),
        idle_check=0.1,
        default_estimate=300,
        simulated=True,
    )
    bot = await world.start_bot(
        runner=slow_polls,
        simulator=SimulatorConfig(gen_time=300),
        pixverse_webhook_secret=SECRET,
        webhook_port=port,
        webhook_host="127.0.0.1",
    )
    await (await world.video()).response(timeout=5)
    job = await world.latest_job()
    async with asyncio.timeout(10):
        while (job := await bot.store.jobs.get(job.id)).pixverse_video_id is None:
            await asyncio.sleep(0.02)
    bot.simulator.finish_now(job.pixverse_video_id)
    data, headers = signed({"id": job.pixverse_video_id, "status": 1})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/", data=data, headers=headers) as r:
            assert r.status == 200 and await r.text() == "ok"
    done = await world.job_final(job.id, timeout=10)
    assert done.state.value == "done"


async def test_refused_webhooks_make_the_running_bot_poll_nothing(world):
    """Bad signature, stale timestamp and a replay reach a running bot: none of them makes
    it ask PixVerse about the job; the one verified call does, once."""
    port = free_port()
    slow_polls = RunnerConfig(
        schedule=PollSchedule(first_delay=60, min_delay=60, steady_delay=60, late_delay=60),
        idle_check=0.1,
        default_estimate=300,
        simulated=True,
    )
    bot = await world.start_bot(
        runner=slow_polls,
        simulator=SimulatorConfig(gen_time=300),
        pixverse_webhook_secret=SECRET,
        webhook_port=port,
        webhook_host="127.0.0.1",
    )
    await (await world.video()).response(timeout=5)
    job = await world.latest_job()
    async with asyncio.timeout(10):
        while (job := await bot.store.jobs.get(job.id)).pixverse_video_id is None:
            await asyncio.sleep(0.02)
    video_id = job.pixverse_video_id
    assert bot.simulator is not None

    def polls() -> int:
        return sum(1 for r in bot.simulator.requests if r.path.endswith(f"/result/{video_id}"))

    url = f"http://127.0.0.1:{port}/"
    before = polls()
    async with aiohttp.ClientSession() as session:
        forged, headers = signed({"id": video_id, "status": 1}, secret="not-the-secret")
        assert await post(session, url, forged, headers) == 401
        stale, headers = signed({"id": video_id, "status": 1}, ts=time.time() - 3600)
        assert await post(session, url, stale, headers) == 401
        await asyncio.sleep(0.5)
        assert polls() == before

        genuine, headers = signed({"id": video_id, "status": 5})
        assert await post(session, url, genuine, headers) == 200
        async with asyncio.timeout(5):
            while polls() == before:
                await asyncio.sleep(0.02)
        after_genuine = polls()
        assert await post(session, url, genuine, headers) == 409
        await asyncio.sleep(0.5)
        assert polls() == after_genuine
