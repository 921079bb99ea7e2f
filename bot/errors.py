"""Errors that reach a member as one short ephemeral line."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.refusal import Refusal


class UserFacingError(Refusal, app_commands.AppCommandError):
    """A refusal raised by the Discord side (a check, a cog); it is mapped as every
    ``Refusal`` is."""


def require_guild(interaction: discord.Interaction[Any]) -> int:
    """The server an interaction came from; commands work in servers only."""
    if interaction.guild_id is None:
        raise UserFacingError("This command works in servers only.")
    return interaction.guild_id


def require_manage_server(interaction: discord.Interaction[Any], what: str) -> int:
    """The server's id, if the invoker may moderate it. ``default_permissions`` only shapes
    the client's menus (server admins can override it), so the bot checks itself."""
    guild_id = require_guild(interaction)
    if not interaction.permissions.manage_guild:
        raise UserFacingError(f"You need the Manage Server permission to {what}; nothing changed.")
    return guild_id
