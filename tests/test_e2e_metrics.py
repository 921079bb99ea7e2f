"""Metrics and health end to end: the real bot (real discord.py) with ``METRICS_PORT`` against
the fake Discord and the simulator, scraped over HTTP as Prometheus would; and
``python -m bot`` serving them as an operator runs it."""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import discord.gateway
import pytest
from fakediscord import FakeDiscord, child_env
from prometheus_client.parser import text_string_to_metric_families

from bot.simulator import MODERATION_MARKER
from bot.store.models import JobState

ROOT = Path(__file__).resolve().parents[1]
COST = 45  # v4.5 540p 5 s
WEBHOOK_EDIT = r"^/webhooks/\d+/[^/]+/messages/"

Samples = dict[str, list[tuple[dict[str, str], float]]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=5)
        ) as response,
    ):
        return response.status, await response.text()


async def scrape(port: int) -> tuple[str, Samples]:
    status, text = await get(port, "/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(
        number
        for found, number in samples.get(name, [])
        if all(found.get(key) == wanted for key, wanted in labels.items())
    )


async def until_status(port: int, wanted: int, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await get(port, "/healthz")
            if status == wanted:
                return body
            await asyncio.sleep(0.05)


async def test_one_video_job_is_measured_from_command_to_delivery(world: Any) -> None:
    port = free_port()
    await world.start_bot(metrics_port=port)
    # Discord refuses the first edit of the status message once: counted as a 429.
    limited = world.fake.rate_limit("PATCH", WEBHOOK_EDIT, retry_after=0.05, count=1)

    handle = await world.video()
    assert (await handle.response(timeout=5)).accepted
    job = await world.latest_job()
    assert (await world.job_final(job.id)).state is JobState.DONE
    refused = await world.video(world.other, prompt=f"a cat {MODERATION_MARKER}")
    assert (await refused.response(timeout=5)).accepted
    moderated = await world.latest_job(world.other)
    assert (await world.job_final(moderated.id)).state is JobState.FAILED
    assert limited.hits == 1

    text, samples = await scrape(port)

    # Jobs: both accepted and ended here; nothing left in the database's queue.
    assert value(samples, "pixbot_jobs_accepted_total", kind="video") == 2
    assert value(samples, "pixbot_jobs_finished_total", state="done", kind="video") == 1
    assert value(samples, "pixbot_jobs_finished_total", state="failed", kind="video") == 1
    assert value(samples, "pixbot_jobs", state="queued") == 0
    assert value(samples, "pixbot_jobs", state="generating") == 0
    assert value(samples, "pixbot_queue_depth") == 0
    assert value(samples, "pixbot_database_up") == 1
    # Credits: two reserved; one committed, one released by the moderation refusal.
    assert value(samples, "pixbot_credits_reserved_total") == 2 * COST
    assert value(samples, "pixbot_credits_committed_total") == COST
    assert value(samples, "pixbot_credits_released_total") == COST
    assert value(samples, "pixbot_credits_refunded_total") == 0
    # PixVerse: each endpoint the jobs used, by template.
    requests = "pixbot_pixverse_requests_total"
    assert value(samples, requests, endpoint="/image/upload", outcome="ok") == 2
    assert value(samples, requests, endpoint="/video/img/generate", outcome="ok") == 2
    assert value(samples, requests, endpoint="/video/result/{id}", outcome="ok") >= 2
    assert value(samples, requests, endpoint="download", outcome="ok") == 1
    assert value(samples, "pixbot_pixverse_errors_total") == 0
    latency = "pixbot_pixverse_request_seconds_count"
    assert value(samples, latency, endpoint="/video/img/generate") == 2
    # Delivery: each final status shown once, its delay observed.
    assert value(samples, "pixbot_delivery_delay_seconds_count", state="done") == 1
    assert value(samples, "pixbot_delivery_delay_seconds_count", state="failed") == 1
    assert 0 < value(samples, "pixbot_delivery_delay_seconds_sum", state="done") < 15
    # Discord: the interaction answers, the edits with their 429, the gateway's handshake.
    discord_requests = "pixbot_discord_requests_total"
    callback = "/interactions/{id}/{token}/callback"
    edit = "/webhooks/{id}/{token}/messages/{id}"
    assert value(samples, discord_requests, method="POST", route=callback) == 2
    assert value(samples, discord_requests, method="PATCH", route=edit, status="429") == 1
    assert value(samples, discord_requests, method="PATCH", route=edit, status="200") >= 2
    assert value(samples, discord_requests, route="gateway", status="101") == 1
    ratelimited = "pixbot_discord_ratelimited_total"
    assert value(samples, ratelimited, method="PATCH", route=edit, scope="user") == 1
    # Nothing that names a member, a message or an interaction reaches a label.
    for secret in (handle.token, refused.token, world.fake.bot_token):
        assert secret not in text
    routes = {labels["route"] for labels, _ in samples[discord_requests]}
    for snowflake in (world.guild.id, world.channel.id, world.member.id, handle.original.id):
        assert not any(str(snowflake) in route for route in routes)
    assert all(route == "gateway" or route.startswith("/") for route in routes)
    # And it is healthy.
    assert value(samples, "pixbot_gateway_up", shard="0") == 1
    status, body = await get(port, "/healthz")
    assert (status, '"status": "ok"' in body) == (200, True)


async def test_healthz_is_503_while_the_gateway_is_down_and_200_once_it_is_back(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    await world.start_bot(metrics_port=port)
    await until_status(port, 200)
    # The reconnection waits until the test lets it: the bot is disconnected meanwhile.
    gate = asyncio.Event()
    connect = discord.gateway.DiscordWebSocket.from_client

    async def held(cls: Any, client: Any, **options: Any) -> Any:
        await asyncio.wait_for(gate.wait(), timeout=10)
        return await connect(client, **options)

    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "from_client", classmethod(held))

    await world.fake.drop_connections(4000)
    body = await until_status(port, 503)
    assert "disconnected" in body and '"database": "ok"' in body
    _, samples = await scrape(port)
    assert value(samples, "pixbot_gateway_up", shard="0") == 0

    gate.set()
    await until_status(port, 200)


async def test_healthz_is_503_when_the_database_is_closed(world: Any) -> None:
    port = free_port()
    bot = await world.start_bot(metrics_port=port)
    await until_status(port, 200)

    await bot.store.close()

    body = await until_status(port, 503)
    assert '"gateway": "ok"' in body and "not answering" in body
    _, samples = await scrape(port)
    assert value(samples, "pixbot_database_up") == 0


async def test_without_metrics_port_nothing_is_served_and_nothing_is_traced(world: Any) -> None:
    bot = await world.start_bot()
    assert bot.metrics is None and bot.metrics_server is None
    assert bot.http.http_trace is None


# -- python -m bot ---------------------------------------------------------------------------


async def start_process(fake: FakeDiscord, workdir: Path, **settings: str) -> Any:
    env = child_env(fake, workdir, code=ROOT, LOG_LEVEL="INFO", **settings)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--simulate",
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_bot_process_serves_metrics_and_health(tmp_path: Path) -> None:
    port = free_port()
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Pixel Lounge")
        process = await start_process(
            fake, tmp_path, DEV_GUILD_ID=str(guild.id), METRICS_PORT=str(port)
        )
        try:
            await fake.wait_until_ready(timeout=20)
            await until_status(port, 200, timeout=20)
            text, samples = await scrape(port)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=10)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        output = (await process.stdout.read()).decode(errors="replace")
    assert code == 0, output
    assert f"Serving metrics at http://127.0.0.1:{port}/metrics" in output
    assert value(samples, "pixbot_database_up") == 1
    assert "process_cpu_seconds_total" in samples  # the process's own numbers too
    assert fake.bot_token not in text


async def test_bot_process_with_its_metrics_port_taken_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Pixel Lounge")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            process = await start_process(
                fake, tmp_path, DEV_GUILD_ID=str(guild.id), METRICS_PORT=str(port)
            )
            try:
                code = await asyncio.wait_for(process.wait(), timeout=30)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        output = (await process.stdout.read()).decode(errors="replace")
    assert code == 2, output
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "METRICS_PORT" in line]
    assert f"METRICS_PORT {port} on METRICS_HOST 127.0.0.1 cannot be served" in line
