"""One road by which errors reach members: commands (the tree's ``on_error``), buttons,
modals and autocomplete all answer through ``answer_error``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import aiohttp
import discord
from discord import app_commands

from bot.refusal import Refusal

log = logging.getLogger(__name__)

_UNEXPECTED = "Something went wrong on the bot's side; nothing was charged. Please try again."
T = TypeVar("T")
SEND_ATTEMPTS = 2
RESEND_DELAY = 0.2  # seconds; well inside Discord's 3 s for a first answer
ALREADY_ACKNOWLEDGED = 40060  # Discord's code when an interaction was answered already
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
    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """Commands work in servers only. ``guild_only`` merely asks Discord's client to hide
        them in DMs (a command synced globally before it, or an older client, still sends
        one), and returning False here would leave the member unanswered: raise, so the
        refusal goes the usual road."""
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        return True

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        original: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            original = error.original
        await answer_error(interaction, original, where=f"Command /{_command_name(interaction)}")


def _command_name(interaction: discord.Interaction[Any]) -> str:
    # Resolving the command can itself fail (a DM, a command this tree does not know).
    try:
        command = interaction.command
    except app_commands.AppCommandError:
        command = None
    if command is not None:
        return command.qualified_name
    data: dict[str, Any] = dict(interaction.data or {})
    return str(data.get("name", "?"))


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
    """Answer through the response, else a followup; a dead token is only logged.

    discord.py already waits out a 429 and retries a 5xx on these routes. A connection lost
    on the way is not retried by it, and the refusal would never arrive: try once more. If
    the lost attempt did arrive, the second callback is refused as already acknowledged
    (40060), so the member does not read it twice; a followup may, rarely, show twice,
    which beats a member left with no answer."""
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            await _send_ephemeral_once(interaction, message)
            return
        except discord.HTTPException as exc:
            if attempt > 1 and exc.code == ALREADY_ACKNOWLEDGED:
                log.info("The lost answer had arrived after all")
            else:
                log.warning("Could not tell the member about an error: %s", exc)
            return
        except (aiohttp.ClientError, OSError) as exc:
            if attempt == SEND_ATTEMPTS:
                log.warning("Could not tell the member about an error: %r", exc)
                return
            log.info("Lost the connection answering an interaction (%r); trying again", exc)
            await asyncio.sleep(RESEND_DELAY)


async def _send_ephemeral_once(interaction: discord.Interaction[Any], message: str) -> None:
    if interaction.response.is_done():
        await interaction.followup.send(
            message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )
    else:
        await interaction.response.send_message(
            message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )
