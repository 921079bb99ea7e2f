"""Typed values the store hands out and takes in; no SQL here."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.pixverse.rules import SEED_MAX, Combination, Motion, Quality, Style
from bot.store.clock import from_ts


class JobState(StrEnum):
    QUEUED = "queued"
    UPLOADING = "uploading"
    SUBMITTED = "submitted"
    GENERATING = "generating"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES: frozenset[JobState] = frozenset(
    {JobState.QUEUED, JobState.UPLOADING, JobState.SUBMITTED, JobState.GENERATING}
)
FINAL_STATES: frozenset[JobState] = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
# Written exactly like the WHERE of the partial index ix_jobs_active, so SQLite uses it.
ACTIVE_SQL = "('queued', 'uploading', 'submitted', 'generating')"


class JobKind(StrEnum):
    VIDEO = "video"  # /video: an image animated
    EXTEND = "extend"
    REROLL = "reroll"
    TEXT = "text"  # /imagine: a video from text alone
    TRANSITION = "transition"  # /transition: a video from a first and a last frame
    SOUND = "sound"  # the Sound button: PixVerse's sound effect on a finished video


class JobSource(StrEnum):
    IMAGE = "image"  # an uploaded image (job_inputs until PixVerse has it, then pixverse_img_id)
    VIDEO = "video"  # an uploaded video (then pixverse_media_id)
    JOB = "job"  # one of the bot's finished jobs (parent_job_id → its pixverse_video_id)
    TEXT = "text"  # nothing uploaded: the prompt and the aspect ratio
    # Two uploaded images: the first frame as IMAGE's (job_inputs, then pixverse_img_id), the
    # last frame in job_extra_inputs (slot LAST_FRAME), then pixverse_last_img_id.
    FRAMES = "frames"


# The job_extra_inputs slot of a transition's last frame.
LAST_FRAME = "last_frame"


class JobParams(BaseModel):
    """What the member asked for; stored as JSON in ``jobs.params``."""

    # Unknown keys are ignored so a row written by a newer bot still loads after a rollback.
    model_config = ConfigDict(frozen=True, extra="ignore")

    prompt: str
    negative_prompt: str | None = None
    # A model of the catalogue (bot.pixverse.catalogue) when the job was accepted; kept as
    # written, so a job stays readable after its model leaves the catalogue.
    model: str
    quality: Quality
    duration: int
    motion: Motion = Motion.NORMAL
    style: Style | None = None
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    template_id: int | None = None
    effect: str | None = None
    # The video gets sound: native audio on models whose catalogue entry has it
    # (generate_audio_switch), else PixVerse's sound effect (sound_effect_switch).
    audio: bool = False
    # A Sound job: PixVerse's sound-effect endpoint on the parent job's video; ``prompt`` is
    # what the sound should be ("" lets PixVerse choose), and model, quality and duration
    # are the source's (the duration prices it).
    add_sound: bool = False
    source: JobSource = JobSource.IMAGE
    # A text video's aspect ratio (source TEXT); other videos follow their input.
    aspect_ratio: str | None = None
    # What the member was told at acceptance (e.g. an option left out); shown on the status.
    notes: tuple[str, ...] = ()

    @property
    def combination(self) -> Combination:
        return Combination(self.model, self.quality, self.duration, self.motion, self.audio)

    @property
    def asks_for_sound(self) -> bool:
        """Whether the member asked for a video with sound (audio, or a Sound job)."""
        return self.audio or self.add_sound


@dataclass(frozen=True, slots=True)
class JobInput:
    """An input file downloaded at acceptance (Discord attachment URLs expire)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class NewJob:
    guild_id: int
    channel_id: int
    user_id: int
    params: JobParams
    kind: JobKind = JobKind.VIDEO
    parent_job_id: int | None = None
    input: JobInput | None = None
    # A transition's last frame (the first is ``input``).
    last_input: JobInput | None = None
    # Out of the repr: a job logged or shown in a traceback must not leak a live token.
    interaction_token: str | None = field(default=None, repr=False)
    interaction_expires_at: datetime | None = None
    status_channel_id: int | None = None
    status_message_id: int | None = None
    # A re-roll reuses the parent's upload: PixVerse ids can be given up front.
    pixverse_img_id: int | None = None
    pixverse_media_id: int | None = None
    pixverse_last_img_id: int | None = None
    # None: priced by the store's catalogue with the operator's overrides.
    cost: int | None = None
    # Bytes the destination accepts as an attachment; None: the runner's default.
    upload_limit: int | None = None
    # Seconds the job may not start for (its ``next_attempt_at``), unless released sooner:
    # a job waits for its status message (``JobService.accept`` and ``shown``).
    hold_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    guild_id: int
    channel_id: int
    user_id: int
    kind: str
    parent_job_id: int | None
    params: JobParams
    cost: int
    state: JobState
    pixverse_img_id: int | None
    pixverse_media_id: int | None
    pixverse_video_id: int | None
    trace_id: str | None
    result_url: str | None
    status_channel_id: int | None
    status_message_id: int | None
    # Out of the repr, as NewJob's: it edits the member's message until it expires.
    interaction_token: str | None = field(repr=False)
    interaction_expires_at: datetime | None
    attempts: int
    next_attempt_at: datetime | None
    error: str | None
    removed_at: datetime | None
    removed_by: int | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    submitted_at: datetime | None
    finished_at: datetime | None
    upload_limit: int | None = None
    # Set while the final status (video or failure) has not yet reached Discord.
    delivery_since: datetime | None = None
    # A transition's last frame at PixVerse (its first is pixverse_img_id).
    pixverse_last_img_id: int | None = None
    # PixVerse's ``has_audio`` for the finished video; None: not said (or not finished).
    has_audio: bool | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            guild_id=row["guild_id"],
            channel_id=row["channel_id"],
            user_id=row["user_id"],
            kind=row["kind"],
            parent_job_id=row["parent_job_id"],
            params=JobParams.model_validate_json(row["params"]),
            cost=row["cost"],
            state=JobState(row["state"]),
            pixverse_img_id=row["pixverse_img_id"],
            pixverse_media_id=row["pixverse_media_id"],
            pixverse_video_id=row["pixverse_video_id"],
            trace_id=row["trace_id"],
            result_url=row["result_url"],
            status_channel_id=row["status_channel_id"],
            status_message_id=row["status_message_id"],
            interaction_token=row["interaction_token"],
            interaction_expires_at=from_ts(row["interaction_expires_at"]),
            attempts=row["attempts"],
            next_attempt_at=from_ts(row["next_attempt_at"]),
            error=row["error"],
            removed_at=from_ts(row["removed_at"]),
            removed_by=row["removed_by"],
            created_at=_required(from_ts(row["created_at"])),
            updated_at=_required(from_ts(row["updated_at"])),
            started_at=from_ts(row["started_at"]),
            submitted_at=from_ts(row["submitted_at"]),
            finished_at=from_ts(row["finished_at"]),
            upload_limit=row["upload_limit"],
            delivery_since=from_ts(row["delivery_since"]),
            pixverse_last_img_id=row["pixverse_last_img_id"],
            has_audio=None if row["has_audio"] is None else bool(row["has_audio"]),
        )


