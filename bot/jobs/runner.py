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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from bot.jobs.delivery import DeliveryPolicy, FinalDelivery
from bot.jobs.progress import JobUpdate, ProgressReporter, VideoFile
from bot.jobs.schedule import Estimator, Key, Lane, PollSchedule, RequestBudget
from bot.jobs.scheduler import PollScheduler, wait_event
from bot.pixverse import (
    AuthError,
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
    TransientError,
    VideoResult,
    VideoStatus,
    new_trace_id,
)
from bot.store import Store
from bot.store.db import StorageUnavailable
from bot.store.models import AuditNote, Job, JobInput, JobParams, JobSource, JobState

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUE_SHOWN = 50  # queued jobs whose position in line is kept up to date


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    max_active: int = 5
    schedule: PollSchedule = field(default_factory=PollSchedule)
    # PixVerse documents no request-rate limit; PIXVERSE_REQUESTS_PER_SECOND keeps us polite.
    requests_per_second: float = 20.0
    request_burst: int = 20
    poll_concurrency: int = 16
    webhooks: bool = False  # PixVerse's webhooks are received: polls are only the fallback
    progress_every: float = 5.0  # seconds of generation between progress reports
    # Hard stop ~15 min; PixVerse itself refunds after 2 h, so ours is the stricter one
    # (docs/pixverse.md, "Latency and polling").
    generation_timeout: float = 15 * 60.0
    max_attempts: int = 4  # transient failures of one step, after the client's own retries
    retry_delay: float = 5.0
    busy_delay: float = 15.0  # wait after PixVerse's concurrency limit (500044)
    idle_check: float = 5.0  # re-read the queue this often even without events
    default_upload_limit: int = 10 * 1024 * 1024
    default_estimate: float | None = None
    simulated: bool = False
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)


@dataclass(slots=True)
class _Generating:
    job: Job
    key: Key
    reported: float = float("-inf")  # elapsed seconds at the last progress report


class JobFailure(Exception):
    """A job cannot finish; the message is shown to the member, the credits go back."""


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


