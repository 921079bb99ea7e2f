"""The one narrow interface through which the runner reports a job's progress.

The runner knows nothing of Discord: it hands a ``JobUpdate`` to a ``ProgressReporter``.
The Discord side implements it (edit via the interaction token, else via the channel,
coalesced); tests and benchmarks use a recording implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.store.models import FINAL_STATES, Job, JobParams, JobState


@dataclass(frozen=True, slots=True)
class VideoFile:
    """The finished video, downloaded within the destination's upload limit."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StatusTarget:
    """Where a job's status message lives. Opaque to the runner: the Discord side fills it."""

    channel_id: int
    message_id: int | None = None
    # The interaction token, valid until token_expires_at; out of the repr (an update is
    # logged or shown in a traceback now and then, the token must not be).
    token: str | None = field(default=None, repr=False)
    token_expires_at: float | None = None  # unix seconds


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """Everything a status message shows about one job at one moment."""

    job_id: int
    state: JobState
    guild_id: int
    channel_id: int
    owner_id: int
    kind: str
    params: JobParams
    cost: int
    target: StatusTarget
    simulated: bool = False
    parent_job_id: int | None = None
    queue_position: int | None = None
    waiting: str | None = None  # why a queued job is not moving, e.g. PixVerse is busy
    elapsed: float | None = None  # seconds since PixVerse accepted the job
    estimate: float | None = None  # expected total generation seconds
    video: VideoFile | None = None
    video_url: str | None = None
    video_note: str | None = None  # why the video is linked, not attached (default: its size)
    error: str | None = None
    refunded: bool = False
    credits_left: int | None = None
    has_audio: bool | None = None  # PixVerse's word on the finished video; None: not said

    @property
    def without_sound(self) -> bool:
        """A finished video without sound, as far as the bot knows: PixVerse did not say it
        has audio, and the member did not ask for sound (the Sound button's rule)."""
        return self.state is JobState.DONE and not self.has_audio and not self.params.asks_for_sound

    @classmethod
    def of(cls, job: Job, state: JobState, *, simulated: bool, **extra: Any) -> JobUpdate:
        """What ``job`` shows in ``state``, at the status message the job row records."""
        expires = job.interaction_expires_at
        return cls(
            job_id=job.id,
            state=state,
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            owner_id=job.user_id,
            kind=job.kind,
            params=job.params,
            cost=job.cost,
            target=StatusTarget(
                channel_id=job.status_channel_id or job.channel_id,
                message_id=job.status_message_id,
                token=job.interaction_token,
                token_expires_at=expires.timestamp() if expires else None,
            ),
            simulated=simulated,
            parent_job_id=job.parent_job_id,
            has_audio=job.has_audio,
            **extra,
        )

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class ProgressReporter(Protocol):
    async def show(self, update: JobUpdate) -> StatusTarget | None:
        """Show ``update`` on the job's status message; return where it now lives.

        Intermediate updates may be coalesced or dropped. A final update is delivered
        before this returns: to the status message, else (deleted) to a new message, whose
        target is returned so the runner can remember it. None means it could not be
        delivered at all (the channel is gone or the bot lost access).
        """
        ...
