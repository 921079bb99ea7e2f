"""Runner benchmark: hundreds of members' jobs through the real JobRunner and simulator.

Each member starts one job at once; the runner works through them with MAX_ACTIVE_JOBS in
flight against the PixVerse simulator over real HTTP (generation time --gen-time), with a
recording status reporter. Printed: wall time, jobs/s, PixVerse requests per job (polls
included), the peak request rate, how long members waited for their turn, and memory.

    python bench/runner.py [--members 300] [--max-active 5] [--gen-time 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.jobs.progress import JobUpdate, StatusTarget
from bot.jobs.runner import JobRunner, RunnerConfig
from bot.jobs.schedule import PollSchedule
from bot.pixverse import PixVerseClient
from bot.pixverse.rules import Model, Quality
from bot.simulator import Simulator, SimulatorConfig
from bot.store import JobInput, JobParams, NewJob, Store


class CountingReporter:
    def __init__(self) -> None:
        self.updates = 0
        self.finished: dict[int, float] = {}

    async def show(self, update: JobUpdate) -> StatusTarget | None:
        self.updates += 1
        if update.final:
            self.finished[update.job_id] = time.monotonic()
        return update.target


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 10, 160)).save(out, format="PNG")
    return out.getvalue()


async def main(members: int, max_active: int, gen_time: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "bench.sqlite3")
        sim = Simulator(SimulatorConfig(gen_time=gen_time, max_concurrent=max_active, seed=1))
        await sim.start()
        session = aiohttp.ClientSession()
        client = PixVerseClient(session, base_url=sim.base_url, api_key="bench")
        reporter = CountingReporter()
        # Production polling shape and poll rate limit, scaled to the simulator's generation
        # time (a real 540p job takes about 45 s).
        scale = gen_time / 45
        config = RunnerConfig(
            max_active=max_active,
            schedule=PollSchedule(
                first_delay=5 * scale,
                min_delay=3 * scale,
                steady_delay=5 * scale,
                late_delay=15 * scale,
            ),
            requests_per_second=4 / scale,
            default_estimate=gen_time,
            idle_check=0.5,
        )
        image = png()
        params = JobParams(prompt="a cat", model=Model.V4_5, quality=Quality.P540, duration=5)
        created: dict[int, float] = {}
        for member in range(members):
            job = await store.jobs.create(
                NewJob(
                    guild_id=1,
                    channel_id=2,
                    user_id=10_000 + member,
                    params=params,
                    input=JobInput("cat.png", "image/png", image),
                ),
                max_jobs_per_user=2,
                daily_default=1_000,
            )
            created[job.id] = time.monotonic()
        runner = JobRunner(store, client, reporter, config)
        started = time.monotonic()
        await runner.start()
        async with asyncio.timeout(members * gen_time):
            while len(reporter.finished) < members:
                await asyncio.sleep(0.05)
        wall = time.monotonic() - started
        await runner.stop()

        routes = Counter(r.route for r in sim.requests)
        per_second = Counter(int(r.at) for r in sim.requests)
        waits = sorted(reporter.finished[j] - created[j] for j in created)
        ideal = members / max_active * gen_time
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"members {members}, MAX_ACTIVE_JOBS {max_active}, generation {gen_time:.1f} s")
        print(
            f"wall {wall:.1f} s (ideal {ideal:.1f} s: {ideal / wall:.0%} of the account's "
            f"concurrency used), {members / wall:.1f} jobs/s"
        )
        polls = routes["result"] / members
        total = sum(routes.values()) / members
        print(
            f"PixVerse requests per job: {total:.2f} ({polls:.2f} result polls), by route: "
            f"{dict(routes)}"
        )
        if per_second:
            print(f"peak PixVerse requests in one second: {max(per_second.values())}")
        p50, p95 = statistics.median(waits), waits[int(len(waits) * 0.95) - 1]
        print(f"time to result: p50 {p50:.1f} s, p95 {p95:.1f} s, max {waits[-1]:.1f} s")
        print(
            f"status updates handed to the reporter: {reporter.updates} "
            f"({reporter.updates / members:.1f} per job, before coalescing)"
        )
        print(f"peak RSS {rss_mib:.0f} MiB")
        await session.close()
        await sim.stop()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--max-active", type=int, default=5)
    parser.add_argument("--gen-time", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.members, args.max_active, args.gen_time))
