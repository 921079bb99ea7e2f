"""The Discord side of ``ProgressReporter``: one status message per job, edited calmly.

- Edited only when what it shows changes, and at most once per ``min_interval`` seconds per
  message (Discord allows about 5 edits per 5 s per channel; many jobs share a channel).
- Through the interaction webhook while its token is valid (its own rate-limit bucket),
  then through the channel with the bot token (tokens die after 15 minutes).
- A deleted status message is not retried: the final result goes to a new message that
  mentions only the owner.
- The finished video is attached when it fits; a file that Discord still refuses as too
  large (40005) falls back to the link.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import discord

from bot.jobs.progress import JobUpdate, StatusTarget
from bot.ui.render import Rendered, render

if TYPE_CHECKING:
    from discord.ext import commands

log = logging.getLogger(__name__)

# A token is not used in its last seconds: an edit started then could land after expiry.
TOKEN_MARGIN = 30.0
UNKNOWN_MESSAGE = 10008
UNKNOWN_CHANNEL = 10003
INVALID_WEBHOOK_TOKEN = 50027
FILE_TOO_LARGE = 40005
FINISHED_MEMORY = 10_000

ViewFactory = Callable[[JobUpdate], discord.ui.View | None]


@dataclass
class _Slot:
    target: StatusTarget
    last_key: tuple[str, str] | None = None
    last_edit: float = float("-inf")
    pending: JobUpdate | None = None
    flusher: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token_dead: bool = False
    gone: bool = False  # the message was deleted: intermediate updates stop


class _MessageGone(Exception):
    pass


class DiscordStatusReporter:
    def __init__(
        self,
        bot: commands.Bot,
        *,
        view_factory: ViewFactory,
        min_interval: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._bot = bot
        self._view_factory = view_factory
        self._min_interval = min_interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._slots: dict[int, _Slot] = {}
        # Jobs whose final state was shown: a late intermediate update (a queue refresh that
        # raced a cancellation) must not turn a finished message back to "queued".
        self._finished: OrderedDict[int, None] = OrderedDict()

    def prime(self, job_id: int, target: StatusTarget, shown: Rendered) -> None:
        """Record what the status message shows right after it was created."""
        self._slots[job_id] = _Slot(target, last_key=shown.key, last_edit=self._clock())

    async def show(self, update: JobUpdate) -> StatusTarget | None:
        slot = self._slots.get(update.job_id)
        if slot is None:
            # The message was (most likely) just shown: its creation counts as an edit.
            slot = self._slots[update.job_id] = _Slot(update.target, last_edit=self._clock())
        if update.job_id in self._finished and not update.final:
            return None
        if update.final:
            return await self._show_final(slot, update)
        if slot.gone or slot.target.message_id is None:
            return slot.target
        rendered = render(update)
        if rendered.key == slot.last_key:
            slot.pending = None
            return slot.target
        slot.pending = update
        if slot.flusher is None or slot.flusher.done():
            slot.flusher = asyncio.create_task(self._flush(slot), name=f"status-{update.job_id}")
            slot.flusher.add_done_callback(_log_task_error)
        return slot.target

    async def close(self) -> None:
        tasks = [s.flusher for s in self._slots.values() if s.flusher and not s.flusher.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._slots.clear()

    # -- intermediate edits ----------------------------------------------------------------

    async def _flush(self, slot: _Slot) -> None:
        while slot.pending is not None and not slot.gone:
            await self._wait_turn(slot)
            async with slot.lock:
                update, slot.pending = slot.pending, None
                if update is None or slot.gone:
                    return
                rendered = render(update)
                if rendered.key == slot.last_key:
                    continue
                try:
                    await self._edit(slot, update, rendered, with_view=False)
                except _MessageGone:
                    slot.gone = True
                except discord.HTTPException as exc:
                    log.warning("Job %d: status edit failed: %s", update.job_id, exc)

    async def _wait_turn(self, slot: _Slot) -> None:
        delay = slot.last_edit + self._min_interval - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- the final edit ----------------------------------------------------------------------

    async def _show_final(self, slot: _Slot, update: JobUpdate) -> StatusTarget | None:
        slot.pending = None
        if slot.flusher is not None and not slot.flusher.done():
            slot.flusher.cancel()
            await asyncio.gather(slot.flusher, return_exceptions=True)
        rendered = render(update)
        try:
            async with slot.lock:
                if not slot.gone and slot.target.message_id is not None:
                    await self._wait_turn(slot)
                    try:
                        await self._edit(slot, update, rendered, with_view=True)
                        return slot.target
                    except _MessageGone:
                        slot.gone = True
                return await self._post_new(slot, update, rendered)
        finally:
            self._slots.pop(update.job_id, None)
            self._finished[update.job_id] = None
            while len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)

    async def _post_new(
        self, slot: _Slot, update: JobUpdate, rendered: Rendered
    ) -> StatusTarget | None:
        channel = self._bot.get_partial_messageable(update.channel_id)
        owner = discord.Object(id=update.owner_id)
        # The one message that pings: the owner must learn that the result is here.
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[owner])
        outcome = "result" if update.state.value == "done" else "outcome"
        content = (
            f"<@{update.owner_id}> your job #{update.job_id} has ended; its status message "
            f"was deleted, so here is the {outcome}."
        )
        view = self._view_factory(update)

        async def send(kwargs: dict[str, Any]) -> discord.Message:
            # Edits replace `attachments`; a new message takes `files` (send has no
            # `attachments`), and an empty list means "no file" here.
            files = kwargs.pop("attachments", None) or []
            extra: dict[str, Any] = {"files": files} if files else {}
            if view is not None:
                extra["view"] = view
            return await channel.send(
                **{
                    "content": content,
                    "embed": rendered.embed,
                    "allowed_mentions": mentions,
                    **kwargs,
                    **extra,
                }
            )

        try:
            message = await self._send_with_file_fallback(update, send)
        except discord.HTTPException as exc:
            log.warning("Job %d: could not post the result anywhere: %s", update.job_id, exc)
            return None
        slot.target = StatusTarget(channel_id=update.channel_id, message_id=message.id)
        return slot.target

    # -- plumbing ----------------------------------------------------------------------------

    async def _edit(
        self, slot: _Slot, update: JobUpdate, rendered: Rendered, *, with_view: bool
    ) -> None:
        message_id = slot.target.message_id
        assert message_id is not None
        view = self._view_factory(update) if with_view else None
        base: dict[str, Any] = {
            "content": rendered.content,
            "embed": rendered.embed,
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        if view is not None:
            base["view"] = view

        async def by_webhook(kwargs: dict[str, Any]) -> Any:
            webhook = discord.Webhook.partial(
                self._bot.application_id or 0, slot.target.token or "", client=self._bot
            )
            return await webhook.edit_message(message_id, **{**base, **kwargs})

        async def by_channel(kwargs: dict[str, Any]) -> Any:
            channel = self._bot.get_partial_messageable(slot.target.channel_id)
            return await channel.get_partial_message(message_id).edit(**{**base, **kwargs})

        try:
            if self._token_usable(slot):
                try:
                    await self._send_with_file_fallback(update, by_webhook)
                    slot.last_key = rendered.key
                    return
                except discord.HTTPException as exc:
                    if not _token_failure(exc):
                        raise
                    log.info("Job %d: token expired; editing via the channel", update.job_id)
                    slot.token_dead = True
            await self._send_with_file_fallback(update, by_channel)
        except discord.NotFound as exc:
            if exc.code in (UNKNOWN_MESSAGE, UNKNOWN_CHANNEL):
                raise _MessageGone from exc
            raise
        finally:
            slot.last_edit = self._clock()
        slot.last_key = rendered.key

    async def _send_with_file_fallback(
        self, update: JobUpdate, send: Callable[[dict[str, Any]], Any]
    ) -> Any:
        if update.video is None:
            return await send({})
        try:
            # A discord.File is consumed by one attempt, so each attempt builds its own.
            video = discord.File(io.BytesIO(update.video.data), filename=update.video.filename)
            return await send({"attachments": [video]})
        except discord.HTTPException as exc:
            if exc.status != 413 and exc.code != FILE_TOO_LARGE:
                raise
            log.info("Job %d: video too large to attach; posting the link", update.job_id)
        fallback = replace(update, video=None)
        rendered = render(fallback)
        return await send({"embed": rendered.embed, "attachments": []})

    def _token_usable(self, slot: _Slot) -> bool:
        target = slot.target
        if slot.token_dead or not target.token or target.token_expires_at is None:
            return False
        return self._wall_clock() < target.token_expires_at - TOKEN_MARGIN


def _token_failure(exc: discord.HTTPException) -> bool:
    # Discord answers 401/50027 after expiry, and some report 404 shortly before.
    return (
        exc.status == 401
        or exc.code == INVALID_WEBHOOK_TOKEN
        or (exc.status == 404 and exc.code not in (UNKNOWN_MESSAGE, UNKNOWN_CHANNEL))
    )


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Status message task failed", exc_info=exc)
