"""Use cases on jobs: who may start one here (the precheck), accepting it, what a re-roll, an
extension or sound for a result asks for, whether a job can be such a source, cancelling one,
and taking a result down with a refund.

Cancelling has one road for members and moderators alike: ``JobService.cancel``. A member
may cancel only their own job that PixVerse has not yet accepted (queued); a moderator any
unfinished job of the server, including one generating. Either way the credits come back
and the status message says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from bot.jobs.observe import UNOBSERVED, JobObserver
from bot.jobs.options import random_seed
from bot.jobs.runner import JobRunner
from bot.jobs.text import clean_prompt
from bot.pixverse.catalogue import Catalogue
from bot.pixverse.rules import Motion, RuleViolation
from bot.refusal import Refusal
from bot.store import BudgetView, Store
from bot.store.models import (
    AuditNote,
    CancelResult,
    Job,
    JobParams,
    JobSource,
    JobState,
    NewJob,
)

log = logging.getLogger(__name__)

# A new job does not start before its status message exists (``shown`` releases it): a job
# that finished first would find no message, post its result as a new one, and leave the
# late answer showing "Queued" for good. Longer than any answer discord.py still retries
# (5xx, 429); a job whose message never came (the process stopped in between) starts then.
SHOW_HOLD = 60.0


class WalletAlerts(Protocol):
    """Where the operator's wallet alerts go; the moderation log implements it (``bot.ui``)."""

    def budget_warning(self, view: BudgetView) -> None:
        """The bot's spend today reached the warning mark (once a UTC day): tell every
        server's moderators. Must not block: the caller is accepting a member's job."""
        ...


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks for a job, and where (a thread's parent channel counts as where too)."""

    guild_id: int
    user_id: int
    channel_id: int | None
    parent_channel_id: int | None = None
    role_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Accepted:
    job: Job
    queue_position: int | None


@dataclass(frozen=True, slots=True)
class Reroll:
    """A re-roll of a result: the same input and options, a new seed."""

    params: JobParams
    parent_job_id: int | None
    pixverse_img_id: int | None
    pixverse_media_id: int | None
    pixverse_last_img_id: int | None = None


def reroll_of(source: Job) -> Reroll:
    """Any kind of result: the same input and options (a text video's prompt and aspect
    ratio, a transition's two frames), a new seed."""
    params = source.params.model_copy(update={"seed": random_seed()})
    # Same input: the image(s) or video PixVerse already has, or the same extended video.
    parent = source.parent_job_id if params.source is JobSource.JOB else source.id
    return Reroll(
        params,
        parent,
        source.pixverse_img_id,
        source.pixverse_media_id,
        source.pixverse_last_img_id,
    )


def extension_of(source: Job, prompt: str, catalogue: Catalogue) -> JobParams:
    """An extension of a result with a new prompt; its own options come from the source, and
    the prompt's limit from the source's model in ``catalogue``. It keeps the source's sound:
    an extension of a video made with audio, or of a Sound result, asks for audio too."""
    text = clean_prompt(prompt)  # as build_options: what PixVerse and the filter see
    if not text:
        raise Refusal(
            "The prompt is empty (nothing visible, only spaces or invisible characters): "
            "describe what happens next."
        )
    try:
        catalogue.check_prompts(source.params.model, text)
    except RuleViolation as exc:
        raise Refusal(str(exc)) from None
    return extension_options(source).model_copy(update={"prompt": text})


def extension_options(source: Job) -> JobParams:
    """What an extension of ``source`` asks for besides its prompt (what the Extend button
    prechecks before the member types one): the source's model, quality and duration, a new
    seed, and the source's sound kept."""
    return source.params.model_copy(
        update={
            "negative_prompt": None,
            "seed": random_seed(),
            "source": JobSource.JOB,
            # An extension keeps its source's shape: a ratio is only sent with text.
            "aspect_ratio": None,
            "template_id": None,
            "effect": None,
            "audio": source.params.asks_for_sound,
            "add_sound": False,
            "notes": (),
        }
    )


# PixVerse documents no limit for the sound description (docs/pixverse.md, "Sound"); its
# prompts' limit on the older models keeps it safe.
SOUND_DESCRIPTION_MAX = 2048


def has_sound(job: Job) -> bool:
    """Whether a finished job's video has sound as far as the bot knows: PixVerse said so,
    or the member asked for it (the Sound button is offered on the others)."""
    return bool(job.has_audio) or job.params.asks_for_sound


def sound_of(source: Job, description: str = "") -> JobParams:
    """Sound for a finished video (the Sound button): PixVerse's sound effect on the
    source's video, described by ``description`` ("" lets PixVerse choose). It is priced by
    the source's duration (the catalogue's ``[sound_effect]``); model and quality are the
    source's, for its status message."""
    if has_sound(source):
        raise Refusal(f"Job #{source.id} already has sound; nothing was charged.")
    text = clean_prompt(description)  # what PixVerse and the word filter see
    if len(text) > SOUND_DESCRIPTION_MAX:
        raise Refusal(
            f"The sound description is {len(text)} characters; the limit is "
            f"{SOUND_DESCRIPTION_MAX}: shorten it."
        )
    return source.params.model_copy(
        update={
            "prompt": text,
            "negative_prompt": None,
            "motion": Motion.NORMAL,
            "style": None,
            "seed": None,
            "source": JobSource.JOB,
            "template_id": None,
            "effect": None,
            "audio": False,
            "add_sound": True,
            "notes": (),
        }
    )


class NotUsable(StrEnum):
    """Why a job cannot be the source of a re-roll or an extension."""

    MISSING = "missing"  # no such job in this server
    UNFINISHED = "unfinished"  # not done, or PixVerse has no video for it
    REMOVED = "removed"  # a moderator removed its result


def usable_source(job: Job | None, guild_id: int | None) -> NotUsable | None:
    """The finished-job rule: None when ``job`` is a finished, kept result of this server."""
    if job is None or guild_id is None or job.guild_id != guild_id:
        return NotUsable.MISSING
    if job.state is not JobState.DONE or job.pixverse_video_id is None:
        return NotUsable.UNFINISHED
    if job.removed_at is not None:
        return NotUsable.REMOVED
    return None


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What a cancellation did: the job as it was before, and the outcome."""

    result: CancelResult
    job: Job | None = None
    state: JobState | None = None  # the job's state when it could not be cancelled
    refunded: int = 0  # credits given back

    @property
    def ok(self) -> bool:
        return self.result is CancelResult.CANCELLED


class JobService:
    def __init__(
        self,
        store: Store,
        runner: JobRunner,
        *,
        alerts: WalletAlerts | None = None,
        observer: JobObserver = UNOBSERVED,
    ) -> None:
        self._store = store
        self._runner = runner
        self._alerts = alerts
        self._observer = observer

    async def precheck(
        self, who: Requester, params: JobParams, *, check_prompt: bool = True
    ) -> None:
        """Everything that refuses a job before any download or charge: as the store would
        now, a block first, a pause, too many jobs, credits, the member's wait since their
        last accepted job (COMMAND_COOLDOWN_SECONDS) and the bot's daily budget; then the
        server's channel and prompt rules (/mod channels, /mod filter). Commands, result
        buttons and the Extend form all come through here. The store decides again,
        atomically, when the job is written."""
        await self._store.jobs.precheck(
            who.guild_id, who.user_id, params, role_ids=list(who.role_ids)
        )
        await self.check_server_rules(who, params.prompt if check_prompt else None)

    async def check_server_rules(self, who: Requester, prompt: str | None = None) -> None:
        """Refuse what this server's moderators ruled out; without ``prompt``, only where."""
        rules = await self._store.moderation.rules(who.guild_id)
        if not rules.channel_allowed(who.channel_id, who.parent_channel_id):
            where = ", ".join(f"<#{cid}>" for cid in rules.allowed_channels)
            raise Refusal(
                f"Videos can't be made in this channel: moderators allow them only in {where}."
            )
        # Matched on the cleaned text, so a zero-width character cannot hide a word.
        if prompt is not None and (phrase := rules.refused_phrase(clean_prompt(prompt))):
            raise Refusal(
                f"Your prompt contains “{phrase}”, which this server doesn't allow: "
                "rephrase it and try again. Nothing was charged."
            )

    async def accept(self, new: NewJob, role_ids: tuple[int, ...] = ()) -> Accepted:
        """Write the job, its input and its credit reservation in one transaction (the
        store decides the member's limits atomically); where it stands in line. The job
        waits for ``shown`` (or ``SHOW_HOLD``) before it can start."""
        try:
            job = await self._store.jobs.create(
                replace(new, hold_seconds=SHOW_HOLD), role_ids=list(role_ids)
            )
        except RuleViolation as exc:
            # Options are checked before this; a re-roll of a job whose model or price the
            # catalogue no longer has is refused here, saying what to change.
            raise Refusal(str(exc)) from None
        self._observer.accepted(job)
        await self._warn_budget()
        return Accepted(job, await self._store.queue.queue_position(job.id))

    async def _warn_budget(self) -> None:
        """The first job of the day to bring the bot's spend to the warning mark has the
        moderation logs told (the claim is kept in the database: once a day, restarts too)."""
        if self._alerts is None or not self._store.budget.enabled:
            return
        try:
            view = await self._store.budget.claim_warning()
        except Exception:
            # The job is accepted already: a failed warning must not fail it.
            log.exception("Could not check the daily budget's warning mark")
            return
        if view is None:
            return
        log.warning(
            "The bot has spent or reserved %d of its %d-credit daily budget (%d %%): "
            "warning the moderation logs",
            view.spent,
            view.budget,
            view.percent,
        )
        self._alerts.budget_warning(view)

    async def withdraw(self, job_id: int) -> None:
        """The member never saw the job accepted (its status message failed): it is not
        kept and not charged."""
        outcome = await self._store.jobs.cancel(job_id, reason="the status message failed")
        if outcome.ok and (job := await self._store.jobs.get(job_id)) is not None:
            self._observer.finished(job, JobState.CANCELLED, outcome.refunded)

    async def shown(self, job_id: int, channel_id: int, message_id: int) -> None:
        """The job's status message exists: remember it, and let the runner start the job.

        The runner is woken first: its claim then joins this write's group commit (one
        thread hop for both; docs/architecture.md, "CPU"), after it in the same transaction."""
        self._runner.wake()
        await self._store.jobs.set_fields(
            job_id,
            status_channel_id=channel_id,
            status_message_id=message_id,
            next_attempt_at=None,
        )

    async def remove_and_refund(
        self, job_id: int, guild_id: int, *, actor_id: int, reason: str | None
    ) -> tuple[Job, int]:
        """A moderator takes down a finished result: its credits are refunded (audited).
        Returns the job as it was and the credits given back."""
        job = await self.job_in_server(job_id, guild_id)
        if job is None:
            raise Refusal(f"There is no job #{job_id} in this server.")
        if job.removed_at is not None:
            raise Refusal(f"Job #{job_id} was already removed.")
        if job.state is not JobState.DONE:
            hint = "" if job.is_final else "; to stop it, use `/mod cancel`"
            raise Refusal(
                f"Job #{job_id} is {job.state.value}, not a finished result{hint}. Nothing changed."
            )
        refunded = await self._store.jobs.remove_result(job_id, actor_id=actor_id, reason=reason)
        if refunded is None:
            raise Refusal(f"Job #{job_id} was already removed.")
        self._observer.refunded(job, refunded)
        return job, refunded

    async def job_in_server(self, job_id: int, guild_id: int) -> Job | None:
        job = await self._store.jobs.get(job_id)
        return job if job is not None and job.guild_id == guild_id else None

    async def cancel(
        self,
        job_id: int,
        guild_id: int,
        *,
        shown: str,
        reason: str,
        owner_id: int | None = None,
        audit: AuditNote | None = None,
    ) -> Cancelled:
        """Cancel a job of this server: as its owner (``owner_id``; queued jobs only) or as a
        moderator (any unfinished job). ``shown`` is what its status message says."""
        job = await self.job_in_server(job_id, guild_id)
        if job is None:
            return Cancelled(CancelResult.NOT_FOUND)
        if owner_id is not None:
            outcome = await self._store.jobs.cancel(job_id, by_user_id=owner_id, reason=reason)
            if outcome.ok:
                self._observer.finished(job, JobState.CANCELLED, outcome.refunded)
                self._runner.report_cancelled(job, shown)
            return Cancelled(outcome.result, job, outcome.state, outcome.refunded)
        if job.is_final:
            return Cancelled(CancelResult.NOT_QUEUED, job, job.state)
        if await self._runner.cancel(job_id, shown, audit=audit) is None:
            now = await self._store.jobs.get(job_id)
            return Cancelled(CancelResult.NOT_QUEUED, job, now.state if now else None)
        return Cancelled(CancelResult.CANCELLED, job, refunded=job.cost)