class JobRunner:
    def __init__(
        self,
        store: Store,
        pixverse: PixVerseClient,
        reporter: ProgressReporter,
        config: RunnerConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
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
        self._services: list[asyncio.Task[None]] = []
        self._budget = RequestBudget(self._config.requests_per_second, self._config.request_burst)
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
            store, reporter, self._final_update, self._config.delivery, clock=clock
        )
        self._busy_until = 0.0
        self._stopping = False
        self._positions: dict[int, int] = {}

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every unfinished job, then start the dispatcher and the poller."""
        self._stopping = False
        stats = await self._jobs.stats()
        for key, seconds in stats.avg_generation_seconds.items():
            self._estimator.record(key, seconds)
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
        self._services = [
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
        tasks = [*self._services, *self._starting.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._services.clear()
        self._budget.close()

    def wake(self) -> None:
        """A job was queued, cancelled or finished: look at the queue again."""
        self._wake.set()

    def result_ready(self, video_id: int) -> None:
        """PixVerse says (by webhook) a video changed: check its job now, not at its turn."""
        job_id = self._by_video.get(video_id)
        if job_id is None or not self._scheduler.webhook(job_id):
            log.debug("Webhook for video %d, which no job of ours is waiting for", video_id)

    @property
    def active(self) -> int:
        return len(self._starting) + len(self._generating)

    @property
    def delivering(self) -> int:
        return self._delivery.pending

    def estimate(self, job: Job) -> float:
        return self._estimator.estimate(_key(job))

    # -- dispatching -----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._fill_slots()
                await self._show_queue()
            except StorageUnavailable:
                pass  # the store reported it once; a traceback at every wake-up says nothing
            except Exception:
                log.exception("Job dispatch failed; retrying shortly")
            await wait_event(self._wake, self._config.idle_check)

    async def _fill_slots(self) -> None:
        while self.active < self._config.max_active and self._monotonic() >= self._busy_until:
            job = await self._store.queue.claim_next()
            if job is None:
                return
            self._launch(job)

    async def _show_queue(self) -> None:
        waiting = await self._store.queue.next_fair_batch(QUEUE_SHOWN)
        positions = {job.id: position for position, job in enumerate(waiting, start=1)}
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
            self.wake()

        task.add_done_callback(done)

    # -- upload and submit -----------------------------------------------------------------

    async def _advance(self, job: Job) -> None:
        try:
            job = await self._upload(job)
            job = await self._submit(job)
        except ConcurrencyLimit:
            await self._requeue_busy(job)
            return
        except JobFailure as failure:
            await self._fail(job, str(failure))
            return
        except PixVerseError as exc:
            await self._fail(job, explain(exc))
            return
        if job.state is JobState.GENERATING:
            self._track(job)

    async def _upload(self, job: Job) -> Job:
        source = job.params.source
        if source is JobSource.IMAGE and job.pixverse_img_id is None:
            image = await self._send_input(job, self._pixverse.upload_image)
            return replace(job, pixverse_img_id=image.img_id)
        if source is JobSource.VIDEO and job.pixverse_media_id is None:
            media = await self._send_input(job, self._pixverse.upload_media)
            return replace(job, pixverse_media_id=media.media_id)
        return job

    async def _send_input(self, job: Job, upload: Callable[..., Awaitable[T]]) -> T:
        await self._report(job, JobState.UPLOADING)
        stored = await self._input(job)
        return await self._retrying(
            job,
            lambda: upload(stored.data, filename=stored.filename, content_type=stored.content_type),
        )

    async def _input(self, job: Job) -> JobInput:
        upload = await self._jobs.get_input(job.id)
        if upload is None:
            raise JobFailure("The input file was lost before PixVerse received it.")
        return upload

    async def _submit(self, job: Job) -> Job:
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
            )
            if not moved:
                log.info("Job %d changed state before submit (cancelled?); skipping", job.id)
                return job
            job = replace(job, state=JobState.SUBMITTED, trace_id=trace_id)
        if job.next_attempt_at is None:
            # A retry after PixVerse's concurrency limit keeps showing "waiting for a slot"
            # rather than flickering between that and "submitted" on every attempt.
            await self._report(job, JobState.SUBMITTED)
        submit = await self._generate_call(job, trace_id)
        video_id = await self._retrying(job, submit)
        moved = await self._jobs.transition(
            job.id, JobState.SUBMITTED, JobState.GENERATING, pixverse_video_id=video_id
        )
        if not moved:
            log.warning("Job %d was finished elsewhere while PixVerse accepted it", job.id)
            return job
        fresh = await self._jobs.get(job.id)
        return fresh if fresh is not None else job

    async def _generate_call(self, job: Job, trace_id: str) -> Callable[[], Awaitable[int]]:
        params = job.params
        common = request_fields(params)
        if params.source is JobSource.IMAGE:
            if job.pixverse_img_id is None:
                raise JobFailure("The image never reached PixVerse.")
            image_request = ImageToVideoRequest(img_id=job.pixverse_img_id, **common)
            return lambda: self._pixverse.image_to_video(image_request, trace_id=trace_id)
        if params.source is JobSource.VIDEO:
            extend = ExtendRequest(video_media_id=job.pixverse_media_id, **common)
        else:
            parent = await self._jobs.get(job.parent_job_id) if job.parent_job_id else None
            if parent is None or parent.pixverse_video_id is None:
                raise JobFailure("The video to extend is no longer available at PixVerse.")
            extend = ExtendRequest(source_video_id=parent.pixverse_video_id, **common)
        return lambda: self._pixverse.extend(extend, trace_id=trace_id)

    async def _retrying(self, job: Job, call: Callable[[], Awaitable[T]]) -> T:
        """Retry a step on transient failures, beyond the client's own quick retries."""
        for attempt in range(1, self._config.max_attempts + 1):
            await self._budget.acquire(Lane.START)
            try:
                result = await call()
            except TransientError as exc:
                if attempt == self._config.max_attempts:
                    raise JobFailure(
                        "PixVerse kept failing to answer; please try again later."
                    ) from exc
                delay = self._config.retry_delay * 2 ** (attempt - 1)
                log.warning("Job %d: PixVerse failed (%s); retry in %.0fs", job.id, exc, delay)
                await asyncio.sleep(delay)
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

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

    def _track(self, job: Job) -> None:
        entry = _Generating(job=job, key=_key(job))
        self._generating[job.id] = entry
        self._by_video[_video_id(job)] = job.id
        self._scheduler.add(job.id, entry.key, _started(job))

    def _untrack(self, job_id: int, *, finished: bool) -> _Generating | None:
        entry = self._generating.pop(job_id, None)
        if entry is not None:
            self._by_video.pop(_video_id(entry.job), None)
        self._scheduler.remove(job_id, finished=finished)
        return entry

    def _elapsed(self, job: Job) -> float:
        return max(0.0, self._clock() - _started(job))

    async def _poll(self, job_id: int) -> None:
        """Ask PixVerse about one generating job (the scheduler calls this when it is due)."""
        entry = self._generating.get(job_id)
        if entry is None:
            self._scheduler.remove(job_id)
            return
        job = entry.job
        try:
            result = await self._pixverse.result(_video_id(job))
        except TransientError as exc:
            log.warning("Job %d: result poll failed (%s)", job.id, exc)
            self._scheduler.retry_later(job.id, self._config.schedule.steady_delay)
            return
        except NotFound:
            await self._finish_failed(entry, "PixVerse no longer has this job.")
            return
        except PixVerseError as exc:
            log.error("Job %d: PixVerse refused the result poll: %r", job.id, exc)
            self._scheduler.retry_later(job.id, self._config.schedule.late_delay)
            return
        await self._handle_result(entry, result)

    async def _handle_result(self, entry: _Generating, result: VideoResult) -> None:
        job = entry.job
        if self._generating.get(job.id) is not entry:
            return  # cancelled (``cancel``) while this poll was in flight: nothing to show
        status = result.status
        if status == VideoStatus.DONE and result.video_url:
            await self._finish_done(entry, result.video_url, _generation_seconds(result))
        elif status == VideoStatus.MODERATED:
            # A strike for the member (MODERATION_STRIKES), kept per job before the job ends,
            # so a crash in between cannot lose it and a second look cannot count it twice.
            await self._store.strikes.record(job.id)
            await self._finish_failed(
                entry,
                "PixVerse's content moderation refused this video: change the image or prompt.",
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
        self, entry: _Generating, url: str, generated: float | None = None
    ) -> None:
        job = entry.job
        # Committed first, shown after: the job stays "delivering" in the database until a
        # route to Discord works, so a crash in between re-delivers and never re-charges.
        if not await self._jobs.finish_done(job.id, url):
            self._untrack(job.id, finished=False)
            return
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
        self._delivery.deliver(fresh or replace(job, state=JobState.DONE, result_url=url))
        self.wake()

    async def _finish_failed(self, entry: _Generating, reason: str) -> None:
        self._untrack(entry.job.id, finished=True)
        await self._fail(entry.job, reason)

    async def _fail(self, job: Job, reason: str) -> None:
        log.info("Job %d failed: %s", job.id, reason)
        if await self._jobs.finish_failed(job.id, reason):
            fresh = await self._jobs.get(job.id)
            self._delivery.deliver(fresh or replace(job, state=JobState.FAILED), reason)
        self.wake()

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
        limit = job.upload_limit or self._config.default_upload_limit
        video: VideoFile | None = None
        if url:
            try:
                data = await self._pixverse.download(url, max_bytes=limit)
                video = VideoFile(filename=f"pixbot-{job.id}.mp4", data=data)
            except DownloadTooLarge:
                log.info("Job %d: video over the %d-byte upload limit; linking it", job.id, limit)
            except PixVerseError as exc:
                log.warning("Job %d: could not download the video (%s); linking it", job.id, exc)
        quota = await self._store.ledger.quota_for_job(job.id)
        finished = job.finished_at.timestamp() if job.finished_at else self._clock()
        return JobUpdate.of(
            job,
            JobState.DONE,
            simulated=self._config.simulated,
            video=video,
            video_url=url,
            credits_left=quota.left if quota else None,
            elapsed=max(0.0, finished - _started(job)),
        )

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
    """What a member is told when PixVerse refuses a job."""
    if isinstance(error, ModerationRejected):
        return "PixVerse's content moderation refused the input: change the image or prompt."
    if isinstance(error, EffectUnavailable):
        if error.code == 500071:
            return "This effect does not support 720p or 1080p: choose 360p or 540p."
        return "This effect is not available on the bot's PixVerse account right now."
    if isinstance(error, InvalidInput):
        return f"PixVerse could not use the input file: {error.message}"
    if isinstance(error, InvalidParameters):
        return f"PixVerse refused the request: {error.message}"
    if isinstance(error, OutOfCredits):
        return "The bot's PixVerse account is out of credits: please tell a server admin."
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
