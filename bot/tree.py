"""The command tree: one road by which errors reach members."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.errors import UserFacingError

log = logging.getLogger(__name__)

_UNEXPECTED = "Something went wrong on the bot's side; nothing was charged. Please try again."


def user_message(error: BaseException) -> str | None:
    """The member-facing text for a known error, or None for a bug."""
    # Domain refusals from the services carry their own wording (duck-typed, so the
    # services need not import discord).
    if isinstance(error, UserFacingError):
        return error.message
    if getattr(error, "user_facing", False):
        return str(error)
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in servers only."
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"You need the {needed} permission to use this command."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.TransformerError):
        return "One of the options has a value Discord could not read: pick it again."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You cannot use this command here."
    return None


class PixTree(app_commands.CommandTree[Any]):
    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        original: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            original = error.original
        message = user_message(original)
        if message is None:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("Command /%s failed", command, exc_info=original)
            message = _UNEXPECTED
        await send_ephemeral(interaction, message)


async def send_ephemeral(interaction: discord.Interaction[Any], message: str) -> None:
    """Answer through the response, else a followup; a dead token is only logged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.response.send_message(
                message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except discord.HTTPException as exc:
        log.warning("Could not tell the member about an error: %s", exc)
