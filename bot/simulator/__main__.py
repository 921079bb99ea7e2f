"""``python -m bot.simulator --port 8765``: run the PixVerse simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from pydantic import ValidationError

from bot.pixverse.catalogue import CatalogueError, load_catalogue
from bot.simulator.config import DEFAULT_TEMPLATES, NO_HD, SimulatorConfig
from bot.simulator.server import Simulator
from bot.simulator.state import MODERATION_MARKER

log = logging.getLogger("bot.simulator")

EXIT_BIND = 1
EXIT_USAGE = 2


def seconds_range(text: str) -> tuple[float, float]:
    """``20:120`` -> (20.0, 120.0)."""
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError
        bounds = (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH seconds, got {text!r}") from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise argparse.ArgumentTypeError(f"need 0 <= LOW <= HIGH, got {text!r}")
    return bounds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.simulator",
        description=(
            "A local PixVerse API: uploads, image/text-to-video, transitions, extend, balance "
            "and result polling, with a served sample mp4. Spends no credits. A prompt containing "
            f"{MODERATION_MARKER!r} ends in moderation (status 7)."
        ),
    )
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--gen-time", type=float, default=10.0, help="seconds a job generates (default 10)"
    )
    parser.add_argument(
        "--gen-time-range",
        type=seconds_range,
        default=None,
        metavar="LOW:HIGH",
        help="draw each job's generation time in this range, longer for higher quality and "
        "duration (replaces --gen-time; seeded by --seed)",
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
        help="activate an effect template id (repeatable; PixVerse's example ids are active)",
    )
    parser.add_argument(
        "--template-no-hd",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="activate a template that refuses 720p/1080p (500071)",
    )
    hooks = parser.add_argument_group("webhooks (see docs/pixverse.md)")
    hooks.add_argument(
        "--webhook-url", default=None, help="POST each finished job's signed webhook here"
    )
    hooks.add_argument(
        "--webhook-secret",
        default=None,
        help="signing secret (default: $PIXVERSE_WEBHOOK_SECRET); needed with --webhook-url",
    )
    hooks.add_argument(
        "--webhook-loss-rate", type=float, default=0.0, help="share of webhooks never sent"
    )
    hooks.add_argument(
        "--webhook-late-rate", type=float, default=0.0, help="share of webhooks sent late"
    )
    hooks.add_argument(
        "--webhook-late-delay",
        type=float,
        default=30.0,
        help="seconds a late webhook waits (default 30)",
    )
    parser.add_argument(
        "--catalogue",
        default=None,
        metavar="FILE",
        help="a model catalogue (TOML) replacing the built-in one; give the bot's "
        "PIXVERSE_CATALOGUE file so both check and price alike",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    args.webhook_secret = args.webhook_secret or os.environ.get("PIXVERSE_WEBHOOK_SECRET") or None
    if args.webhook_url and not args.webhook_secret:
        parser.error("--webhook-url needs --webhook-secret (or $PIXVERSE_WEBHOOK_SECRET)")
    return args


def build_config(args: argparse.Namespace) -> SimulatorConfig:
    """The simulator's settings; CatalogueError or ValidationError when unusable."""
    templates = dict(DEFAULT_TEMPLATES)
    templates.update({template: frozenset() for template in args.template})
    templates.update({template: NO_HD for template in args.template_no_hd})
    return SimulatorConfig(
        catalogue=load_catalogue(args.catalogue),
        api_key=args.api_key or os.environ.get("PIXVERSE_API_KEY") or None,
        gen_time=args.gen_time,
        gen_time_range=args.gen_time_range,
        failure_rate=args.failure_rate,
        max_concurrent=args.max_concurrent,
        balance=args.balance,
        seed=args.seed,
        video_size_bytes=args.video_size_bytes,
        public_base_url=args.public_base_url,
        activated_templates=templates,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        webhook_loss_rate=args.webhook_loss_rate,
        webhook_late_rate=args.webhook_late_rate,
        webhook_late_delay=args.webhook_late_delay,
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
    gen_range = config.gen_time_range
    log.info(
        "gen time %s, failure rate %.2f, %d jobs at once per key, %s",
        f"{gen_range[0]:g}-{gen_range[1]:g}s" if gen_range else f"{config.gen_time:.1f}s",
        config.failure_rate,
        config.max_concurrent,
        "API key configured" if config.api_key else "any non-empty API key accepted",
    )
    log.info("use PIXVERSE_BASE_URL=%s", sim.base_url)
    if config.webhook_url:
        log.info(
            "webhooks to %s (%.0f%% lost, %.0f%% %gs late)",
            config.webhook_url,
            config.webhook_loss_rate * 100,
            config.webhook_late_rate * 100,
            config.webhook_late_delay,
        )
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
    except CatalogueError as exc:
        log.error("invalid --catalogue: %s", exc)
        return EXIT_USAGE
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