def _required(value: datetime | None) -> datetime:
    assert value is not None
    return value


AllowanceSource = Literal["own", "role", "default"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The operator's credit limits, given to the store once (settings DAILY_CREDITS and
    MAX_JOBS_PER_USER)."""

    daily_credits: int  # a member's allowance without an own value or a richer role
    max_jobs_per_user: int  # jobs queued or in flight per member, across servers
    # The operator's wallet (BUDGET_DAILY_CREDITS, MODERATION_STRIKES,
    # COMMAND_COOLDOWN_SECONDS); 0 turns each off, the default for callers that omit them.
    budget_daily_credits: int = 0  # the bot's spend per UTC day, all servers together
    moderation_strikes: int = 0  # status-7 refusals per member, server and UTC day → blocked
    command_cooldown_seconds: float = 0.0  # between a member's accepted jobs in a server


@dataclass(frozen=True, slots=True)
class QuotaView:
    """One member's credits today: what /quota and /quota-admin show display.

    ``left`` = allowance + bonus − used_today − reserved (never shown below 0).
    """

    guild_id: int
    user_id: int
    allowance: int
    allowance_source: AllowanceSource
    bonus: int
    used_today: int
    reserved: int
    left: int
    blocked: bool
    block_reason: str | None
    daily_override: int | None
    server_cap: int  # 0 = no cap
    server_used_today: int
    server_reserved: int
    resets_at: datetime

    @property
    def server_left(self) -> int | None:
        """Credits the whole server may still start today, or None without a cap."""
        if self.server_cap <= 0:
            return None
        return max(0, self.server_cap - self.server_used_today - self.server_reserved)


@dataclass(frozen=True, slots=True)
class ServerView:
    guild_id: int
    server_cap: int
    used_today: int
    reserved: int
    resets_at: datetime
    role_dailies: dict[int, int] = field(default_factory=dict)

    @property
    def left(self) -> int | None:
        if self.server_cap <= 0:
            return None
        return max(0, self.server_cap - self.used_today - self.reserved)


@dataclass(frozen=True, slots=True)
class TopEntry:
    user_id: int
    credits: int
    jobs: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    guild_id: int
    actor_id: int
    action: str
    target_id: int | None
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AuditEntry:
        created = from_ts(row["created_at"])
        assert created is not None
        return cls(
            id=row["id"],
            guild_id=row["guild_id"],
            actor_id=row["actor_id"],
            action=row["action"],
            target_id=row["target_id"],
            before=json.loads(row["before_json"]),
            after=json.loads(row["after_json"]),
            reason=row["reason"],
            created_at=created,
        )


@dataclass(frozen=True, slots=True)
class AuditNote:
    """Who asked for a job-level moderation change; written to audit_log in the same transaction."""

    actor_id: int
    action: str
    reason: str | None = None


class CancelResult(StrEnum):
    CANCELLED = "cancelled"
    NOT_FOUND = "not_found"
    NOT_OWNER = "not_owner"
    NOT_QUEUED = "not_queued"  # PixVerse may already have it; see CancelOutcome.state


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    result: CancelResult
    state: JobState | None = None  # the job's state after the call
    refunded: int = 0

    @property
    def ok(self) -> bool:
        return self.result is CancelResult.CANCELLED


@dataclass(frozen=True, slots=True)
class QueueStats:
    queued: int
    running: int
    # (model, quality, duration) → mean seconds from submit to done, over recent finished jobs.
    avg_generation_seconds: dict[tuple[str, str, int], float]
    samples: dict[tuple[str, str, int], int]


@dataclass(frozen=True, slots=True)
class GuildSettings:
    guild_id: int
    server_cap: int = 0
    paused: bool = False
    pause_reason: str | None = None
    log_channel_id: int | None = None
