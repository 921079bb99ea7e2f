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
from bot.jobs.webhook import WebhookReceiver
from bot.pixverse.signature import sign
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


async def test_a_replayed_nonce_is_taken_once(receiver):
    session, url, seen = receiver
    data, headers = signed({"id": 7, "status": 1})
    for _ in range(2):
        async with session.post(url, data=data, headers=headers) as response:
            assert response.status == 200
    assert seen == [7]


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
