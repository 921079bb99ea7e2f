"""The job runner: one background service that owns every job from the queue to its result.

- At most ``max_active`` generations are in flight at PixVerse (the account's concurrency).
- The next job to start is the oldest job of the member who started one least recently
  (``FairQueue.claim_next``), so one member's ten jobs never hold back another's one.
- Each state is persisted before the side effect that depends on it: the trace id is
  written before the generate POST, so a crash between upload and submit re-sends the same
  request with the same ``Ai-trace-id`` and PixVerse answers the first video instead of
  starting a second one (docs/pixverse.md, "Transport and trace ids").
- One scheduler (``bot.jobs.scheduler``) polls every generating job, when it is likely
  done; a verified webhook checks a job at once. Every PixVerse request, of any endpoint,
  goes through one request budget (``PIXVERSE_REQUESTS_PER_SECOND``).
- Credits: committed when PixVerse's result is in, released on failure, moderation,
  cancellation or timeout; the store keeps both idempotent per job. The final status then
  reaches Discord through ``FinalDelivery``, which retries until it does (or cannot).
- Faults (docs/pixverse.md, "Envelope and errors"): a transient failure of a step is retried
  with backoff while the job shows it is waiting; a submit whose answer never came or could
  not be read is resent with the same trace id, and after the retries goes back to the queue
  with that trace id rather than failing (PixVerse may have made and charged the video);
  500090 pauses the whole queue (``bot.jobs.pause``); the finished file is checked whole
  (``bot.jobs.mp4``) before it is attached, else downloaded again, else linked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from bot.jobs import mp4
from bot.jobs.delivery import DeliveryPolicy, FinalDelivery
from bot.jobs.observe import UNOBSERVED, JobObserver
from bot.jobs.pause import WAITING_TEXT, CreditPause, OperatorNotices
from bot.jobs.progress import JobUpdate, ProgressReporter, VideoFile
from bot.jobs.schedule import Estimator, Key, Lane, PollSchedule, RequestBudget
from bot.jobs.scheduler import PollScheduler, wait_event
from bot.pixverse import (
    AuthError,
    Balance,
    ConcurrencyLimit,
    DownloadTooLarge,
    EffectUnavailable,
    ExtendRequest,
    ImageToVideoRequest,
    InvalidInput,
    InvalidParameters,
    ModerationRejected,
    NotFound,
    OutOfCredits,
    PixVerseClient,
    PixVerseError,
    SoundEffectRequest,
    TextToVideoRequest,
    TransientError,
    TransitionRequest,
    VideoResult,
    VideoStatus,
    job_label,
    new_trace_id,
)
from bot.pixverse.catalogue import Catalogue
from bot.pixverse.hosts import DownloadRefused
from bot.store import Store
from bot.store.db import StorageUnavailable
from bot.store.models import (
    LAST_FRAME,
    AuditNote,
    Job,
    JobInput,
    JobParams,
    JobSource,
    JobState,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

CLAIM_BATCH = 50  # queued jobs claimed in one transaction at most
QUEUE_SHOWN = 50  # queued jobs whose position in line is kept up to date
PAUSE_TOLD = 1000  # queued jobs told of a pause for credits, first in line first
PAUSE_READ_EVERY = 0.5  # seconds between reads of the pause for credits (several processes)
RETRY_WAITING = "PixVerse is not answering well right now; trying again shortly"
UNANSWERED_WAITING = (
    "PixVerse did not answer the request; the bot asks again with the same request "
    "(never charged twice)"
)

# PostgreSQL NOTIFY channel on which a process passes on webhooks of jobs another one runs.
RELAY_CHANNEL = "pixbot_webhooks"


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    max_active: int = 5
    schedule: PollSchedule = field(default_factory=PollSchedule)
    # PixVerse documents no request-rate limit; PIXVERSE_REQUESTS_PER_SECOND keeps us polite.
    requests_per_second: float = 20.0
    request_burst: int = 20
    # Requests waiting for the budget go out this many seconds' worth at a time.
    request_quantum: float = 0.05
    poll_concurrency: int = 16
    webhooks: bool = False  # PixVerse's webhooks are received: polls are only the fallback
    progress_every: float = 5.0  # seconds of generation between progress reports
    # Hard stop ~15 min; PixVerse itself refunds after 2 h, so ours is the stricter one
    # (docs/pixverse.md, "Latency and polling").
    generation_timeout: float = 15 * 60.0
    max_attempts: int = 4  # transient failures of one step, after the client's own retries
    retry_delay: float = 5.0
    busy_delay: float = 15.0  # wait after PixVerse's concurrency limit (500044)
    # A submit left without an answer after its retries is asked again this much later, with
    # the same trace id, this many times before the job fails.
    unanswered_delay: float = 60.0
    unanswered_rounds: int = 5
    credit_probe_every: float = 60.0  # balance checks while paused for credits (500090)
    # The finished file: downloaded again when cut short or missing (a CDN not ready yet),
    # waiting download_retry_delay, doubling; then linked instead of attached.
    download_attempts: int = 3
    download_retry_delay: float = 10.0
    idle_check: float = 5.0  # re-read the queue this often even without events
    default_upload_limit: int = 10 * 1024 * 1024
    default_estimate: float | None = None
    simulated: bool = False
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)


@dataclass(slots=True)
class _Generating:
    job: Job
    key: Key
    started: float  # unix seconds when PixVerse accepted it, as near as the bot knows
    reported: float = float("-inf")  # elapsed seconds at the last progress report


class JobFailure(Exception):
    """A job cannot finish; the message is shown to the member, the credits go back."""


class _QueuePaused(Exception):
    """The queue is paused for credits: a job about to submit goes back in line instead."""


class _Unanswered(Exception):
    """Every try of a submit went without a readable answer: PixVerse may have the video."""

    def __init__(self, error: TransientError, trace_id: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.trace_id = trace_id


def request_fields(params: JobParams) -> dict[str, Any]:
    """The generate body's fields every kind of job shares, from the member's options."""
    return {
        "prompt": params.prompt,
        "model": params.model,
        "duration": params.duration,
        "quality": params.quality,
        "negative_prompt": params.negative_prompt,
        # v5 and later have no motion_mode; "normal" is the default, so it is left out too
        # (docs/pixverse.md, "Endpoints used").
        "motion_mode": params.motion if params.motion.value != "normal" else None,
        "seed": params.seed,
        "style": params.style,
        "template_id": params.template_id,
    }


def audio_fields(params: JobParams, catalogue: Catalogue) -> dict[str, Any]:
    """The switch that gives the video sound, when the member asked for it: native audio on
    models whose catalogue entry has it, else PixVerse's sound effect (docs/pixverse.md,
    "Sound"); nothing otherwise, never a false switch."""
    if not params.audio:
        return {}
    spec = catalogue.models.get(params.model)
    if spec is not None and spec.native_audio:
        return {"generate_audio_switch": True}
    return {"sound_effect_switch": True}


class JobRunner:
    def __init__(
        self,
        store: Store,
        pixverse: PixVerseClient,
        reporter: ProgressReporter,
        config: RunnerConfig | None = None,
        *,
        notices: OperatorNotices | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        observer: JobObserver = UNOBSERVED,
        shows_server: Callable[[int], bool] | None = None,
    ) -> None:
        self._store = store
        self._observer = observer
        # Queue places are shown by the process whose gateway shards serve the job's server
        # (several processes would otherwise edit the same messages); None: every server.
        self._shows_server = shows_server
        self._jobs = store.jobs
        self._pixverse = pixverse
        self._reporter = reporter
        self._config = config or RunnerConfig()
        self._clock = clock
        self._monotonic = monotonic
        self._starting: dict[int, asyncio.Task[None]] = {}
        self._generating: dict[int, _Generating] = {}
        self._by_video: dict[int, int] = {}  # PixVerse video id -> job id, for webhooks
        self._wake = asyncio.Event()
        # Whether the last look found no queued job that can start, and whether a job may
        # have been queued since (see ``_dispatch_loop``).
        self._queue_empty = False
        self._queue_changed = True
        self._services: list[asyncio.Task[None]] = []
        self._budget = RequestBudget(
            self._config.requests_per_second,
            self._config.request_burst,
            quantum=self._config.request_quantum,
        )
        self._estimator = Estimator(default=self._config.default_estimate)
        self._scheduler = PollScheduler(
            self._poll,
            self._budget,
            self._estimator,
            self._config.schedule,
            webhooks=self._config.webhooks,
            concurrency=self._config.poll_concurrency,
            clock=clock,
            monotonic=monotonic,
        )
        self._delivery = FinalDelivery(
            store,
            reporter,
            self._final_update,
            self._config.delivery,
            clock=clock,
            observer=observer,
        )
        self._busy_until = 0.0
        self._stopping = False
        self._positions: dict[int, int] = {}
        self._pause = CreditPause(
            store.pause,
            self._probe_balance,
            notices,
            probe_every=self._config.credit_probe_every,
            on_resume=self.wake,
            clock=clock,
        )
        self._unanswered: dict[int, int] = {}  # job id -> rounds its submit went unanswered
        self._relays: set[asyncio.Task[None]] = set()  # webhooks passed on to other processes
        self._listening = False
        self._pause_read = float("-inf")  # monotonic time of the last read of the pause

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every unfinished job, then start the dispatcher and the poller."""
        self._stopping = False
        stats = await self._jobs.stats()
        for key, seconds in stats.avg_generation_seconds.items():
            self._estimator.record(key, seconds)
        self._services = []
        # A pause for credits outlives a restart: nothing is submitted until a probe lifts it.
        await self._pause.restore()
        if self._store.leases is not None and not self._listening:
            # Webhooks land on any process; each passes on those of jobs it does not run.
            self._listening = await self._store.db.listen(RELAY_CHANNEL, self._relayed)
        if self._store.leases is not None:
            # Other processes share the jobs: only those whose lease lapsed are this one's.
            await self._lease_pass()
            self._services.append(asyncio.create_task(self._lease_loop(), name="runner-leases"))
        else:
            resumed = 0
            for job in await self._jobs.unfinished():
                if job.state in (JobState.UPLOADING, JobState.SUBMITTED):
                    self._launch(job)
                    resumed += 1
                elif job.state is JobState.GENERATING:
                    self._track(job)
                    resumed += 1
            if resumed:
                log.info("Resumed %d unfinished job(s)", resumed)
            delivering = await self._delivery.resume()
            if delivering:
                log.info("Delivering %d finished job(s) not yet shown", delivering)
        self._services += [
            asyncio.create_task(self._dispatch_loop(), name="runner-dispatch"),
            asyncio.create_task(self._scheduler.run(), name="runner-poll"),
        ]
        for task in self._services:
            task.add_done_callback(_log_crash)
        self.wake()

    async def stop(self) -> None:
        """Stop at once; every job's state is already persisted, so a restart resumes it."""
        # The flag ends the loops even if a cancellation is lost in a wake-up race.
        self._stopping = True
        self._wake.set()
        await self._scheduler.stop()
        await self._delivery.stop()
        await self._pause.stop()
        tasks = [*self._services, *self._starting.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._services.clear()
        self._budget.close()
        if self._store.leases is not None:
            # Every state is persisted: the other processes may take these jobs at once.
            try:
                handed = await self._store.leases.hand_over()
            except StorageUnavailable:
                handed = 0
            if handed:
                log.info("Handed %d job(s) over to the other processes", handed)

    def wake(self, *, queue_changed: bool = True) -> None:
        """A job was queued, cancelled or finished: look at the queue again.
        ``queue_changed=False`` when only a slot was freed (a job finished)."""
        if queue_changed:
            self._queue_changed = True
        self._wake.set()

    def result_ready(self, video_id: int, *, relayed: bool = False) -> None:
        """PixVerse says (by webhook) a video changed: check its job now, not at its turn.
        With other processes, a webhook for a job another one runs is passed on to them."""
        job_id = self._by_video.get(video_id)
        if job_id is not None and self._scheduler.webhook(job_id):
            return
        if job_id is None and self._store.leases is not None and not relayed:
            task = asyncio.create_task(self._relay(video_id), name=f"relay-{video_id}")
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)
            return
        log.debug("Webhook for video %d, which no job of ours is waiting for", video_id)

    async def _relay(self, video_id: int) -> None:
        try:
            await self._store.db.notify(RELAY_CHANNEL, str(video_id))
        except Exception:
            # Its job's own process finds the result by polling.
            log.warning("Could not pass the webhook of video %d on", video_id, exc_info=True)

    def _relayed(self, payload: str) -> None:
        try:
            video_id = int(payload)
        except ValueError:
            return
        self.result_ready(video_id, relayed=True)

    @property
    def active(self) -> int:
        return len(self._starting) + len(self._generating)

    @property
    def paused_since(self) -> float | None:
        """When the queue was paused because the PixVerse account ran out of credits (unix
        seconds), or None while it runs."""
        return self._pause.since

    @property
    def delivering(self) -> int:
        return self._delivery.pending

    def estimate(self, job: Job) -> float:
        return self._estimator.estimate(_key(job))

    # -- several processes (bot/store/leases.py) --------------------------------------------

    async def _lease_loop(self) -> None:
        leases = self._store.leases
        assert leases is not None
        while not self._stopping:
            await asyncio.sleep(leases.terms.seconds / 3)
            try:
                await self._lease_pass()
            except StorageUnavailable:
                pass  # the store reported it; the leases lapse and another process goes on
            except Exception:
                log.exception("Lease pass failed; retrying shortly")

    async def _lease_pass(self) -> None:
        """Say this process lives, share the request rate among those alive, follow the pause
        for credits, renew the leases of the jobs it runs (letting go of those another
        process ended or took), and take over the jobs whose process died."""
        leases = self._store.leases
        assert leases is not None
        alive = await leases.heartbeat()
        self._budget.set_rate(self._config.requests_per_second / alive)
        await self._follow_pause()  # before taking over jobs that would submit
        held = {*self._starting, *self._generating, *self._delivery.jobs}
        for job_id in await leases.renew(held):
            self._let_go(job_id)
        for job in await leases.take_over():
            if job.id in self._starting or job.id in self._generating:
                continue  # its own, renewed late
            log.info("Took over job %d (%s): its lease lapsed", job.id, job.state.value)
            if job.delivery_since is not None and job.is_final:
                self._delivery.deliver(job)
            elif job.state in (JobState.UPLOADING, JobState.SUBMITTED):
                self._launch(job)
            elif job.state is JobState.GENERATING:
                self._track(job)
                # Its webhook may have come and gone while no process held it: ask now.
                self._scheduler.retry_later(job.id, 0.0)

    def _let_go(self, job_id: int) -> None:
        """Another process owns this job now: stop running and delivering it here."""
        log.info("Job %d: another process owns it now; letting go", job_id)
        self._untrack(job_id, finished=False)
        task = self._starting.pop(job_id, None)
        if task is not None:
            task.cancel()
        self._delivery.drop(job_id)

    # -- dispatching -----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        looked = False  # whether the last pass looked at the queue at all
        while not self._stopping:
            # A slot freed while the queue was found empty needs no look: a thousand jobs
            # finishing would otherwise mean a thousand empty claims. Anything that may have
            # queued a job sets ``_queue_changed``; the idle timeout looks again regardless,
            # for a job whose retry time came.
            woken = self._wake.is_set()
            self._wake.clear()
            skip = woken and looked and self._queue_empty and not self._queue_changed
            try:
                if not skip:
                    self._queue_changed = False
                    if await self._fill_slots():
                        self._queue_empty = True
                        self._positions = {}  # nothing can start, so nothing waits in line
                    else:
                        self._queue_empty = False
                        await self._show_queue()
                    looked = True
            except StorageUnavailable:
                pass  # the store reported it once; a traceback at every wake-up says nothing
            except Exception:
                log.exception("Job dispatch failed; retrying shortly")
            await wait_event(self._wake, self._config.idle_check)

    async def _fill_slots(self) -> bool:
        """Start queued jobs while slots are free; True when no queued job can start now."""
        if self._store.leases is not None:
            await self._follow_pause()
        while (
            self.active < self._config.max_active
            and self._monotonic() >= self._busy_until
            and not self._pause.active
        ):
            # The free slots in one claim (one thread hop), not one claim per slot and an
            # empty one to learn that the queue ran dry. Several processes: the bot-wide
            # limit is counted in the database as well.
            shared = self._config.max_active if self._store.leases is not None else None
            wanted = min(self._config.max_active - self.active, CLAIM_BATCH)
            # A pause for credits another process began holds from its commit, before this
            # one reads it (``_follow_pause``): the claim itself checks.
            jobs = await self._store.queue.claim_many(
                wanted, max_active=shared, unless_paused=shared is not None
            )
            for job in jobs:
                self._launch(job)
            if len(jobs) < wanted:
                # Bot-wide, a short claim may mean other processes fill the limit: then a
                # slot freed here must look at the queue again.
                return shared is None
        return False

    async def _follow_pause(self) -> None:
        """Several processes: a pause for credits another one began (or lifted) holds here
        too. Read at most once a PAUSE_READ_EVERY, not at every wake-up of the dispatcher."""
        now = self._monotonic()
        if now - self._pause_read < PAUSE_READ_EVERY:
            return
        self._pause_read = now
        await self._pause.refresh()

    async def _show_queue(self) -> None:
        if self._pause.active:
            # Each waiting member is told once why nothing moves (marked in the database, so
            # not again after a restart or by another process); places are shown again (all
            # of them: the memory of what was shown is dropped) once the queue resumes.
            self._positions = {}
            batch = await self._store.queue.next_fair_batch(PAUSE_TOLD)
            # A job whose status message is not recorded yet is told at a later pass: told
            # before its message exists, it would be marked told and never see it.
            shown = {
                job.id: job
                for job in batch
                if job.status_message_id is not None
                and (self._shows_server is None or self._shows_server(job.guild_id))
            }
            for job_id in await self._pause.tell(shown):
                await self._report(shown[job_id], JobState.QUEUED, waiting=WAITING_TEXT)
            return
        waiting = await self._store.queue.next_fair_batch(QUEUE_SHOWN)
        positions = {job.id: position for position, job in enumerate(waiting, start=1)}
        if self._shows_server is not None:
            waiting = [job for job in waiting if self._shows_server(job.guild_id)]
        for job in waiting:
            # Only moves are reported: most wake-ups change nobody's place in line.
            if self._positions.get(job.id) != positions[job.id]:
                await self._report(job, JobState.QUEUED, queue_position=positions[job.id])
        self._positions = positions

    def _launch(self, job: Job) -> None:
        task = asyncio.create_task(self._advance(job), name=f"job-{job.id}")
        self._starting[job.id] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._starting.get(job.id) is finished:
                del self._starting[job.id]
            _log_crash(finished)
            self.wake(queue_changed=False)  # a slot may be free; a requeue woke it already

        task.add_done_callback(done)

    # -- upload and submit -----------------------------------------------------------------

    async def _advance(self, job: Job) -> None:
        job_label.set(f"job {job.id}")  # this task's requests, in the client's warnings
        try:
            job = await self._upload(job)
            job = await self._submit(job)
        except ConcurrencyLimit:
            await self._requeue_busy(job)
            self.wake()
            return
        except (OutOfCredits, _QueuePaused):
            await self._requeue_for_credits(job)
            self.wake()
            return
        except _Unanswered as unanswered:
            await self._requeue_unanswered(job, unanswered)
            self.wake()
            return
        except JobFailure as failure:
            await self._fail(job, str(failure))
            return
        except PixVerseError as exc:
            # Refused at upload or submit (500052, 500054, 500063): a strike as much as a
            # result in status 7 (docs/pixverse.md, "Envelope and errors").
            await self._fail(job, explain(exc), moderated=isinstance(exc, ModerationRejected))
            return
        if job.state is JobState.GENERATING:
            # PixVerse's clock started when it accepted the request, just now: the stored
            # submitted_at is earlier by the time the request waited for the budget, and
            # would make the first poll come too soon.
            self._track(job, started=self._clock())

    async def _upload(self, job: Job) -> Job:
        source = job.params.source
        if source in (JobSource.IMAGE, JobSource.FRAMES) and job.pixverse_img_id is None:
            image = await self._send_input(job, self._pixverse.upload_image, "image/upload")
            job = replace(job, pixverse_img_id=image.img_id)
        if source is JobSource.FRAMES and job.pixverse_last_img_id is None:
            # The ids are kept with the SUBMITTED transition: a crash before it uploads both
            # again (uploads are free; docs/pixverse.md, "Credits").
            last = await self._send_input(
                job, self._pixverse.upload_image, "image/upload", slot=LAST_FRAME
            )
            job = replace(job, pixverse_last_img_id=last.img_id)
        if source is JobSource.VIDEO and job.pixverse_media_id is None:
            media = await self._send_input(job, self._pixverse.upload_media, "media/upload")
            job = replace(job, pixverse_media_id=media.media_id)
        return job

    async def _send_input(
        self,
        job: Job,
        upload: Callable[..., Awaitable[T]],
        what: str,
        *,
        slot: str | None = None,
    ) -> T:
        await self._report(job, JobState.UPLOADING)
        stored = await self._input(job, slot)
        return await self._retrying(
            job,
            lambda: upload(stored.data, filename=stored.filename, content_type=stored.content_type),
            what=what,
            state=JobState.UPLOADING,
        )

    async def _input(self, job: Job, slot: str | None = None) -> JobInput:
        upload = await self._jobs.get_input(job.id, slot)
        if upload is None:
            raise JobFailure("The input file was lost before PixVerse received it.")
        return upload

    async def _submit(self, job: Job) -> Job:
        if self._pause.active:
            raise _QueuePaused  # it would only meet 500090: back in line, nothing sent
        trace_id = job.trace_id or new_trace_id()
        if job.state is not JobState.SUBMITTED or job.trace_id is None:
            # Persist the trace id first: a crash after this line re-sends the same request.
            moved = await self._jobs.transition(
                job.id,
                (JobState.UPLOADING, JobState.SUBMITTED),
                JobState.SUBMITTED,
                drop_input=True,
                trace_id=trace_id,
                pixverse_img_id=job.pixverse_img_id,
                pixverse_media_id=job.pixverse_media_id,
                pixverse_last_img_id=job.pixverse_last_img_id,
            )
            if not moved:
                log.info("Job %d changed state before submit (cancelled?); skipping", job.id)
                return job
            job = replace(job, state=JobState.SUBMITTED, trace_id=trace_id)
        if job.next_attempt_at is None:
            # A retry after PixVerse's concurrency limit keeps showing "waiting for a slot"
            # rather than flickering between that and "submitted" on every attempt.
            await self._report(job, JobState.SUBMITTED)
        submit, what = await self._generate_call(job, trace_id)
        try:
            video_id = await self._retrying(job, submit, what=what, state=JobState.SUBMITTED)
        except JobFailure as failure:
            cause = failure.__cause__
            # No ErrCode: PixVerse never answered readably, so it may have made the video.
            # The same trace id later finds it (or starts it once) instead of failing a
            # job the account may have paid for.
            if isinstance(cause, TransientError) and not cause.code:
                raise _Unanswered(cause, trace_id) from cause
            raise
        self._unanswered.pop(job.id, None)
        moved = await self._jobs.transition(
            job.id, JobState.SUBMITTED, JobState.GENERATING, pixverse_video_id=video_id
        )
        if not moved:
            log.warning("Job %d was finished elsewhere while PixVerse accepted it", job.id)
            return job
        fresh = await self._jobs.get(job.id)
        return fresh if fresh is not None else job

    async def _generate_call(
        self, job: Job, trace_id: str
    ) -> tuple[Callable[[], Awaitable[int]], str]:
        """The submit request of ``job`` (sent as often as needed), and its endpoint's name."""
        params = job.params
        if params.add_sound:
            return await self._sound_call(job, trace_id)
        common = {**request_fields(params), **audio_fields(params, self._store.catalogue)}
        if params.source is JobSource.IMAGE:
            if job.pixverse_img_id is None:
                raise JobFailure("The image never reached PixVerse.")
            image_request = ImageToVideoRequest(img_id=job.pixverse_img_id, **common)
            return (
                lambda: self._pixverse.image_to_video(image_request, trace_id=trace_id),
                "img/generate",
            )
        if params.source is JobSource.TEXT:
            # Accepted text jobs always carry their ratio; PixVerse's default is the fallback.
            ratio: dict[str, Any] = (
                {"aspect_ratio": params.aspect_ratio} if params.aspect_ratio else {}
            )
            text_request = TextToVideoRequest(**common, **ratio)
            return (
                lambda: self._pixverse.text_to_video(text_request, trace_id=trace_id),
                "text/generate",
            )
        if params.source is JobSource.FRAMES:
            if job.pixverse_img_id is None or job.pixverse_last_img_id is None:
                raise JobFailure("The first and last frames never reached PixVerse.")
            frames = TransitionRequest(
                first_frame_img=job.pixverse_img_id,
                last_frame_img=job.pixverse_last_img_id,
                **common,
            )
            return (
                lambda: self._pixverse.transition(frames, trace_id=trace_id),
                "transition/generate",
            )
        if params.source is JobSource.VIDEO:
            extend = ExtendRequest(video_media_id=job.pixverse_media_id, **common)
        else:
            parent = await self._jobs.get(job.parent_job_id) if job.parent_job_id else None
            if parent is None or parent.pixverse_video_id is None:
                raise JobFailure("The video to extend is no longer available at PixVerse.")
            extend = ExtendRequest(source_video_id=parent.pixverse_video_id, **common)
        return (lambda: self._pixverse.extend(extend, trace_id=trace_id), "extend/generate")

    async def _sound_call(
        self, job: Job, trace_id: str
    ) -> tuple[Callable[[], Awaitable[int]], str]:
        """A Sound job: PixVerse's sound-effect endpoint on the parent job's video."""
        parent = await self._jobs.get(job.parent_job_id) if job.parent_job_id else None
        if parent is None or parent.pixverse_video_id is None:
            raise JobFailure("The video to add sound to is no longer available at PixVerse.")
        request = SoundEffectRequest(
            source_video_id=parent.pixverse_video_id, description=job.params.prompt
        )
        return (
            lambda: self._pixverse.sound_effect(request, trace_id=trace_id),
            "sound_effect/generate",
        )

    async def _retrying(
        self, job: Job, call: Callable[[], Awaitable[T]], *, what: str, state: JobState
    ) -> T:
        """Retry a step on transient failures, beyond the client's own quick retries; the
        member sees the job waiting meanwhile. JobFailure (caused by the last error) when
        every try failed."""
        tries = self._config.max_attempts
        for attempt in range(1, tries + 1):
            await self._budget.acquire(Lane.START)
            try:
                result = await call()
            except TransientError as exc:
                if attempt == tries:
                    log.warning(
                        "Job %d: PixVerse %s failed %d times (%s); giving up this step",
                        job.id,
                        what,
                        tries,
                        exc,
                    )
                    raise JobFailure(
                        "PixVerse kept failing to answer; please try again later."
                    ) from exc
                delay = self._config.retry_delay * 2 ** (attempt - 1)
                log.warning(
                    "Job %d: PixVerse %s failed (%s); attempt %d of %d, retrying in %.0fs",
                    job.id,
                    what,
                    exc,
                    attempt,
                    tries,
                    delay,
                )
                await self._report(job, state, waiting=RETRY_WAITING)
                await asyncio.sleep(delay)
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _requeue_for_credits(self, job: Job) -> None:
        """500090: the whole queue pauses; this job waits in line, trace id and reservation
        kept, as if it had never started."""
        await self._pause.pause(job.cost)
        moved = await self._jobs.transition(
            job.id,
            (JobState.UPLOADING, JobState.SUBMITTED),
            JobState.QUEUED,
            pixverse_img_id=job.pixverse_img_id,
            pixverse_media_id=job.pixverse_media_id,
            pixverse_last_img_id=job.pixverse_last_img_id,
            next_attempt_at=None,
            # Its member's last start goes back to what it was, so the job keeps its place.
            started_at=None,
        )
        if moved:
            log.info("Job %d: back in the queue until the PixVerse account has credits", job.id)
            if await self._pause.tell([job.id]):
                await self._report(job, JobState.QUEUED, waiting=WAITING_TEXT)

    async def _requeue_unanswered(self, job: Job, unanswered: _Unanswered) -> None:
        rounds = self._unanswered.get(job.id, 0) + 1
        if rounds > self._config.unanswered_rounds:
            self._unanswered.pop(job.id, None)
            log.error(
                "Job %d: PixVerse never answered its submit (trace id %s, last: %s); failing "
                "it -- check the PixVerse account for a video it may have made",
                job.id,
                unanswered.trace_id,
                unanswered.error,
            )
            await self._fail(job, "PixVerse kept failing to answer; please try again later.")
            return
        self._unanswered[job.id] = rounds
        delay = self._config.unanswered_delay
        moved = await self._jobs.transition(
            job.id,
            JobState.SUBMITTED,
            JobState.QUEUED,  # trace id kept: the next try is the same request
            next_attempt_at=self._clock() + delay,
        )
        if moved:
            log.warning(
                "Job %d: no readable answer to its submit (%s); asking again in %.0fs with the "
                "same trace id (round %d of %d)",
                job.id,
                unanswered.error,
                delay,
                rounds,
                self._config.unanswered_rounds,
            )
            await self._report(job, JobState.QUEUED, waiting=UNANSWERED_WAITING)

    async def _probe_balance(self) -> Balance:
        await self._budget.acquire(Lane.START)
        return await self._pixverse.balance()

    async def _requeue_busy(self, job: Job) -> None:
        delay = self._config.busy_delay
        self._busy_until = self._monotonic() + delay
        # A refused request created nothing at PixVerse: the retry gets a fresh trace id, in
        # case PixVerse replays errors for a repeated one (docs/pixverse.md, "Open questions").
        moved = await self._jobs.transition(
            job.id,
            (JobState.UPLOADING, JobState.SUBMITTED),
            JobState.QUEUED,
            trace_id=None,
            pixverse_img_id=job.pixverse_img_id,
            pixverse_media_id=job.pixverse_media_id,
            pixverse_last_img_id=job.pixverse_last_img_id,
            next_attempt_at=self._clock() + delay,
            attempts=job.attempts + 1,
        )
        if moved:
            log.info("Job %d: PixVerse is at its concurrency limit; re-queued", job.id)
            await self._report(
                job,
                JobState.QUEUED,
                waiting=(
                    "PixVerse is busy with other videos; this one starts as soon as a slot frees up"
                ),
            )

    # -- polling ---------------------------------------------------------------------------

    def _track(self, job: Job, *, started: float | None = None) -> None:
        entry = _Generating(
            job=job, key=_key(job), started=_started(job) if started is None else started
        )
        self._generating[job.id] = entry
        self._by_video[_video_id(job)] = job.id
        self._scheduler.add(job.id, entry.key, entry.started)

    def _untrack(self, job_id: int, *, finished: bool) -> _Generating | None:
        entry = self._generating.pop(job_id, None)
        if entry is not None:
            self._by_video.pop(_video_id(entry.job), None)
        self._scheduler.remove(job_id, finished=finished)
        return entry

    def _elapsed(self, job: Job) -> float:
        entry = self._generating.get(job.id)
        started = entry.started if entry is not None else _started(job)
        return max(0.0, self._clock() - started)

    async def _poll(self, job_id: int) -> None:
        """Ask PixVerse about one generating job (the scheduler calls this when it is due)."""
        entry = self._generating.get(job_id)
        if entry is None:
            self._scheduler.remove(job_id)
            return
        job = entry.job
        label = job_label.set(f"job {job.id}")
        try:
            result = await self._pixverse.result(_video_id(job))
        except TransientError as exc:
            # An unreadable answer too: the next poll asks again.
            log.warning("Job %d: PixVerse video/result poll failed (%s)", job.id, exc)
            self._scheduler.retry_later(job.id, self._config.schedule.steady_delay)
            return
        except NotFound:
            await self._finish_failed(entry, "PixVerse no longer has this job.")
            return
        except PixVerseError as exc:
            log.error("Job %d: PixVerse refused the result poll: %r", job.id, exc)
            self._scheduler.retry_later(job.id, self._config.schedule.late_delay)
            return
        finally:
            job_label.reset(label)
        await self._handle_result(entry, result)

    async def _handle_result(self, entry: _Generating, result: VideoResult) -> None:
        job = entry.job
        if self._generating.get(job.id) is not entry:
            return  # cancelled (``cancel``) while this poll was in flight: nothing to show
        status = result.status
        if status == VideoStatus.DONE and result.video_url:
            await self._finish_done(
                entry,
                result.video_url,
                _generation_seconds(result),
                charged=_charged(result),
                has_audio=result.has_audio,
            )
        elif status == VideoStatus.MODERATED:
            await self._finish_failed(
                entry,
                "PixVerse's content moderation refused this video: change the image or prompt.",
                moderated=True,
            )
        elif status == VideoStatus.FAILED:
            await self._finish_failed(entry, "PixVerse could not generate this video.")
        elif status == VideoStatus.DELETED:
            await self._finish_failed(entry, "PixVerse deleted this video.")
        else:
            elapsed = self._elapsed(job)
            if elapsed > self._config.generation_timeout:
                minutes = self._config.generation_timeout / 60
                await self._finish_failed(
                    entry, f"PixVerse did not finish within {minutes:.0f} minutes."
                )
                return
            self._scheduler.still_running(job.id, elapsed)
            # Polls come every second or two near the finish; the elapsed time a member sees
            # moves in coarser steps, so most polls would report nothing new.
            if elapsed - entry.reported >= self._config.progress_every:
                entry.reported = elapsed
                await self._report(
                    job, JobState.GENERATING, elapsed=elapsed, estimate=self.estimate(job)
                )

    async def _finish_done(
        self,
        entry: _Generating,
        url: str,
        generated: float | None = None,
        *,
        charged: int | None = None,
        has_audio: bool | None = None,
    ) -> None:
        job = entry.job
        # Committed first, shown after: the job stays "delivering" in the database until a
        # route to Discord works, so a crash in between re-delivers and never re-charges.
        # What PixVerse reports it charged is what the member's ledger commits.
        # PixVerse's has_audio is kept with the job: the Sound button is offered by it, also
        # when the result is delivered after a restart.
        if not await self._jobs.finish_done(job.id, url, charged=charged, has_audio=has_audio):
            self._untrack(job.id, finished=False)
            return
        self._observer.finished(job, JobState.DONE, job.cost if charged is None else charged)
        if charged is not None and charged != job.cost:
            p = job.params
            log.info(
                "Job %d: PixVerse charged %d credits for %s %s %d s%s; %d were reserved"
                " (the catalogue's price): the ledger committed %d",
                job.id,
                charged,
                p.model,
                p.quality.value,
                p.duration,
                "" if p.motion.value == "normal" else f" {p.motion.value}",
                job.cost,
                charged,
            )
        done = self._elapsed(job)
        last_pending = self._scheduler.checked(job.id)
        self._untrack(job.id, finished=True)
        # PixVerse's own timestamps say how long it took. Without them, the video became
        # ready between the last "still generating" answer (or the start) and this poll:
        # the midpoint keeps our polling delay out of the estimate, which learning "found
        # at the first poll" would feed back into ever later first polls.
        sample = generated or ((last_pending or 0.0) + done) / 2
        self._estimator.record(entry.key, sample)
        fresh = await self._jobs.get(job.id)
        self._delivery.deliver(
            fresh or replace(job, state=JobState.DONE, result_url=url, has_audio=has_audio)
        )
        self.wake(queue_changed=False)

    async def _finish_failed(
        self, entry: _Generating, reason: str, *, moderated: bool = False
    ) -> None:
        self._untrack(entry.job.id, finished=True)
        await self._fail(entry.job, reason, moderated=moderated)

    async def _fail(self, job: Job, reason: str, *, moderated: bool = False) -> None:
        """End the job failed, its credits released. ``moderated``: PixVerse's moderation
        refused it, at upload, at submit or as the result's status 7."""
        log.info("Job %d failed: %s", job.id, reason)
        if moderated:
            # A strike for the member (MODERATION_STRIKES), kept per job before the job ends,
            # so a crash in between cannot lose it and a second look cannot count it twice.
            await self._store.strikes.record(job.id)
        if await self._jobs.finish_failed(job.id, reason):
            self._observer.finished(job, JobState.FAILED, job.cost)
            fresh = await self._jobs.get(job.id)
            self._delivery.deliver(fresh or replace(job, state=JobState.FAILED), reason)
        self.wake(queue_changed=False)

    async def _final_update(self, job: Job, note: str | None) -> JobUpdate:
        """What a finished job's status message shows for good (built once per delivery)."""
        if job.state is JobState.DONE:
            return await self._done_update(job)
        return JobUpdate.of(
            job,
            job.state,
            simulated=self._config.simulated,
            error=note or job.error,
            refunded=True,
        )

    async def _done_update(self, job: Job) -> JobUpdate:
        url = job.result_url
        video: VideoFile | None = None
        note: str | None = None
        if url:
            label = job_label.set(f"job {job.id}")
            try:
                video, note = await self._fetch_video(job, url)
            finally:
                job_label.reset(label)
        quota = await self._store.ledger.quota_for_job(job.id)
        finished = job.finished_at.timestamp() if job.finished_at else self._clock()
        return JobUpdate.of(
            job,
            JobState.DONE,
            simulated=self._config.simulated,
            video=video,
            video_url=url,
            video_note=note,
            credits_left=quota.left if quota else None,
            elapsed=max(0.0, finished - _started(job)),
        )

    async def _fetch_video(self, job: Job, url: str) -> tuple[VideoFile | None, str | None]:
        """The finished file, whole, or None and why it is linked instead.

        A file cut short in transit can still be a complete HTTP 200, and a CDN may answer
        404 for a while after PixVerse says done: both are fetched again, a bounded number
        of times with backoff, and never attached half."""
        limit = job.upload_limit or self._config.default_upload_limit
        tries = max(1, self._config.download_attempts)
        for attempt in range(1, tries + 1):
            try:
                data = await self._pixverse.download(url, max_bytes=limit)
            except DownloadTooLarge:
                log.info("Job %d: video over the %d-byte upload limit; linking it", job.id, limit)
                return None, None
            except DownloadRefused:
                # Not a host we download from (hosts.py logged which): asking again changes
                # nothing, so the member gets the link now rather than after the backoff.
                return None, None
            except PixVerseError as exc:
                problem = str(exc)
            else:
                broken = mp4.problem(data)
                if broken is None:
                    return VideoFile(filename=f"pixbot-{job.id}.mp4", data=data), None
                problem = f"not a whole MP4 file: {broken}"
            if attempt == tries:
                log.warning(
                    "Job %d: video download failed %d times (%s); linking it",
                    job.id,
                    tries,
                    problem,
                )
                break
            delay = self._config.download_retry_delay * 2 ** (attempt - 1)
            log.warning(
                "Job %d: video download attempt %d of %d failed (%s); trying again in %.0fs",
                job.id,
                attempt,
                tries,
                problem,
                delay,
            )
            await asyncio.sleep(delay)
        return None, "PixVerse's file could not be fetched whole; open it at PixVerse"

    # -- cancelling ------------------------------------------------------------------------

    async def cancel(
        self, job_id: int, reason: str, *, audit: AuditNote | None = None
    ) -> Job | None:
        """End an unfinished job wherever it is (a moderator's ``/mod cancel``), release its
        credits, stop uploading, submitting or polling it, and show it cancelled.

        Returns the job as it was, or None if it does not exist or had already ended. A job
        PixVerse already accepted may still finish there; the bot no longer looks at it.
        """
        job = await self._jobs.get(job_id)
        if job is None or job.is_final:
            return None
        if job.state is JobState.QUEUED:
            outcome = await self._jobs.cancel(job_id, reason=reason, audit=audit)
            if outcome.ok:
                self._observer.finished(job, JobState.CANCELLED, outcome.refunded)
                self.report_cancelled(job, reason)
                return job
            # Claimed by the dispatcher meanwhile: stop it like any job in flight.
        self._untrack(job_id, finished=False)  # a poll in flight sees this and drops its result
        task = self._starting.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not await self._jobs.finish_failed(
            job_id, reason, state=JobState.CANCELLED, audit=audit
        ):
            return None
        self._observer.finished(job, JobState.CANCELLED, job.cost)
        self.report_cancelled(job, reason)
        return job

    # -- reporting -------------------------------------------------------------------------

    def report_cancelled(self, job: Job, reason: str) -> None:
        """Show a job cancelled elsewhere (by its owner or a moderator); the cancellation is
        already committed. The status edit is delivered in the background, never by the
        caller, who has an interaction to answer."""
        self._delivery.deliver(replace(job, state=JobState.CANCELLED), reason)
        self.wake()

    async def _report(self, job: Job, state: JobState, **extra: object) -> None:
        """A progress update: best effort, never blocking the job."""
        update = JobUpdate.of(job, state, simulated=self._config.simulated, **extra)
        try:
            await self._reporter.show(update)
        except Exception:
            log.exception("Job %d: could not show its status", job.id)


