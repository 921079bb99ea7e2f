"""/status: how busy the bot is and whether PixVerse answers."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import require_guild
from bot.pixverse import AuthError, PixVerseError
from bot.store.charges import PriceDifference
from bot.ui.render import format_seconds

if TYPE_CHECKING:
    from bot.app import PixBot

log = logging.getLogger(__name__)
PING_TIMEOUT = 2.0  # the answer must still fit in Discord's 3-second window
PRICE_WINDOW = timedelta(days=7)  # price differences older than this were likely corrected
EMBED_FIELD_MAX = 1024


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
        paused = self.bot.runner.paused_since
        if paused is not None:
            embed.add_field(
                name="Queue paused",
                value=(
                    f"⏸️ since <t:{int(paused)}:R>: the PixVerse account is out of credits "
                    "(500090). No new job starts; queued jobs keep their place and credits. "
                    "Top up the account at platform.pixverse.ai: the bot resumes by itself."
                ),
                inline=False,
            )
        if interaction.permissions.manage_guild:
            # Admins only: what to correct in the catalogue, not a member's business.
            differences = await self.bot.store.jobs.price_differences(window=PRICE_WINDOW)
            if differences:
                embed.add_field(
                    name=f"Prices PixVerse charged differently (last {PRICE_WINDOW.days} days)",
                    value=price_differences_text(differences),
                    inline=False,
                )
        guild = await self.bot.store.admin.guild_settings(guild_id)
        if guild.paused:
            reason = f": {guild.pause_reason}" if guild.pause_reason else ""
            embed.add_field(name="This server", value=f"Paused by moderators{reason}", inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)


def price_difference_line(difference: PriceDifference) -> str:
    """e.g. "v6 720p 5 s: reserved 45, PixVerse charged 50 (3 jobs)"."""
    d = difference
    variant = f" {d.variant}" if d.variant else ""
    jobs = "1 job" if d.jobs == 1 else f"{d.jobs} jobs"
    return (
        f"{d.model} {d.quality} {d.duration} s{variant}: reserved {d.reserved}, "
        f"PixVerse charged {d.charged} ({jobs})"
    )


def price_differences_text(differences: list[PriceDifference]) -> str:
    """The lines, then what to do, within an embed field's 1024 characters."""
    advice = (
        "Members were charged what PixVerse took. Correct the catalogue's price "
        "for these so reservations match."
    )
    lines: list[str] = []
    used = len(advice) + 1
    for difference in differences:
        line = f"• {price_difference_line(difference)}"
        if used + len(line) + 1 > EMBED_FIELD_MAX:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join([*lines, advice])


async def setup(bot: PixBot) -> None:
    await bot.add_cog(Status(bot))
