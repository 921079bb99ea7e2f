"""Deciding when to sync application commands with Discord.

Discord allows about 200 command creates per day per guild, so global definitions are sent
only when they changed since the last sync (a hash kept in the database) or when asked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Protocol

import discord

if TYPE_CHECKING:
    from discord import app_commands

log = logging.getLogger(__name__)

SYNC_HASH_KEY = "commands.global_hash"


class MetaStore(Protocol):
    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


def definitions_hash(tree: app_commands.CommandTree[discord.Client]) -> str:
    """A stable hash of every global command definition, as Discord would receive them."""
    payload = sorted(
        (command.to_dict(tree) for command in tree.get_commands()),
        key=lambda item: (str(item.get("type", 1)), item["name"]),
    )
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


async def sync_commands(
    tree: app_commands.CommandTree[discord.Client],
    store: MetaStore,
    *,
    dev_guild_id: int | None,
    force_global: bool,
) -> list[str]:
    """Sync as the README's set-up steps say; return what was synced, for the log and for tests."""
    synced: list[str] = []
    if dev_guild_id is not None:
        guild = discord.Object(id=dev_guild_id)
        tree.copy_global_to(guild=guild)
        commands = await tree.sync(guild=guild)
        log.info("Synced %d commands to the dev guild %d", len(commands), dev_guild_id)
        synced.append(f"guild:{dev_guild_id}")
    current = definitions_hash(tree)
    previous = await store.get_meta(SYNC_HASH_KEY)
    if force_global or (dev_guild_id is None and previous != current):
        commands = await tree.sync()
        await store.set_meta(SYNC_HASH_KEY, current)
        log.info("Synced %d commands globally", len(commands))
        synced.append("global")
    elif dev_guild_id is None:
        log.info("Global commands unchanged since the last sync; not syncing")
    return synced