def explain(error: PixVerseError) -> str:
    """What a member is told when PixVerse refuses a job. (Out of credits never fails a job:
    ``_advance`` sends it back to the queue, which pauses.)"""
    if isinstance(error, ModerationRejected):
        return "PixVerse's content moderation refused the input: change the image or prompt."
    if isinstance(error, EffectUnavailable):
        if error.code == 500071:
            # Refused at submit, so nothing was charged at PixVerse and the job is refunded.
            return (
                "This effect has no 720p or 1080p version at PixVerse: choose 540p or lower "
                "(360p or 540p) and try it again."
            )
        return (
            "This effect is not available on the bot's PixVerse account right now "
            "(not activated, or over the account's monthly effect limit)."
        )
    if isinstance(error, InvalidInput):
        return f"PixVerse could not use the input file: {error.message}"
    if isinstance(error, InvalidParameters):
        return f"PixVerse refused the request: {error.message}"
    if isinstance(error, AuthError):
        return "PixVerse refused the bot's API key: please tell the bot's operator."
    if isinstance(error, NotFound):
        return "PixVerse could not find the source of this job."
    return "PixVerse failed to take the job; please try again later."


def _video_id(job: Job) -> int:
    assert job.pixverse_video_id is not None
    return job.pixverse_video_id


