"""``python -m bot [--simulate] [--sync]``: start the bot."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import aiohttp
import discord

from bot.app import make_bot
from bot.logs import configured_secrets, setup_logging
from bot.metrics import MetricsUnavailable
from bot.settings import Settings, SettingsProblem, load_settings
from bot.store.db import StorageUnavailable

log = logging.getLogger("bot")

EXIT_SETTINGS = 2
EXIT_LOGIN = 3
EXIT_NETWORK = 4
EXIT_STORAGE = 5
# Gateway close codes that a setting fixes (Discord's docs, "Gateway Close Event Codes").
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011


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
    bot = make_bot(settings, force_global_sync=force_global_sync)
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
    except discord.ConnectionClosed as exc:
        log.error("%s", gateway_refusal(exc))
        a_setting_fixes_it = exc.code in (CLOSE_INVALID_SHARD, CLOSE_SHARDING_REQUIRED)
        return EXIT_SETTINGS if a_setting_fixes_it else EXIT_NETWORK
    except StorageUnavailable as exc:
        # One line naming the file and what to do; the traceback says nothing more to an
        # operator whose disk is read-only or full.
        log.error("%s", exc.operator_line)
        return EXIT_STORAGE
    except MetricsUnavailable as exc:
        log.error("%s", exc)  # the port is a setting to change, like any malformed one
        return EXIT_SETTINGS
    except (aiohttp.ClientError, OSError) as exc:
        log.error("Could not reach Discord (%s); check the network and try again", exc)
        return EXIT_NETWORK
    finally:
        if stopping:
            await stopping[0]
    return 0


def gateway_refusal(exc: discord.ConnectionClosed) -> str:
    """One line for a gateway close that discord.py does not recover from."""
    if exc.code == CLOSE_SHARDING_REQUIRED:
        return (
            "Discord requires sharding: a shard may serve at most 2,500 servers; set SHARD_COUNT "
            '(about one shard per 1,000 servers; see the README\'s "Running at scale")'
        )
    if exc.code == CLOSE_INVALID_SHARD:
        return (
            f"Discord refused shard {exc.shard_id} (invalid shard): check SHARD_COUNT and SHARD_IDS"
        )
    return f"Discord closed the gateway connection (code {exc.code}: {exc.reason or 'no reason'})"


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
    return asyncio.run(run(settings, force_global_sync=args.sync))


if __name__ == "__main__":
    sys.exit(main())
