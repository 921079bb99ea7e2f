"""``python -m bot [--simulate] [--sync]``: start the bot.
``python -m bot migrate-to-postgres [--sqlite PATH] [--url URL]``: move its data to PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import discord

from bot.app import make_bot
from bot.logs import configured_secrets, setup_logging
from bot.metrics import MetricsUnavailable
from bot.settings import Settings, SettingsProblem, load_settings
from bot.store.db import StorageUnavailable
from bot.store.move import MoveRefused, move_to_postgres
from bot.store.pg import redacted

log = logging.getLogger("bot")

EXIT_SETTINGS = 2
EXIT_LOGIN = 3
EXIT_NETWORK = 4
EXIT_STORAGE = 5
# Gateway close codes that a setting fixes (Discord's docs, "Gateway Close Event Codes").
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011
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


def parse_move_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot migrate-to-postgres",
        description="Copy the bot's SQLite database into an empty PostgreSQL database, so a "
        "server keeps its members' quotas and history when it moves to several processes. "
        "Stop the bot first.",
    )
    parser.add_argument(
        "--sqlite",
        type=Path,
        default=None,
        help="the SQLite file (default: DATABASE_PATH, else data/bot.sqlite3)",
    )
    parser.add_argument(
        "--url",
        default=None,
        help="the PostgreSQL database, postgresql://user:password@host:5432/db (default: "
        "DATABASE_URL)",
    )
    return parser.parse_args(argv)


def move_main(argv: list[str]) -> int:
    """``python -m bot migrate-to-postgres``: see bot/store/move.py."""
    args = parse_move_args(argv)
    logging.basicConfig(format="pixbot: %(message)s", stream=sys.stderr, level=logging.INFO)
    try:
        settings: Settings | None = load_settings(simulate=True)
    except SettingsProblem:
        settings = None  # the copy needs only the two databases
    sqlite_path = args.sqlite or (
        settings.database_path
        if settings
        else Path(os.environ.get("DATABASE_PATH", "data/bot.sqlite3"))
    )
    url = args.url or (
        settings.database_url.get_secret_value()
        if settings and settings.database_url
        else os.environ.get("DATABASE_URL")
    )
    if not url:
        log.error("Set DATABASE_URL (or pass --url) to the empty PostgreSQL database to fill")
        return EXIT_SETTINGS
    if urlsplit(url).password:
        setup_logging("INFO", [str(urlsplit(url).password)])
    try:
        report = asyncio.run(move_to_postgres(Path(sqlite_path), url))
    except MoveRefused as refused:
        log.error("%s", refused)
        return EXIT_STORAGE
    except StorageUnavailable as exc:
        log.error("%s", exc.operator_line)
        return EXIT_STORAGE
    log.info(
        "Copied %d row(s) from %s into %s: set DATABASE_URL for every process and start them",
        report.total,
        sqlite_path,
        redacted(url),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["migrate-to-postgres"]:
        return move_main(argv[1:])
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
