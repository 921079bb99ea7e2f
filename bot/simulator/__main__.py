"""``python -m bot.simulator --port 8765``: run the PixVerse simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from pydantic import ValidationError

from bot.simulator.config import DEFAULT_TEMPLATES, NO_HD, SimulatorConfig
from bot.simulator.server import Simulator
from bot.simulator.state import MODERATION_MARKER

log = logging.getLogger("bot.simulator")

EXIT_BIND = 1
EXIT_USAGE = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.simulator",
        description=(
            "A local PixVerse API: uploads, image/text-to-video, extend, balance and result "
            "polling, with a served sample mp4. Spends no credits. A prompt containing "
            f"{MODERATION_MARKER!r} ends in moderation (status 7)."
        ),
    )
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--gen-time", type=float, default=10.0, help="seconds a job generates (default 10)"
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="share of jobs that fail (0..1)"
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="the only accepted API-KEY (default: $PIXVERSE_API_KEY; unset: any non-empty key)",
    )
    parser.add_argument("--max-concurrent", type=int, default=5, help="jobs at once per key")
    parser.add_argument("--balance", type=int, default=100_000, help="starting credits per key")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible runs")
    parser.add_argument(
        "--video-size-bytes", type=int, default=None, help="pad served videos to this size"
    )
    parser.add_argument(
        "--public-base-url", default=None, help="base URL put in returned media URLs"
    )
    parser.add_argument(
        "--template",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="activate an effect template id (repeatable; the §4.3 examples are active)",
    )
    parser.add_argument(
        "--template-no-hd",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="activate a template that refuses 720p/1080p (500071)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> SimulatorConfig:
    templates = dict(DEFAULT_TEMPLATES)
    templates.update({template: frozenset() for template in args.template})
    templates.update({template: NO_HD for template in args.template_no_hd})
    return SimulatorConfig(
        api_key=args.api_key or os.environ.get("PIXVERSE_API_KEY") or None,
        gen_time=args.gen_time,
        failure_rate=args.failure_rate,
        max_concurrent=args.max_concurrent,
        balance=args.balance,
        seed=args.seed,
        video_size_bytes=args.video_size_bytes,
        public_base_url=args.public_base_url,
        activated_templates=templates,
    )


async def serve(config: SimulatorConfig, host: str, port: int) -> int:
    sim = Simulator(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start(host=host, port=port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return EXIT_BIND
    log.info(
        "gen time %.1fs, failure rate %.2f, %d jobs at once per key, %s",
        config.gen_time,
        config.failure_rate,
        config.max_concurrent,
        "API key configured" if config.api_key else "any non-empty API key accepted",
    )
    log.info("use PIXVERSE_BASE_URL=%s", sim.base_url)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = build_config(args)
    except ValidationError as exc:
        # Inputs are left out of the message: one of them may be the API key.
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        log.error("invalid option: %s", problems)
        return EXIT_USAGE
    return asyncio.run(serve(config, args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
