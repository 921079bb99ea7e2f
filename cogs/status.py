"""/status: how busy the bot is and whether PixVerse answers."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import require_guild
from bot.pixverse import AuthError, PixVerseError
from bot.ui.render import format_seconds

if TYPE_CHECKING:
    from bot.app import PixBot

log = logging.getLogger(__name__)
PING_TIMEOUT = 2.0  # the answer must still fit in Discord's 3-second window


class Status(commands.Cog):
    def __init__(self, bot: PixBot) -> None:
        self.bot = bot

    async def _pixverse_state(self) -> str:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                await self.bot.pixverse.balance()
        except AuthError:
            return "❌ refuses the bot's API key (tell the operator)"
        except (PixVerseError, TimeoutError) as exc:
            log.info("PixVerse status check failed: %r", exc)
            return "⚠️ not answering right now; jobs wait and retry"
        return "✅ answering" + (" (simulated)" if self.bot.simulated else "")

    @app_commands.command(name="status", description="Queue, running jobs, typical time, PixVerse")
    @app_commands.guild_only()
    async def status(self, interaction: discord.Interaction[PixBot]) -> None:
        guild_id = require_guild(interaction)
        stats = await self.bot.store.jobs.stats()
        settings = self.bot.settings
        embed = discord.Embed(title="pixbot status", colour=discord.Colour.blurple())
        embed.add_field(name="Waiting in the queue", value=str(stats.queued))
        embed.add_field(
            name="Running at PixVerse",
            value=f"{self.bot.runner.active} of {settings.max_active_jobs}",
        )
        key = (
            settings.default_model_name,
            settings.default_quality.value,
            settings.default_duration,
        )
        typical = stats.avg_generation_seconds.get(key)
        if typical is None and stats.avg_generation_seconds:
            values = sorted(stats.avg_generation_seconds.values())
            typical = values[len(values) // 2]
        embed.add_field(
            name="Typical generation time",
            value=format_seconds(typical) if typical is not None else "no finished jobs yet",
        )
        embed.add_field(name="PixVerse", value=await self._pixverse_state(), inline=False)
        guild = await self.bot.store.admin.guild_settings(guild_id)
        if guild.paused:
            reason = f": {guild.pause_reason}" if guild.pause_reason else ""
            embed.add_field(name="This server", value=f"Paused by moderators{reason}", inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: PixBot) -> None:
    await bot.add_cog(Status(bot))
