"""Final delivery: a finished job's result (or failure) reaches its member, whatever it takes.

A job's final state is committed first (credits included) and marked "delivering" in the
database; this service then shows it through the reporter, retrying with backoff on any
error for up to ``give_up_after`` seconds from when the job finished — across restarts,
since the mark is persisted. The reporter tries its routes in order (interaction webhook,
channel message, a new message mentioning the owner) and raises ``DeliveryFailed`` when
none worked; a permanent failure (the channel is gone, the bot lost access) ends the
delivery at once. The job stays done either way and ``/jobs`` shows it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.jobs.observe import UNOBSERVED, JobObserver
from bot.jobs.progress import JobUpdate, ProgressReporter
from bot.store import Store
from bot.store.models import Job

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """No route delivered a final update this time; ``permanent`` when none ever will."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    first_delay: float = 1.0
    max_delay: float = 60.0
    give_up_after: float = 30 * 60.0  # minutes, not seconds: Discord outages pass
    # The delivery mark is cleared with the next batch of writes, or after this long: the
    # result is on Discord already, and a restart in between only edits it in once more.
    clear_within: float = 1.0


BuildUpdate = Callable[[Job, "str | None"], Awaitable[JobUpdate]]


class FinalDelivery:
    def __init__(
        self,
        store: Store,
        reporter: ProgressReporter,
        build: BuildUpdate,
        policy: DeliveryPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        observer: JobObserver = UNOBSERVED,
    ) -> None:
        self._jobs = store.jobs
        self._observer = observer
        self._reporter = reporter
        self._build = build
        self._policy = policy or DeliveryPolicy()
        self._clock = clock
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stopping = False

    def deliver(self, job: Job, note: str | None = None) -> None:
        """Start delivering ``job``'s final state (already committed); ``note`` is the
        member-facing reason of a failure, when the caller has a better one than the row's."""
        if self._stopping or job.id in self._tasks:
            return
        task = asyncio.create_task(self._run(job, note), name=f"deliver-{job.id}")
        self._tasks[job.id] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._tasks.get(job.id) is finished:
                del self._tasks[job.id]
            if not finished.cancelled() and (exc := finished.exception()) is not None:
                log.error("Job %d: delivery task crashed", job.id, exc_info=exc)

        task.add_done_callback(done)

    async def resume(self) -> int:
        """Deliver what a previous run finished but could not show."""
        pending = await self._jobs.pending_deliveries()
        for job in pending:
            self.deliver(job)
        return len(pending)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    @property
    def jobs(self) -> set[int]:
        """The jobs being delivered."""
        return set(self._tasks)

    def drop(self, job_id: int) -> None:
        """Stop delivering one job (another process delivers it now)."""
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        """Stop trying; the marks stay in the database, so the next start goes on."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: Job, note: str | None) -> None:
        since = job.delivery_since.timestamp() if job.delivery_since else self._clock()
        deadline = since + self._policy.give_up_after
        update: JobUpdate | None = None
        delay = self._policy.first_delay
        attempt = 0
        while True:
            attempt += 1
            try:
                if update is None:
                    update = await self._build(job, note)
                target = await self._reporter.show(update)
            except DeliveryFailed as exc:
                if exc.permanent:
                    log.warning("Job %d: its result cannot be shown (%s); see /jobs", job.id, exc)
                    await self._jobs.delivered(job.id)
                    self._observer.abandoned(job)
                    return
                log.warning("Job %d: delivery attempt %d failed: %s", job.id, attempt, exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Job %d: delivery attempt %d failed", job.id, attempt)
            else:
                update = None  # the video's bytes are not kept while the mark waits
                moved = target is not None and target.message_id != job.status_message_id
                await self._jobs.delivered(
                    job.id,
                    channel_id=target.channel_id if moved and target else None,
                    message_id=target.message_id if moved and target else None,
                    # A new status message is recorded at once: a restart must edit it,
                    # not post another.
                    within=None if moved else self._policy.clear_within,
                )
                self._observer.delivered(job, max(0.0, self._clock() - since))
                return
            if self._clock() + delay > deadline:
                minutes = self._policy.give_up_after / 60
                log.error(
                    "Job %d: gave up showing its result after %.0f minutes; see /jobs",
                    job.id,
                    minutes,
                )
                await self._jobs.delivered(job.id)
                self._observer.abandoned(job)
                return
            # Jitter spreads the retries of many jobs that failed together.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._policy.max_delay)
