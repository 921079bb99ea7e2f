"""The Discord side of ``ProgressReporter``: one status message per job.

- Progress edits are best effort: only when what the message shows changes, at most once
  per ``min_interval`` seconds per message, and paced per channel by ``DiscordPacer`` (one
  worker per channel sends them, the longest-waiting message first), so a busy channel sees
  each message edited less often instead of a storm of edits and 429s.
- A final update (result or failure) never waits behind progress or a per-message pause:
  it goes at once through the interaction webhook while the token is valid, else (or if
  that fails) through the channel, and to a new message mentioning only the owner when the
  status message is gone. When every route failed, ``DeliveryFailed`` tells the caller to
  try again later — or, when the channel is gone or the bot lost access, never.
- A job whose status message id was never recorded (the process died between answering
  the interaction and writing the id down) is finished on the interaction's original
  response, found through its token while that works; only when Discord has none (the
  member was never answered) or the token is gone does a new message carry the result.
- The finished video is attached when it fits; a file Discord still refuses as too large
  (40005) falls back to the link.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import discord

from bot.jobs.delivery import DeliveryFailed
from bot.jobs.progress import JobUpdate, StatusTarget
from bot.store.models import JobState
from bot.ui.pacing import DiscordPacer, Priority
from bot.ui.render import ELAPSED_STEP, Rendered, render

if TYPE_CHECKING:
    from discord.ext import commands

log = logging.getLogger(__name__)

# A token is not used in its last seconds: an edit started then could land after expiry.
TOKEN_MARGIN = 30.0
UNKNOWN_MESSAGE = 10008
UNKNOWN_CHANNEL = 10003
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027
ORIGINAL = "@original"  # an interaction's original response, in webhook message routes
FILE_TOO_LARGE = 40005
FINISHED_MEMORY = 10_000
# One attempt on one route: discord.py itself sleeps through 429s and retries 5xx, so a
# route that is rate limited for long or down is left for the next one after this long.
PROGRESS_TIMEOUT = 10.0
FINAL_TIMEOUT = 30.0

ViewFactory = Callable[[JobUpdate], discord.ui.View | None]


class SharedJobs(Protocol):
    """What the reporter asks the database when other processes run jobs too
    (``JobStore``): any process may show a queued job's place in line while another claims,
    finishes and shows it; a process may cancel a job another runs."""

    async def in_state(self, job_id: int, state: JobState) -> bool: ...

    async def reshow_final(self, job_id: int) -> bool: ...


@dataclass
class _Slot:
    target: StatusTarget
    last_key: tuple[str, str] | None = None
    last_edit: float = float("-inf")
    pending: JobUpdate | None = None
    seen: tuple[object, ...] | None = None  # what the last progress update said, cheaply
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token_dead: bool = False
    gone: bool = False  # the message was deleted: intermediate updates stop
    # The interaction's original response was looked for (the message id was unknown).
    looked_for_original: bool = False


class _MessageGone(Exception):
    pass


class _NoAccess(Exception):
    pass


class _Retry(Exception):
    pass


class DiscordStatusReporter:
    def __init__(
        self,
        bot: commands.Bot,
        *,
        view_factory: ViewFactory,
        min_interval: float = 3.0,
        pacer: DiscordPacer | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        shared: SharedJobs | None = None,
    ) -> None:
        self._bot = bot
        self._shared = shared
        self._view_factory = view_factory
        self._min_interval = min_interval
        self._pacer = pacer or DiscordPacer(clock=clock)
        self._clock = clock
        self._wall_clock = wall_clock
        self._slots: dict[int, _Slot] = {}
        # Per channel: the jobs with a progress edit waiting, and the worker sending them.
        self._waiting: dict[int, OrderedDict[int, None]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
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
        elif slot.target.message_id is None and update.target.message_id is not None:
            # Seen before its message was recorded (another process answered the interaction
            # and showed it; nothing primed this slot): the message is known now.
            slot.target = update.target
        if update.job_id in self._finished and not update.final:
            return None
        if update.final:
            return await self._show_final(slot, update)
        if slot.gone or slot.target.message_id is None:
            return slot.target
        seen = _progress_key(update)
        if seen == slot.seen:
            return slot.target  # most polls change nothing shown: skip rendering them
        slot.seen = seen
        # Rendered once, when the channel's worker sends it; it skips an update that would
        # show what the message already shows.
        slot.pending = update
        channel_id = slot.target.channel_id
        self._waiting.setdefault(channel_id, OrderedDict())[update.job_id] = None
        worker = self._workers.get(channel_id)
        if worker is None or worker.done():
            worker = asyncio.create_task(
                self._progress_worker(channel_id), name=f"status-{channel_id}"
            )
            worker.add_done_callback(_log_task_error)
            self._workers[channel_id] = worker
        return slot.target

    async def close(self) -> None:
        tasks = [task for task in self._workers.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._waiting.clear()
        self._slots.clear()

    # -- progress edits (best effort) --------------------------------------------------------

    async def _progress_worker(self, channel_id: int) -> None:
        waiting = self._waiting[channel_id]
        while waiting:
            try:
                await self._next_progress(channel_id, waiting)
            except asyncio.CancelledError:
                raise
            except Exception:
                # One bad edit must not stop the channel's other messages.
                log.exception("Progress edit in channel %d failed", channel_id)
        if self._waiting.get(channel_id) is waiting:
            del self._waiting[channel_id]
            self._pacer.forget(channel_id)

    async def _next_progress(self, channel_id: int, waiting: OrderedDict[int, None]) -> None:
        now = self._clock()
        pick: _Slot | None = None
        soonest = float("inf")
        for job_id in list(waiting):
            slot = self._slots.get(job_id)
            if slot is None or slot.pending is None or slot.gone:
                del waiting[job_id]
                continue
            ready = slot.last_edit + self._min_interval
            if ready <= now and (pick is None or slot.last_edit < pick.last_edit):
                pick = slot
            soonest = min(soonest, ready)
        if pick is None:
            if waiting:
                await asyncio.sleep(max(soonest - now, 0.01))
            return
        channel_route = not self._token_usable(pick)
        delay = self._pacer.progress_wait(channel_id, channel_route=channel_route)
        if delay > 0:
            await asyncio.sleep(delay)
            return  # choose again: a newer update or a final may have come meanwhile
        update = pick.pending
        assert update is not None
        del waiting[update.job_id]
        pick.pending = None
        rendered = render(update)
        if rendered.key == pick.last_key:
            return
        self._pacer.record_progress(channel_id, channel_route=channel_route)
        async with pick.lock:
            if pick.gone or update.job_id in self._finished:
                return
            # Another process may have claimed (or cancelled) the job since: it no longer
            # shows this state, and another process may have shown its final one.
            shared = self._shared
            if shared is not None and not await shared.in_state(update.job_id, update.state):
                return
            try:
                async with asyncio.timeout(PROGRESS_TIMEOUT):
                    await self._edit(pick, update, rendered, with_view=False)
            except _MessageGone:
                pick.gone = True
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("Job %d: status edit failed: %s", update.job_id, exc)
            if shared is not None and not await shared.in_state(update.job_id, update.state):
                # It moved on while the edit was on its way (discord.py waits out rate
                # limits): the edit may have landed after another process's final one.
                if await shared.reshow_final(update.job_id):
                    log.info("Job %d: its final state is shown again", update.job_id)

    # -- the final edit ----------------------------------------------------------------------

    async def _show_final(self, slot: _Slot, update: JobUpdate) -> StatusTarget | None:
        slot.pending = None
        waiting = self._waiting.get(slot.target.channel_id)
        if waiting is not None:
            waiting.pop(update.job_id, None)
        rendered = render(update)
        failures: list[str] = []
        # The lock waits for a progress edit already on its way (bounded by its timeout),
        # so it cannot land after the final and turn the message back.
        async with slot.lock:
            if not slot.gone and slot.target.message_id is None:
                await self._find_original(slot, update.job_id)
            if not slot.gone and slot.target.message_id is not None:
                try:
                    await self._edit_final(slot, update, rendered, failures)
                    return self._finish(update, slot.target)
                except _MessageGone:
                    slot.gone = True
                except _Retry:
                    pass
            if slot.gone or slot.target.message_id is None:
                try:
                    target = await self._post_new(slot, update, rendered)
                    return self._finish(update, target)
                except _NoAccess as exc:
                    self._finish(update, None)
                    raise DeliveryFailed(str(exc), permanent=True) from exc
                except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    failures.append(f"new message: {_describe(exc)}")
        raise DeliveryFailed("; ".join(failures) or "no route")

    async def _edit_final(
        self,
        slot: _Slot,
        update: JobUpdate,
        rendered: Rendered,
        failures: list[str],
    ) -> None:
        """Edit the status message: webhook first, then the channel. Raises _MessageGone,
        or _Retry when neither route worked this time."""
        channel_id = slot.target.channel_id
        priority = _priority(update)
        if self._token_usable(slot):
            try:
                await self._pacer.final_turn(channel_id, channel_route=False)
                async with asyncio.timeout(FINAL_TIMEOUT):
                    await self._edit(slot, update, rendered, with_view=True, route="webhook")
                return
            except _MessageGone:
                raise
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                failures.append(f"webhook: {_describe(exc)}")
        try:
            await self._pacer.final_turn(channel_id, channel_route=True, priority=priority)
            async with asyncio.timeout(FINAL_TIMEOUT):
                await self._edit(slot, update, rendered, with_view=True, route="channel")
            return
        except _MessageGone:
            raise
        except discord.Forbidden as exc:
            # The bot may no longer edit here; a new message is the last road.
            log.info("Job %d: cannot edit its status message (%s)", update.job_id, exc)
            raise _MessageGone from exc
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            failures.append(f"channel: {_describe(exc)}")
        log.info("Job %d: final edit failed (%s); will retry", update.job_id, priority.name)
        raise _Retry

    async def _find_original(self, slot: _Slot, job_id: int) -> None:
        """The status message of a job whose message id was never recorded: the process
        answered the interaction and died before writing the id down (or another process
        answered and has not yet). While the token works, the interaction's original response
        is that message; Discord has none when the member was never answered, and then the
        caller posts a new one. A failed look is tried again at the next delivery attempt."""
        if slot.looked_for_original or not self._token_usable(slot):
            return
        webhook = discord.Webhook.partial(
            self._bot.application_id or 0, slot.target.token or "", client=self._bot
        )
        try:
            async with asyncio.timeout(FINAL_TIMEOUT):
                # discord.py types message ids as ints; Discord's route takes "@original".
                message = await webhook.fetch_message(ORIGINAL)  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            if _token_failure(exc):
                slot.token_dead = True
            elif exc.code == UNKNOWN_MESSAGE:
                slot.looked_for_original = True  # never answered: a new message it is
            else:
                log.info("Job %d: could not look for its status message: %s", job_id, exc)
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("Job %d: could not look for its status message: %s", job_id, _describe(exc))
            return
        slot.looked_for_original = True
        if message.flags.ephemeral:
            return  # not a status message: only the member sees it
        slot.target = replace(slot.target, message_id=message.id)
        log.info("Job %d: its status message %d was not recorded; finishing it", job_id, message.id)

    def _finish(self, update: JobUpdate, target: StatusTarget | None) -> StatusTarget | None:
        self._slots.pop(update.job_id, None)
        self._finished[update.job_id] = None
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)
        return target

    async def _post_new(self, slot: _Slot, update: JobUpdate, rendered: Rendered) -> StatusTarget:
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
                    # The same nonce on every attempt: if an earlier post reached Discord but
                    # its answer was lost, Discord returns that message instead of a second.
                    "nonce": f"pixbot-{update.job_id}",  # Discord allows 25 characters
                    **kwargs,
                    **extra,
                }
            )

        await self._pacer.final_turn(
            update.channel_id, channel_route=True, priority=_priority(update)
        )
        try:
            async with asyncio.timeout(FINAL_TIMEOUT):
                message = await self._send_with_file_fallback(update, send)
        except (discord.Forbidden, discord.NotFound) as exc:
            raise _NoAccess(f"cannot post in channel {update.channel_id}: {exc}") from exc
        slot.target = StatusTarget(channel_id=update.channel_id, message_id=message.id)
        return slot.target

    # -- plumbing ----------------------------------------------------------------------------

    async def _edit(
        self,
        slot: _Slot,
        update: JobUpdate,
        rendered: Rendered,
        *,
        with_view: bool,
        route: str | None = None,
    ) -> None:
        """Edit the status message through ``route`` ("webhook" or "channel"), or for
        progress through the webhook while its token works, else the channel."""
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

        use_webhook = route == "webhook" or (route is None and self._token_usable(slot))
        try:
            if use_webhook:
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


def _priority(update: JobUpdate) -> Priority:
    return Priority.RESULT if update.state is JobState.DONE else Priority.FAILURE


def _progress_key(update: JobUpdate) -> tuple[object, ...]:
    """What a progress update shows, in the steps ``render`` shows it: equal keys render
    equally."""
    elapsed = None if update.elapsed is None else int(update.elapsed // ELAPSED_STEP)
    estimate = None if update.estimate is None else int(update.estimate)
    return (update.state, update.queue_position, update.waiting, elapsed, estimate)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, discord.HTTPException):
        return f"HTTP {exc.status} (code {exc.code})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Status message task failed", exc_info=exc)
