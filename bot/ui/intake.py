"""Accepting a job from a Discord interaction: the one road from a command to the queue.

Commands, the result buttons and the extend modal all end here. The Discord part lives here
— the bot's own channel permissions, who asks and where, the public status message within
Discord's 3-second window — and the rules in the use case (``bot.service.JobService``): the
precheck, writing the job with its reservation, starting it once its message exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import discord

from bot.errors import UserFacingError
from bot.jobs.progress import JobUpdate, StatusTarget
from bot.service import JobService
from bot.service.jobs import Requester
from bot.store.models import Job, JobInput, JobKind, JobParams, JobState, NewJob
from bot.tree import ALREADY_ACKNOWLEDGED, RESEND_DELAY
from bot.ui.render import Rendered, render
from bot.ui.status import DiscordStatusReporter

log = logging.getLogger(__name__)
T = TypeVar("T")

# Work that may outlast this is done after a public defer, so Discord never sees silence.
DEFER_AFTER = 1.5
TOKEN_LIFETIME = timedelta(minutes=15)
ANSWER_ATTEMPTS = 3
# What the bot itself needs in the channel to show and finish a status message.
CHANNEL_PERMISSIONS = ("view_channel", "send_messages", "embed_links", "attach_files")


def member_role_ids(interaction: discord.Interaction[Any]) -> list[int]:
    user = interaction.user
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


def check_channel(interaction: discord.Interaction[Any]) -> None:
    """Refuse before anything is charged when the bot could not post or edit here."""
    if interaction.guild is None:
        raise UserFacingError("This command works in servers only.")
    permissions = interaction.app_permissions
    missing = [name for name in CHANNEL_PERMISSIONS if not getattr(permissions, name)]
    if missing:
        names = ", ".join(name.replace("_", " ").title() for name in missing)
        raise UserFacingError(
            f"I can't post videos in this channel (missing: {names}): ask a moderator to "
            "grant me those permissions here, or use another channel."
        )


async def within_deadline(interaction: discord.Interaction[Any], work: Awaitable[T]) -> T:
    """Run slow preparation (downloads, image checks); defer publicly if it takes long."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout=DEFER_AFTER)
    except TimeoutError:
        pass
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    try:
        return await task
    except BaseException:
        await _withdraw_deferral(interaction)
        raise


async def _withdraw_deferral(interaction: discord.Interaction[Any]) -> None:
    # A refusal after a public defer must not be public: remove the "thinking" message so
    # the error handler's followup can be ephemeral.
    try:
        await interaction.delete_original_response()
    except discord.HTTPException as exc:
        log.debug("Could not remove the deferred response: %s", exc)


def requester(interaction: discord.Interaction[Any]) -> Requester:
    """Who asks, and where: a thread's parent counts, so a thread of an allowed channel is
    allowed too."""
    assert interaction.guild is not None
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    return Requester(
        guild_id=interaction.guild.id,
        user_id=interaction.user.id,
        channel_id=interaction.channel_id,
        parent_channel_id=parent,
        role_ids=tuple(member_role_ids(interaction)),
    )


