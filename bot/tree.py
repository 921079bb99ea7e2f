"""One road by which errors reach members: commands (the tree's ``on_error``), buttons,
modals and autocomplete all answer through ``answer_error``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import discord
from discord import app_commands

from bot.refusal import Refusal

log = logging.getLogger(__name__)

_UNEXPECTED = "Something went wrong on the bot's side; nothing was charged. Please try again."
T = TypeVar("T")
P = ParamSpec("P")


def user_message(error: BaseException) -> str | None:
    """The member-facing text for a known error, or None for a bug."""
    if isinstance(error, Refusal):
        return error.message
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
        command = interaction.command.qualified_name if interaction.command else "?"
        await answer_error(interaction, original, where=f"Command /{command}")


async def answer_error(
    interaction: discord.Interaction[Any],
    error: BaseException,
    *,
    where: str,
    unexpected: str = _UNEXPECTED,
) -> None:
    """Tell the member why, ephemerally: a refusal's own words, or ``unexpected`` for a bug
    (logged with its traceback). An autocomplete cannot show text: it offers no choices, and
    the command itself refuses with the reason when it is sent."""
    message = user_message(error)
    if message is None:
        log.error("%s failed", where, exc_info=error)
        message = unexpected
    if interaction.type is discord.InteractionType.autocomplete:
        if not interaction.response.is_done():
            await interaction.response.autocomplete([])
        return
    await send_ephemeral(interaction, message)


def guarded_autocomplete(
    func: Callable[P, Coroutine[Any, Any, list[T]]],
) -> Callable[P, Coroutine[Any, Any, list[T]]]:
    """Route an autocomplete callback's errors through ``answer_error`` (discord.py would
    only log them and leave the member's picker failing)."""

    @functools.wraps(func)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> list[T]:
        try:
            return await func(*args, **kwargs)
        except Exception as exc:
            interaction = next(a for a in args if isinstance(a, discord.Interaction))
            await answer_error(interaction, exc, where=f"Autocomplete {func.__qualname__}")
            return []

    return guarded


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
