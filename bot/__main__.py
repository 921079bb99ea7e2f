"""``python -m bot [--simulate] [--sync]``: start the bot."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

import aiohttp
import discord

from bot.app import PixBot
from bot.logs import configured_secrets, setup_logging
from bot.settings import Settings, SettingsProblem, load_settings
from bot.store.db import StorageUnavailable

log = logging.getLogger("bot")

EXIT_SETTINGS = 2
EXIT_LOGIN = 3
EXIT_NETWORK = 4
EXIT_STORAGE = 5
# Allocations between two collections of the youngest generation (Python's default: 700).
# A thousand jobs in flight allocate briskly and keep little: fewer, larger collections
# cost less CPU, for a few MB of garbage held a little longer (docs/architecture.md, "CPU").
GC_YOUNG_THRESHOLD = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="pixbot: turn an image and a prompt into a video with PixVerse, on Discord.",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="use the embedded PixVerse simulator instead of the real API (no credits spent)",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="sync the slash commands globally even if they did not change",
    )
    return parser.parse_args(argv)


async def run(settings: Settings, *, force_global_sync: bool) -> int:
    bot = PixBot(settings, force_global_sync=force_global_sync)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def request_stop(signame: str) -> None:
        if not stopping:
            log.info("Received %s; stopping", signame)
            stopping.append(loop.create_task(bot.close()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop, sig.name)
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure:
        log.error("Discord refused DISCORD_TOKEN: check the bot token in the developer portal")
        return EXIT_LOGIN
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused the gateway intents requested by the bot")
        return EXIT_LOGIN
    except StorageUnavailable as exc:
        # One line naming the file and what to do; the traceback says nothing more to an
        # operator whose disk is read-only or full.
        log.error("%s", exc.operator_line)
        return EXIT_STORAGE
    except (aiohttp.ClientError, OSError) as exc:
        log.error("Could not reach Discord (%s); check the network and try again", exc)
        return EXIT_NETWORK
    finally:
        if stopping:
            await stopping[0]
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(simulate=args.simulate)
    except SettingsProblem as problem:
        # One line, no traceback: the operator only needs to know which variable to fix.
        logging.basicConfig(format="pixbot: %(message)s", stream=sys.stderr)
        log.error("%s", problem)
        return EXIT_SETTINGS
    setup_logging(settings.log_level, configured_secrets(settings))
    # What the imports made lives as long as the process: frozen, the full collections
    # that come every few minutes under load no longer walk through it.
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    return asyncio.run(run(settings, force_global_sync=args.sync))


if __name__ == "__main__":
    sys.exit(main())
