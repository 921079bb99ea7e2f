"""The Discord side of /mod: acting on one job (cancel, remove), and the moderation log.

The log: when a job ends (done or failed), ``ModLogReporter`` — a ``ProgressReporter`` that
wraps the status messages' reporter, so the runner stays unaware of Discord — hands it to
``ModLog``, which posts it to the server's log channel, if one is set, with "Remove & refund"
and "Block member" buttons. The buttons are ``DynamicItem``s whose ``custom_id`` carries the
job id, so they keep working after a restart, and they check Manage Server at click time.

The log also carries the operator's wallet alerts: a job PixVerse's moderation refused shows
the member's strikes that day, and says so when they blocked the member (MODERATION_STRIKES;
the store blocked them when the runner recorded the strike); and the first job of a UTC day
to bring the bot's spend to 80 % of BUDGET_DAILY_CREDITS has every server's log warned
(``ModLog.budget_warning``, the use case's ``WalletAlerts``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import discord

from bot.errors import UserFacingError, require_manage_server
from bot.jobs.delivery import DeliveryFailed
from bot.jobs.progress import JobUpdate, ProgressReporter, StatusTarget
from bot.store import BudgetView, Store, Strike
from bot.store.models import AuditNote, Job, JobState
from bot.tree import answer_error
from bot.ui.buttons import JobButton
from bot.ui.context import UiServices, services
from bot.ui.render import prompt_start

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
LOGGED_STATES = frozenset({JobState.DONE, JobState.FAILED})
_STATE_TITLE = {JobState.DONE: "✅ Done", JobState.FAILED: "❌ Failed"}


def message_link(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


# --- acting on one job ----------------------------------------------------------------------


async def _job_of_server(ui: UiServices, guild_id: int, job_id: int) -> Job:
    job = await ui.store.jobs.get(job_id)
    if job is None or job.guild_id != guild_id:
        raise UserFacingError(f"There is no job #{job_id} in this server.")
    return job


async def cancel_job(
    ui: UiServices, guild_id: int, actor_id: int, job_id: int, reason: str | None
) -> str:
    """Cancel an unfinished job of this server, release its credits; the reply's text."""
    shown = f"Cancelled by a moderator: {reason}" if reason else "Cancelled by a moderator."
    outcome = await ui.jobs.cancel(
        job_id,
        guild_id,
        shown=shown,
        reason=shown,
        audit=AuditNote(actor_id, "mod.cancel", reason),
    )
    job = outcome.job
    if job is None:
        raise UserFacingError(f"There is no job #{job_id} in this server.")
    if job.is_final:
        raise UserFacingError(
            f"Job #{job_id} has already ended ({job.state.value}); to take down a finished "
            "result, use `/mod remove`."
        )
    if not outcome.ok:
        state = outcome.state.value if outcome.state else "gone"
        raise UserFacingError(f"Job #{job_id} ended ({state}) before it could be cancelled.")
    return (
        f"Cancelled job #{job_id} of <@{job.user_id}> (it was {job.state.value}); its "
        f"{job.cost} credits are released. Its status message now says so."
    )


@dataclass(frozen=True, slots=True)
class Removal:
    job: Job
    refunded: int
    message_deleted: bool

    def reply(self) -> str:
        text = (
            f"Removed the result of job #{self.job.id} by <@{self.job.user_id}> and refunded "
            f"{self.refunded} credits."
        )
        if not self.message_deleted:
            text += " Its message could not be deleted: delete it by hand."
        return text


async def remove_result(
    ui: UiServices, guild_id: int, actor_id: int, job_id: int, reason: str | None
) -> Removal:
    """Refund a finished job (audited) and delete its result message."""
    job, refunded = await ui.jobs.remove_and_refund(
        job_id, guild_id, actor_id=actor_id, reason=reason
    )
    deleted = await _delete_status_message(ui.client, job)
    log.info("Job %d removed by %d (%d credits refunded)", job_id, actor_id, refunded)
    return Removal(job, refunded, deleted)


async def _delete_status_message(client: discord.Client, job: Job) -> bool:
    if job.status_message_id is None:
        return True
    channel = client.get_partial_messageable(
        job.status_channel_id or job.channel_id, guild_id=job.guild_id
    )
    try:
        await channel.get_partial_message(job.status_message_id).delete()
    except discord.NotFound:
        return True  # already gone
    except discord.HTTPException as exc:
        log.warning("Job %d: could not delete its result message: %s", job.id, exc)
        return False
    return True


# --- the moderation log -----------------------------------------------------------------------


def strike_text(strike: Strike) -> str:
    """The member's moderation strikes as the log shows them."""
    if strike.limit <= 0:
        return f"{strike.number} today"
    text = f"{strike.number} of {strike.limit} today"
    return f"{text}: member blocked" if strike.blocked else text