class Intake:
    def __init__(
        self, jobs: JobService, reporter: DiscordStatusReporter, *, simulated: bool
    ) -> None:
        self._jobs = jobs
        self._reporter = reporter
        self._simulated = simulated

    async def precheck(
        self,
        interaction: discord.Interaction[Any],
        params: JobParams,
        *,
        check_prompt: bool = True,
    ) -> None:
        """The bot's own channel permissions, then the use case's precheck (the member, the
        server's rules), before any download or charge."""
        check_channel(interaction)
        await self._jobs.precheck(requester(interaction), params, check_prompt=check_prompt)

    async def accept(
        self,
        interaction: discord.Interaction[Any],
        params: JobParams,
        *,
        kind: JobKind = JobKind.VIDEO,
        upload: JobInput | None = None,
        last_upload: JobInput | None = None,
        parent_job_id: int | None = None,
        pixverse_img_id: int | None = None,
        pixverse_media_id: int | None = None,
        pixverse_last_img_id: int | None = None,
        prechecked: bool = False,
    ) -> Job:
        """Write the job and answer with its status message. ``prechecked`` when the caller
        ran ``precheck`` already (before a download): the store decides again atomically.
        ``last_upload`` is a transition's last frame (``upload`` its first)."""
        check_channel(interaction)
        assert interaction.guild is not None and interaction.channel_id is not None
        deferred = interaction.response.is_done()
        try:
            if not prechecked:
                await self.precheck(interaction, params)
            accepted = await self._jobs.accept(
                NewJob(
                    guild_id=interaction.guild.id,
                    channel_id=interaction.channel_id,
                    user_id=interaction.user.id,
                    params=params,
                    kind=kind,
                    parent_job_id=parent_job_id,
                    input=upload,
                    last_input=last_upload,
                    interaction_token=interaction.token,
                    interaction_expires_at=interaction.created_at + TOKEN_LIFETIME,
                    pixverse_img_id=pixverse_img_id,
                    pixverse_media_id=pixverse_media_id,
                    pixverse_last_img_id=pixverse_last_img_id,
                    upload_limit=interaction.filesize_limit or interaction.guild.filesize_limit,
                ),
                tuple(member_role_ids(interaction)),
            )
        except Exception:
            if deferred:
                await _withdraw_deferral(interaction)
            raise
        job = accepted.job
        update = JobUpdate.of(
            job, JobState.QUEUED, simulated=self._simulated, queue_position=accepted.queue_position
        )
        rendered = render(update)
        try:
            message_id = await _answer(interaction, rendered, deferred=deferred)
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError):
            # The member saw no answer and will likely try again: don't keep (or charge) this.
            await self._jobs.withdraw(job.id)
            raise
        self._reporter.prime(
            job.id,
            StatusTarget(
                channel_id=interaction.channel_id,
                message_id=message_id,
                token=interaction.token,
                token_expires_at=(interaction.created_at + TOKEN_LIFETIME).timestamp(),
            ),
            rendered,
        )
        await self._jobs.shown(job.id, interaction.channel_id, message_id)
        log.info(
            "Job %d accepted: %s by %d in guild %d (%d credits)",
            job.id,
            kind.value,
            job.user_id,
            job.guild_id,
            job.cost,
        )
        return job


async def _answer(
    interaction: discord.Interaction[Any], rendered: Rendered, *, deferred: bool
) -> int:
    """Show the status message as the interaction's answer; its message id.

    discord.py retries a 429 or a 5xx itself, not a connection lost on the way, after which
    the answer may or may not have arrived. Try again: an edit is safe to repeat, and a
    second callback is refused as already acknowledged (40060) when the first one arrived,
    so the job is kept exactly when the member sees its message."""
    for attempt in range(1, ANSWER_ATTEMPTS + 1):
        try:
            if deferred:
                message = await interaction.edit_original_response(
                    content=rendered.content,
                    embed=rendered.embed,
                    allowed_mentions=discord.AllowedMentions.none(),
                )
                return message.id
            callback = await interaction.response.send_message(
                content=rendered.content,
                embed=rendered.embed,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            return callback.message_id or (await interaction.original_response()).id
        except discord.HTTPException as exc:
            if attempt == 1 or exc.code != ALREADY_ACKNOWLEDGED:
                raise
            log.info("The status message lost on the way had arrived after all")
            return (await interaction.original_response()).id
        except (aiohttp.ClientError, OSError) as exc:
            if attempt == ANSWER_ATTEMPTS:
                raise
            log.info("Lost the connection showing a status message (%r); trying again", exc)
            await asyncio.sleep(RESEND_DELAY)
    raise AssertionError("unreachable")  # pragma: no cover
