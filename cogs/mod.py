"""/mod: running the bot in a server — pause, cancel, remove, channels, log channel, filter.

Every change is audited by the store and answered ephemerally; nothing pings anyone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import require_manage_server
from bot.store.models import GuildSettings, Job
from bot.store.moderation import MAX_PHRASE, ListChange, SettingsChange
from bot.tree import guarded_autocomplete
from bot.ui.moderation import NO_PINGS, cancel_job, remove_result
from bot.ui.render import prompt_start

if TYPE_CHECKING:
    from bot.app import PixBot

Reason = app_commands.Range[str, 1, 300]
Phrase = app_commands.Range[str, 1, MAX_PHRASE]
JobId = app_commands.Range[int, 1]
# What the bot needs in the log channel to post there.
LOG_PERMISSIONS = ("view_channel", "send_messages", "embed_links")


def _pause_state(settings: GuildSettings) -> str:
    if not settings.paused:
        return "New videos: **open**."
    why = f" (reason: {settings.pause_reason})" if settings.pause_reason else ""
    return f"New videos: **paused**{why}. Jobs already running still finish."


def _channels_state(channels: Sequence[int]) -> str:
    if not channels:
        return "Generation commands work in **every channel** (no channel is listed)."
    return "Generation commands work only in: " + ", ".join(f"<#{c}>" for c in channels) + "."


def _filters_state(phrases: Sequence[str], room: int = 1700) -> str:
    if not phrases:
        return "No words or phrases are filtered."
    lines: list[str] = []
    for phrase in phrases:
        line = f"• `{phrase.replace('`', 'ˋ')}`"
        if sum(len(x) + 1 for x in lines) + len(line) > room:
            lines.append(f"… and {len(phrases) - len(lines)} more")
            break
        lines.append(line)
    return f"Prompts may not contain ({len(phrases)}):\n" + "\n".join(lines)


def _job_choice(job: Job) -> app_commands.Choice[int]:
    name = f"#{job.id} · {job.state.value} · {prompt_start(job.params.prompt, 70)}"
    return app_commands.Choice(name=name[:100], value=job.id)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Mod(commands.GroupCog, group_name="mod"):
    """Moderators run the bot in their server; every change is audited."""

    channels = app_commands.Group(
        name="channels", description="Where generation commands may be used"
    )
    filters = app_commands.Group(name="filter", description="Words or phrases refused in prompts")

    def __init__(self, bot: PixBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        require_manage_server(interaction, "use /mod")
        return True

    @staticmethod
    async def _reply(interaction: discord.Interaction[PixBot], text: str) -> None:
        await interaction.response.send_message(
            text[:2000], ephemeral=True, allowed_mentions=NO_PINGS
        )

    async def _settings_change(
        self,
        interaction: discord.Interaction[PixBot],
        change: Callable[..., Awaitable[SettingsChange]],
        *args: Any,
    ) -> tuple[GuildSettings, str]:
        """Apply the change; the new settings, and a note when nothing changed."""
        guild_id = require_manage_server(interaction, "use /mod")
        result = await change(guild_id, interaction.user.id, *args)
        return result.settings, "" if result.changed else " (It already was: nothing changed.)"

    # --- pause / resume ---------------------------------------------------------------------

    @app_commands.command(
        name="pause", description="Stop taking new jobs here (running ones finish)"
    )
    @app_commands.describe(reason="Why (shown to members who try to start a video)")
    async def pause(
        self, interaction: discord.Interaction[PixBot], reason: Reason | None = None
    ) -> None:
        moderation = self.bot.store.moderation
        settings, note = await self._settings_change(interaction, moderation.pause, reason)
        await self._reply(interaction, f"{_pause_state(settings)}{note} `/mod resume` reopens.")

    @app_commands.command(name="resume", description="Take new jobs in this server again")
    async def resume(self, interaction: discord.Interaction[PixBot]) -> None:
        settings, note = await self._settings_change(interaction, self.bot.store.moderation.resume)
        await self._reply(interaction, _pause_state(settings) + note)

    # --- one job ------------------------------------------------------------------------------

    @app_commands.command(name="cancel", description="Cancel any unfinished job of this server")
    @app_commands.describe(job="The job's id", reason="Why (shown on its status message)")
    async def cancel(
        self,
        interaction: discord.Interaction[PixBot],
        job: JobId,
        reason: Reason | None = None,
    ) -> None:
        guild_id = require_manage_server(interaction, "use /mod")
        text = await cancel_job(self.bot.ui, guild_id, interaction.user.id, job, reason)
        await self._reply(interaction, text)

    @app_commands.command(
        name="remove", description="Delete a finished result message and refund its credits"
    )
    @app_commands.describe(job="The finished job's id", reason="Why (kept in the audit log)")
    async def remove(
        self,
        interaction: discord.Interaction[PixBot],
        job: JobId,
        reason: Reason | None = None,
    ) -> None:
        guild_id = require_manage_server(interaction, "use /mod")
        removal = await remove_result(self.bot.ui, guild_id, interaction.user.id, job, reason)
        await self._reply(interaction, removal.reply())

    @cancel.autocomplete("job")
    @guarded_autocomplete
    async def unfinished_autocomplete(
        self, interaction: discord.Interaction[PixBot], current: str
    ) -> list[app_commands.Choice[int]]:
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        jobs = await self.bot.store.moderation.unfinished_jobs(interaction.guild_id, current)
        return [_job_choice(job) for job in jobs]

    @remove.autocomplete("job")
    @guarded_autocomplete
    async def finished_autocomplete(
        self, interaction: discord.Interaction[PixBot], current: str
    ) -> list[app_commands.Choice[int]]:
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        jobs = await self.bot.store.moderation.finished_jobs(interaction.guild_id, current)
        return [_job_choice(job) for job in jobs]

    # --- log channel ----------------------------------------------------------------------------

    @app_commands.command(
        name="log-channel",
        description="Where finished jobs are posted for moderators; leave empty to turn it off",
    )
    @app_commands.describe(channel="The log channel (leave empty to stop logging)")
    async def log_channel(
        self,
        interaction: discord.Interaction[PixBot],
        channel: discord.TextChannel | None = None,
    ) -> None:
        me = channel.guild.me if channel is not None else None
        if channel is not None and me is not None:
            mine = channel.permissions_for(me)
            missing = [name for name in LOG_PERMISSIONS if not getattr(mine, name)]
            if missing:
                names = ", ".join(name.replace("_", " ").title() for name in missing)
                await self._reply(
                    interaction,
                    f"I can't post in {channel.mention} (missing: {names}): grant me those "
                    "permissions there, or pick another channel. Nothing changed.",
                )
                return
        settings, note = await self._settings_change(
            interaction,
            self.bot.store.moderation.set_log_channel,
            channel.id if channel else None,
        )
        if settings.log_channel_id is None:
            text = "The moderation log is **off**: finished jobs are not posted anywhere."
        else:
            text = (
                f"Every finished job is now posted in <#{settings.log_channel_id}>, with "
                "**Remove & refund** and **Block member** buttons."
            )
        await self._reply(interaction, text + note)

    # --- channels -------------------------------------------------------------------------------

    async def _channel_change(
        self,
        interaction: discord.Interaction[PixBot],
        change: Callable[..., Awaitable[ListChange[int]]],
        channel: discord.abc.GuildChannel,
        done: str,
        unchanged: str,
    ) -> None:
        guild_id = require_manage_server(interaction, "use /mod")
        result = await change(guild_id, interaction.user.id, channel.id)
        head = (done if result.changed else unchanged).format(channel=channel.mention)
        await self._reply(interaction, f"{head}\n{_channels_state(result.items)}")

    @channels.command(name="allow", description="Allow generation commands in a channel")
    @app_commands.describe(channel="The channel (once any is listed, only listed ones work)")
    async def channels_allow(
        self, interaction: discord.Interaction[PixBot], channel: discord.TextChannel
    ) -> None:
        await self._channel_change(
            interaction,
            self.bot.store.moderation.allow_channel,
            channel,
            "Allowed {channel}.",
            "{channel} was already allowed; nothing changed.",
        )

    @channels.command(name="deny", description="Take a channel off the allowed list")
    @app_commands.describe(channel="The channel to take off the list")
    async def channels_deny(
        self, interaction: discord.Interaction[PixBot], channel: discord.TextChannel
    ) -> None:
        await self._channel_change(
            interaction,
            self.bot.store.moderation.deny_channel,
            channel,
            "Took {channel} off the allowed list.",
            "{channel} was not on the allowed list; nothing changed.",
        )

    @channels.command(name="list", description="The channels where generation commands work")
    async def channels_list(self, interaction: discord.Interaction[PixBot]) -> None:
        guild_id = require_manage_server(interaction, "use /mod")
        rules = await self.bot.store.moderation.rules(guild_id)
        await self._reply(interaction, _channels_state(rules.allowed_channels))

    # --- filter ---------------------------------------------------------------------------------

    async def _filter_change(
        self,
        interaction: discord.Interaction[PixBot],
        change: Callable[..., Awaitable[ListChange[str]]],
        word: str,
        done: str,
        unchanged: str,
    ) -> None:
        guild_id = require_manage_server(interaction, "use /mod")
        result = await change(guild_id, interaction.user.id, word)
        shown = discord.utils.escape_markdown(" ".join(word.split()))
        head = (done if result.changed else unchanged).format(word=shown)
        await self._reply(interaction, f"{head}\n{_filters_state(result.items)}")

    @filters.command(name="add", description="Refuse prompts containing a word or phrase")
    @app_commands.describe(word="A word or phrase (whole words, any letter case)")
    async def filter_add(self, interaction: discord.Interaction[PixBot], word: Phrase) -> None:
        await self._filter_change(
            interaction,
            self.bot.store.moderation.add_filter,
            word,
            "Prompts containing “{word}” are now refused.",
            "“{word}” was already filtered; nothing changed.",
        )

    @filters.command(name="remove", description="Allow a filtered word or phrase again")
    @app_commands.describe(word="The filtered word or phrase")
    async def filter_remove(self, interaction: discord.Interaction[PixBot], word: Phrase) -> None:
        await self._filter_change(
            interaction,
            self.bot.store.moderation.remove_filter,
            word,
            "“{word}” is allowed again.",
            "“{word}” was not filtered; nothing changed.",
        )

    @filter_remove.autocomplete("word")
    @guarded_autocomplete
    async def filter_autocomplete(
        self, interaction: discord.Interaction[PixBot], current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            return []
        rules = await self.bot.store.moderation.rules(interaction.guild_id)
        wanted = current.casefold().strip()
        return [
            app_commands.Choice(name=phrase, value=phrase)
            for phrase in rules.filters
            if wanted in phrase
        ][:25]

    @filters.command(name="list", description="The words and phrases refused in prompts")
    async def filter_list(self, interaction: discord.Interaction[PixBot]) -> None:
        guild_id = require_manage_server(interaction, "use /mod")
        rules = await self.bot.store.moderation.rules(guild_id)
        await self._reply(interaction, _filters_state(rules.filters))


async def setup(bot: PixBot) -> None:
    await bot.add_cog(Mod(bot))