def strike_notice(strike: Strike) -> str:
    """Told in the log when a strike blocked the member."""
    return (
        f"🚫 <@{strike.user_id}> is now blocked from starting videos in this server: "
        f"PixVerse's moderation refused {strike.number} of their videos today (job "
        f"#{strike.job_id} was the last). `/quota-admin unblock` lifts it."
    )


def budget_notice(view: BudgetView) -> str:
    """The daily budget warning, as every server's log gets it."""
    stamp = int(view.resets_at.timestamp())
    held = f", {view.reserved} of them held by running jobs" if view.reserved else ""
    return (
        f"⚠️ The bot has used {view.percent} % of its daily PixVerse budget: {view.spent} of "
        f"{view.budget} credits today across all servers{held}. At 100 % new videos are "
        f"refused until the reset at 00:00 UTC (<t:{stamp}:R>)."
    )


def log_embed(
    update: JobUpdate, target: StatusTarget | None, strike: Strike | None = None
) -> discord.Embed:
    """What moderators see of one finished job: who, what, where, and the result."""
    p = update.params
    embed = discord.Embed(
        title=f"Job #{update.job_id} · {_STATE_TITLE.get(update.state, update.state.value)}",
        description=discord.utils.escape_markdown(prompt_start(p.prompt, 1000)),
        colour=discord.Colour.green() if update.state is JobState.DONE else discord.Colour.red(),
    )
    embed.add_field(name="Member", value=f"<@{update.owner_id}>")
    embed.add_field(name="Channel", value=f"<#{update.channel_id}>")
    embed.add_field(name="Kind", value=update.kind)
    audio = " · audio" if p.audio else ""
    embed.add_field(name="Options", value=f"{p.model} · {p.quality.value} · {p.duration} s{audio}")
    embed.add_field(name="Credits", value=str(update.cost))
    if update.parent_job_id is not None:
        embed.add_field(name="From job", value=f"#{update.parent_job_id}")
    if update.state is JobState.DONE and update.video_url:
        embed.add_field(name="Result", value=f"[Open the video]({update.video_url})", inline=False)
    elif update.error:
        embed.add_field(name="Reason", value=update.error[:1024], inline=False)
    if strike is not None:
        embed.add_field(name="Moderation strikes", value=strike_text(strike), inline=False)
    if target is not None and target.message_id is not None:
        link = message_link(update.guild_id, target.channel_id, target.message_id)
        embed.add_field(name="Status message", value=f"[Jump to it]({link})", inline=False)
    return embed


def log_view(job_id: int, *, removable: bool, blockable: bool = True) -> discord.ui.View | None:
    view = discord.ui.View(timeout=None)
    if removable:
        view.add_item(LogRemoveButton(job_id))
    if blockable:
        view.add_item(LogBlockButton(job_id))
    return view if view.children else None


