"""/jobs and /cancel: a member's own jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserFacingError, require_guild
from bot.store.models import CancelResult, Job, JobState
from bot.tree import guarded_autocomplete
from bot.ui.render import prompt_start

if TYPE_CHECKING:
    from bot.app import PixBot

PAGE_SIZE = 10
_NOT_YOURS = (
    "You have no job #{job} in this server (it does not exist or is not yours): "
    "you can cancel only your own jobs; `/jobs` lists them."
)
_ICON = {
    JobState.QUEUED: "⏳",
    JobState.UPLOADING: "📤",
    JobState.SUBMITTED: "📨",
    JobState.GENERATING: "🎬",
    JobState.DONE: "✅",
    JobState.FAILED: "❌",
    JobState.CANCELLED: "🚫",
}


def job_line(job: Job) -> str:
    state = job.state.value
    if job.removed_at is not None:
        state = "removed"
    line = f"`#{job.id}` {_ICON[job.state]} **{state}** · {prompt_start(job.params.prompt, 60)}"
    links = []
    if job.status_message_id is not None:
        channel = job.status_channel_id or job.channel_id
        links.append(
            f"[status](https://discord.com/channels/{job.guild_id}/{channel}/"
            f"{job.status_message_id})"
        )
    if job.state is JobState.DONE and job.result_url and job.removed_at is None:
        links.append(f"[video]({job.result_url})")
    if links:
        line += " · " + " · ".join(links)
    return line


class Jobs(commands.Cog):
    def __init__(self, bot: PixBot) -> None:
        self.bot = bot

    @app_commands.command(name="jobs", description="Your recent jobs in this server, newest first")
    @app_commands.guild_only()
    @app_commands.describe(page="Which page of your jobs to show (10 per page)")
    async def jobs(
        self, interaction: discord.Interaction[PixBot], page: app_commands.Range[int, 1] = 1
    ) -> None:
        guild_id = require_guild(interaction)
        store = self.bot.store.jobs
        total = await store.count_for_user(guild_id, interaction.user.id)
        if total == 0:
            await interaction.response.send_message(
                "You have no jobs in this server yet: start one with `/video`.", ephemeral=True
            )
            return
        pages = (total + PAGE_SIZE - 1) // PAGE_SIZE
        note = None
        if page > pages:
            # Say so rather than show an empty list: the member asked for a page that isn't.
            note = (
                f"There is no page {page}: you have {total} job(s) on {pages} page(s). "
                f"Here is page {pages}, your oldest; pick a page from 1 to {pages}."
            )
            page = pages
        jobs = await store.list_for_user(
            guild_id, interaction.user.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        embed = discord.Embed(
            title="Your jobs",
            description="\n".join(job_line(job) for job in jobs)[:4096],
            colour=discord.Colour.blurple(),
        )
        footer = f"Page {page} of {pages} · {total} job(s)"
        if page < pages:
            footer += f" · /jobs page:{page + 1} for older ones"
        embed.set_footer(text=footer)
        await interaction.response.send_message(
            content=note,
            embed=embed,
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="cancel", description="Cancel one of your jobs that has not started")
    @app_commands.guild_only()
    @app_commands.describe(job="The id of your job (see /jobs)")
    async def cancel(
        self, interaction: discord.Interaction[PixBot], job: app_commands.Range[int, 1]
    ) -> None:
        guild_id = require_guild(interaction)
        outcome = await self.bot.job_service.cancel(
            job,
            guild_id,
            owner_id=interaction.user.id,
            reason="cancelled by its owner",
            shown="Cancelled by its owner.",
        )
        if outcome.result in (CancelResult.NOT_FOUND, CancelResult.NOT_OWNER) or not outcome.job:
            # One answer for both: another member's job id reveals neither that it exists
            # nor anything about it.
            raise UserFacingError(_NOT_YOURS.format(job=job))
        existing = outcome.job
        if outcome.result is CancelResult.NOT_QUEUED:
            state = outcome.state.value if outcome.state else existing.state.value
            if outcome.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
                raise UserFacingError(f"Job #{job} has already ended ({state}).")
            raise UserFacingError(
                f"Job #{job} is already with PixVerse ({state}) and can no longer be cancelled; "
                "if PixVerse fails it, your credits come back automatically."
            )
        if not outcome.ok:
            raise UserFacingError(_NOT_YOURS.format(job=job))
        await interaction.response.send_message(
            f"Cancelled job #{job}; {outcome.refunded} credits are back in your allowance.",
            ephemeral=True,
        )

    @cancel.autocomplete("job")
    @guarded_autocomplete
    async def cancel_autocomplete(
        self, interaction: discord.Interaction[PixBot], current: str
    ) -> list[app_commands.Choice[int]]:
        if interaction.guild_id is None:
            return []
        jobs = await self.bot.store.jobs.list_for_user(
            interaction.guild_id, interaction.user.id, limit=50, offset=0
        )
        wanted = current.strip().lstrip("#").casefold()
        return [
            app_commands.Choice(
                name=f"#{job.id} · {prompt_start(job.params.prompt, 80)}", value=job.id
            )
            for job in jobs
            if job.state is JobState.QUEUED
            and (not wanted or wanted in str(job.id) or wanted in job.params.prompt.casefold())
        ][:25]


async def setup(bot: PixBot) -> None:
    await bot.add_cog(Jobs(bot))