def _key(job: Job) -> Key:
    p = job.params
    return (p.model, p.quality.value, p.duration)


def _charged(result: VideoResult) -> int | None:
    """The credits PixVerse says the job cost, when it says (docs/pixverse.md, "Credits").

    A missing, zero or negative value is no report: a video is never free at PixVerse, so a
    0 is far likelier an unfilled field than a price, and committing it would give the
    member the video for nothing. The reservation is committed then."""
    credits = result.credits
    return credits if credits is not None and credits > 0 else None


def _generation_seconds(result: VideoResult) -> float | None:
    """Seconds from PixVerse's create_time to modify_time (docs/pixverse.md, "Result and
    status codes": whole-second UTC stamps like 2026-09-22T15:16:40Z), if both parse."""
    try:
        created = datetime.fromisoformat(result.create_time or "")
        modified = datetime.fromisoformat(result.modify_time or "")
        seconds = (modified - created).total_seconds()
    except (ValueError, TypeError):  # unparseable, or one stamp with a zone and one without
        return None
    return seconds if seconds > 0 else None


def _started(job: Job) -> float:
    """When PixVerse's generation started, as far as the bot knows."""
    return (job.submitted_at or job.started_at or job.created_at).timestamp()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Background task %s crashed", task.get_name(), exc_info=exc)
