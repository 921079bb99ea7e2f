"""What the job services tell an observer (the metrics, ``bot.metrics``) as jobs move.

One narrow interface, so the runner, the delivery and the use cases count nothing themselves
and import no metrics library. Each call comes after the store committed what it reports,
from the one caller whose write changed it, so nothing is told twice. An observer must
return at once and never raise: it is called on the jobs' own paths.
"""

from __future__ import annotations

from typing import Protocol

from bot.store.models import Job, JobState


class JobObserver(Protocol):
    def accepted(self, job: Job) -> None:
        """The job was written with its credit reservation (``job.cost``)."""
        ...

    def finished(self, job: Job, state: JobState, credits: int) -> None:
        """The job ended in ``state``: ``credits`` were committed (done) or released."""
        ...

    def refunded(self, job: Job, credits: int) -> None:
        """A moderator removed the job's result and ``credits`` went back to its member."""
        ...

    def delivered(self, job: Job, seconds: float) -> None:
        """The job's final state reached Discord ``seconds`` after the job finished."""
        ...

    def abandoned(self, job: Job) -> None:
        """The job's final state never reached Discord (gave up, or no route can)."""
        ...


class Unobserved:
    """The observer when nobody listens."""

    def accepted(self, job: Job) -> None:
        pass

    def finished(self, job: Job, state: JobState, credits: int) -> None:
        pass

    def refunded(self, job: Job, credits: int) -> None:
        pass

    def delivered(self, job: Job, seconds: float) -> None:
        pass

    def abandoned(self, job: Job) -> None:
        pass


UNOBSERVED = Unobserved()