class ModLog:
    """Posts finished jobs to their server's log channel, in the background: a slow or
    refused post never holds up the runner or the member's status message."""

    def __init__(self, client: discord.Client, store: Store) -> None:
        self._client = client
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()

    def job_finished(self, update: JobUpdate, target: StatusTarget | None) -> None:
        task = asyncio.create_task(self.post(update, target), name=f"modlog-{update.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("Posting to the moderation log failed", exc_info=exc)

    async def post(self, update: JobUpdate, target: StatusTarget | None) -> None:
        settings = await self._store.admin.guild_settings(update.guild_id)
        if settings.log_channel_id is None:
            return
        channel = self._client.get_partial_messageable(
            settings.log_channel_id, guild_id=update.guild_id
        )
        # Only a failed job can be a moderation strike (refused at upload or submit, or
        # PixVerse's status 7).
        strike = (
            await self._store.strikes.of_job(update.job_id)
            if update.state is JobState.FAILED
            else None
        )
        kwargs: dict[str, Any] = {
            "embed": log_embed(update, target, strike),
            "allowed_mentions": NO_PINGS,
        }
        if strike is not None and strike.blocked:
            kwargs["content"] = strike_notice(strike)
        view = log_view(update.job_id, removable=update.state is JobState.DONE)
        if view is not None:
            kwargs["view"] = view
        try:
            await channel.send(**kwargs)
        except discord.HTTPException as exc:
            log.warning(
                "Job %d: could not post to the log channel %d: %s",
                update.job_id,
                settings.log_channel_id,
                exc,
            )

    def budget_warning(self, view: BudgetView) -> None:
        """Warn every server's moderation log that the bot's daily budget is at 80 %
        (``WalletAlerts``); in the background, like the job posts."""
        task = asyncio.create_task(self.notice(budget_notice(view)), name="modlog-budget")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def notice(self, text: str) -> None:
        """Post an operator notice (the budget at 80 %, the queue paused for credits) to every
        server's log channel; a channel that refuses is logged and skipped, so one server's
        lost permission does not keep the others uninformed."""
        for guild_id, channel_id in await self._store.admin.log_channels():
            channel = self._client.get_partial_messageable(channel_id, guild_id=guild_id)
            try:
                await channel.send(text, allowed_mentions=NO_PINGS)
            except discord.HTTPException as exc:
                log.warning("Could not post a notice to the log channel %d: %s", channel_id, exc)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ModLogReporter:
    """The runner's reporter: shows every update through ``inner`` (the status messages),
    then hands finished jobs to the moderation log."""

    def __init__(self, inner: ProgressReporter, mod_log: ModLog) -> None:
        self._inner = inner
        self._mod_log = mod_log

    async def show(self, update: JobUpdate) -> StatusTarget | None:
        try:
            target = await self._inner.show(update)
        except DeliveryFailed as exc:
            if exc.permanent and update.state in LOGGED_STATES:
                self._mod_log.job_finished(update, None)  # moderators see it all the same
            raise
        if update.state in LOGGED_STATES:
            self._mod_log.job_finished(update, target)
        return target


# --- the log's buttons --------------------------------------------------------------------------


class _LogAction(JobButton):
    """Shared by the log's buttons (``pixbot:mod-<action>:<job id>``): only members with
    Manage Server may press them."""

    @staticmethod
    def make_log(action: str, label: str, style: discord.ButtonStyle, job_id: int) -> Any:
        return discord.ui.Button(
            label=label, style=style, custom_id=f"pixbot:mod-{action}:{job_id}"
        )

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            require_manage_server(interaction, "use the moderation log's buttons")
            await self.run(interaction)
        except Exception as exc:
            await answer_error(
                interaction,
                exc,
                where="Moderation log button",
                unexpected="Something went wrong on the bot's side; nothing changed.",
            )

    async def mark_done(self, interaction: discord.Interaction[Any], note: str) -> None:
        """Note the action on the log message and take its button away (best effort)."""
        message = interaction.message
        if message is None or not message.embeds:
            return
        embed = message.embeds[0].copy()
        embed.add_field(name="Moderation", value=note[:1024], inline=False)
        data: dict[str, Any] = dict(interaction.data or {})
        pressed = str(data.get("custom_id", ""))
        ids = {
            child.custom_id
            for row in message.components
            for child in getattr(row, "children", [])
            if getattr(child, "custom_id", None)
        }
        view = log_view(
            self.job_id,
            removable=f"pixbot:mod-remove:{self.job_id}" in ids - {pressed},
            blockable=f"pixbot:mod-block:{self.job_id}" in ids - {pressed},
        )
        try:
            await message.edit(embed=embed, view=view, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.info("Could not update the moderation log message: %s", exc)


class LogRemoveButton(
    _LogAction,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pixbot:mod-remove:(?P<job>\d+)",
):
    def __init__(self, job_id: int) -> None:
        discord.ui.DynamicItem.__init__(
            self, self.make_log("remove", "Remove & refund", discord.ButtonStyle.danger, job_id)
        )
        _LogAction.__init__(self, job_id)

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        assert interaction.guild_id is not None
        removal = await remove_result(
            services(interaction),
            interaction.guild_id,
            interaction.user.id,
            self.job_id,
            "removed from the moderation log",
        )
        await interaction.response.send_message(
            removal.reply(), ephemeral=True, allowed_mentions=NO_PINGS
        )
        await self.mark_done(
            interaction,
            f"Removed by <@{interaction.user.id}>; {removal.refunded} credits refunded.",
        )


class LogBlockButton(
    _LogAction,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pixbot:mod-block:(?P<job>\d+)",
):
    def __init__(self, job_id: int) -> None:
        discord.ui.DynamicItem.__init__(
            self, self.make_log("block", "Block member", discord.ButtonStyle.secondary, job_id)
        )
        _LogAction.__init__(self, job_id)

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        ui = services(interaction)
        assert interaction.guild_id is not None
        job = await _job_of_server(ui, interaction.guild_id, self.job_id)
        member = interaction.guild.get_member(job.user_id) if interaction.guild else None
        await ui.store.admin.block(
            job.guild_id,
            interaction.user.id,
            job.user_id,
            f"blocked from the moderation log (job #{job.id})",
            role_ids=[role.id for role in member.roles] if member else [],
        )
        await interaction.response.send_message(
            f"<@{job.user_id}> is blocked from starting videos in this server "
            "(`/quota-admin unblock` lifts it).",
            ephemeral=True,
            allowed_mentions=NO_PINGS,
        )
        await self.mark_done(interaction, f"Member blocked by <@{interaction.user.id}>.")
