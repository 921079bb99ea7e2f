"""The bot's Prometheus metrics: one ``CollectorRegistry`` per bot, never the global default
(tests run several bots in one process, and a restarted bot starts from zero).

Three kinds of numbers:

- counted as things happen, in this process: PixVerse requests (``pixverse_request``, the
  client's observer), Discord requests (``discord_trace``, discord.py's ``http_trace``), and
  jobs accepted, finished and delivered with their credits (the ``JobObserver`` the runner,
  the delivery and the use cases call);
- read at each scrape (``refresh``): the unfinished jobs by state and kind from the database
  (bot-wide: every process sharing the database reports the same numbers), this process's
  runner, and its gateway connections;
- the process itself (CPU, memory, open files), from prometheus-client.

Labels stay few: endpoints, routes, states, kinds, error codes, shard ids. Never a member,
a job, a message, or an interaction token (``bot.metrics.routes``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiohttp
import yarl
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.metrics.routes import GATEWAY, rate_limit_scope, route_template
from bot.pixverse.client import DownloadTooLarge
from bot.pixverse.errors import (
    AuthError,
    ConcurrencyLimit,
    InvalidInput,
    InvalidParameters,
    ModerationRejected,
    NotFound,
    OutOfCredits,
    PixVerseError,
    TransientError,
    UnreadableAnswer,
)
from bot.store.models import ACTIVE_STATES, FINAL_STATES, Job, JobKind, JobState

if TYPE_CHECKING:
    from bot.jobs.runner import JobRunner
    from bot.store import Store

log = logging.getLogger(__name__)

# PixVerse answers in well under a second, uploads and downloads take longer.
PIXVERSE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Seconds to minutes normally; up to the delivery's 30-minute limit when Discord is down.
DELIVERY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0)
# In the order a job passes them, for a stable exposition.
UNFINISHED_STATES = tuple(state for state in JobState if state in ACTIVE_STATES)
ENDED_STATES = tuple(state for state in JobState if state in FINAL_STATES)

# What a failed PixVerse request is called in the outcome label; the first match counts.
_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (UnreadableAnswer, "unreadable"),
    (TransientError, "transient"),
    (OutOfCredits, "out_of_credits"),
    (ConcurrencyLimit, "busy"),
    (AuthError, "auth"),
    (ModerationRejected, "moderated"),
    (InvalidInput, "invalid_input"),
    (InvalidParameters, "invalid_parameters"),
    (NotFound, "not_found"),
    (PixVerseError, "refused"),
    (TimeoutError, "timeout"),
    (aiohttp.ClientError, "connection"),
)


def pixverse_outcome(error: BaseException | None) -> tuple[str, str | None]:
    """The outcome label of a PixVerse request and, for a failure, its error code label:
    PixVerse's ErrCode, else ``http_<status>``, else the outcome itself (a timeout). None
    for no failure."""
    if error is None:
        return "ok", None
    if isinstance(error, DownloadTooLarge):
        return "too_large", None  # no failure: the video is linked instead of attached
    outcome = next((name for kind, name in _OUTCOMES if isinstance(error, kind)), "error")
    if isinstance(error, PixVerseError):
        if error.code:
            return outcome, str(error.code)
        if error.http_status:
            return outcome, f"http_{error.http_status}"
    return outcome, outcome


@dataclass(frozen=True, slots=True)
class GatewayState:
    """This process's gateway connections, as the Discord client sees them."""

    ready: bool  # the client is ready (READY came) and not closed
    # Each shard this process runs → its heartbeat latency in seconds (inf before the first
    # acknowledgement), or None while its connection is down.
    shards: Mapping[int, float | None] = field(default_factory=dict)

    @property
    def problem(self) -> str | None:
        """Why the gateway is not connected, or None when it is."""
        if not self.ready:
            return "not ready"
        if not self.shards:
            return "no connection"
        down = sorted(shard for shard, latency in self.shards.items() if latency is None)
        if down:
            return f"shard {', '.join(map(str, down))} disconnected"
        return None


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the numbers read at each scrape, and the health check, come from."""

    store: Store
    runner: JobRunner
    gateway: Callable[[], GatewayState]


class _Snapshot(Collector):
    """The numbers read at the last scrape, exposed as they were read (a collector: what a
    failed read could not give is left out rather than shown stale)."""

    def __init__(self) -> None:
        self.counts: Mapping[tuple[JobState, str], int] | None = None
        self.active = 0
        self.delivering = 0
        self.paused = False
        self.gateway = GatewayState(ready=False)

    def collect(self) -> Iterator[Metric]:
        database = GaugeMetricFamily(
            "pixbot_database_up", "1 when the database answered the last scrape's read, else 0"
        )
        database.add_metric([], 0.0 if self.counts is None else 1.0)
        yield database
        if self.counts is not None:
            jobs = GaugeMetricFamily(
                "pixbot_jobs",
                "Unfinished jobs in the database (all processes) by state and kind",
                labels=["state", "kind"],
            )
            # Every state and kind, none left out for having no job: a series that comes
            # and goes breaks rate() and alerts.
            kinds = [kind.value for kind in JobKind]
            kinds += sorted({kind for _, kind in self.counts} - set(kinds))
            for state in UNFINISHED_STATES:
                for kind in kinds:
                    jobs.add_metric([state.value, kind], self.counts.get((state, kind), 0))
            yield jobs
            queued = sum(n for (state, _), n in self.counts.items() if state is JobState.QUEUED)
            yield GaugeMetricFamily(
                "pixbot_queue_depth", "Jobs waiting in the queue (all processes)", value=queued
            )
        yield GaugeMetricFamily(
            "pixbot_runner_active_jobs",
            "Jobs this process is uploading, submitting or waiting on at PixVerse",
            value=self.active,
        )
        yield GaugeMetricFamily(
            "pixbot_deliveries_pending",
            "Finished jobs this process is still showing on Discord",
            value=self.delivering,
        )
        yield GaugeMetricFamily(
            "pixbot_queue_paused",
            "1 while the queue waits for credits on the PixVerse account (500090), else 0",
            value=1.0 if self.paused else 0.0,
        )
        up = GaugeMetricFamily(
            "pixbot_gateway_up",
            "1 when this shard's gateway connection is up, else 0",
            labels=["shard"],
        )
        latency = GaugeMetricFamily(
            "pixbot_gateway_latency_seconds",
            "Heartbeat latency of this shard's gateway connection",
            labels=["shard"],
        )
        for shard, seconds in sorted(self.gateway.shards.items()):
            connected = self.gateway.ready and seconds is not None
            up.add_metric([str(shard)], 1.0 if connected else 0.0)
            if seconds is not None:
                latency.add_metric([str(shard)], seconds)
        yield up
        yield latency


class Metrics:
    """Every metric of one bot, on its own registry; the observer of its jobs and clients."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._snapshot = _Snapshot()
        registry.register(self._snapshot)
        ProcessCollector(registry=registry)

        self.jobs_accepted = Counter(
            "pixbot_jobs_accepted", "Jobs accepted by this process", ["kind"], registry=registry
        )
        self.jobs_finished = Counter(
            "pixbot_jobs_finished",
            "Jobs that ended in this process, by final state and kind",
            ["state", "kind"],
            registry=registry,
        )
        for kind in JobKind:
            self.jobs_accepted.labels(kind.value)
            for state in ENDED_STATES:
                self.jobs_finished.labels(state.value, kind.value)
        self.credits_reserved = Counter(
            "pixbot_credits_reserved", "Credits reserved by accepted jobs", registry=registry
        )
        self.credits_committed = Counter(
            "pixbot_credits_committed",
            "Credits committed by finished jobs (what PixVerse charged, when it said)",
            registry=registry,
        )
        self.credits_released = Counter(
            "pixbot_credits_released",
            "Credits released by failed and cancelled jobs",
            registry=registry,
        )
        self.credits_refunded = Counter(
            "pixbot_credits_refunded",
            "Committed credits given back when a moderator removed a result",
            registry=registry,
        )
        self.delivery_delay = Histogram(
            "pixbot_delivery_delay_seconds",
            "From a job's end (PixVerse's result in, or its failure) to its final status "
            "shown on Discord",
            ["state"],
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.deliveries_abandoned = Counter(
            "pixbot_deliveries_abandoned",
            "Final statuses that never reached Discord (gave up, or no route could)",
            ["state"],
            registry=registry,
        )
        self.pixverse_requests = Counter(
            "pixbot_pixverse_requests",
            "Requests sent to PixVerse (each retry counts), by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.pixverse_errors = Counter(
            "pixbot_pixverse_errors",
            "Failed PixVerse requests by endpoint and error code (ErrCode, http_<status>, "
            "timeout, connection)",
            ["endpoint", "code"],
            registry=registry,
        )
        self.pixverse_seconds = Histogram(
            "pixbot_pixverse_request_seconds",
            "Time of one PixVerse request, by endpoint",
            ["endpoint"],
            buckets=PIXVERSE_BUCKETS,
            registry=registry,
        )
        self.discord_requests = Counter(
            "pixbot_discord_requests",
            "HTTP requests to Discord by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.discord_ratelimited = Counter(
            "pixbot_discord_ratelimited",
            "Discord's 429 answers by method, route template and rate-limit scope",
            ["method", "route", "scope"],
            registry=registry,
        )

    # -- read at each scrape -----------------------------------------------------------------

    async def refresh(self, sources: Sources, *, within: float) -> None:
        """Read what is exposed as it is now: called before every exposition. The database
        gets ``within`` seconds to answer."""
        snapshot = self._snapshot
        runner = sources.runner
        snapshot.active = runner.active
        snapshot.delivering = runner.delivering
        snapshot.paused = runner.paused_since is not None
        snapshot.gateway = sources.gateway()
        try:
            async with asyncio.timeout(within):
                snapshot.counts = await sources.store.jobs.unfinished_counts()
        except Exception as exc:
            # /healthz says why; a scrape shows pixbot_database_up 0 and no stale numbers.
            log.debug("Metrics: the database did not answer (%s)", type(exc).__name__)
            snapshot.counts = None

    # -- PixVerse (PixVerseClient's observer) -----------------------------------------------

    def pixverse_request(self, endpoint: str, seconds: float, error: BaseException | None) -> None:
        outcome, code = pixverse_outcome(error)
        self.pixverse_requests.labels(endpoint, outcome).inc()
        self.pixverse_seconds.labels(endpoint).observe(seconds)
        if code is not None:
            self.pixverse_errors.labels(endpoint, code).inc()

    # -- Discord (discord.py's http_trace) ---------------------------------------------------

    def discord_trace(self) -> aiohttp.TraceConfig:
        """The ``http_trace`` to give discord.py's Client: counts every request its session
        sends (REST, interaction callbacks, webhooks, the CDN, the gateway's handshake)."""
        trace = aiohttp.TraceConfig()

        async def ended(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            response = params.response
            self.discord_answer(
                params.method,
                _route(params.url, params.headers),
                response.status,
                response.headers.get("X-RateLimit-Scope"),
            )

        async def failed(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestExceptionParams,
        ) -> None:
            cancelled = isinstance(params.exception, asyncio.CancelledError)
            status = "cancelled" if cancelled else "error"
            self.discord_requests.labels(
                params.method.upper(), _route(params.url, params.headers), status
            ).inc()

        trace.on_request_end.append(ended)
        trace.on_request_exception.append(failed)
        return trace

    def discord_answer(self, method: str, route: str, status: int, scope: str | None) -> None:
        method = method.upper()
        self.discord_requests.labels(method, route, str(status)).inc()
        if status == 429:
            self.discord_ratelimited.labels(method, route, rate_limit_scope(scope)).inc()

    # -- jobs (bot.jobs.observe.JobObserver) -------------------------------------------------

    # A counter refuses a negative step (ValueError): max() keeps an odd number from
    # raising into the job's own path.

    def accepted(self, job: Job) -> None:
        self.jobs_accepted.labels(_kind(job)).inc()
        self.credits_reserved.inc(max(0, job.cost))

    def finished(self, job: Job, state: JobState, credits: int) -> None:
        self.jobs_finished.labels(state.value, _kind(job)).inc()
        if state is JobState.DONE:
            self.credits_committed.inc(max(0, credits))
        else:
            self.credits_released.inc(max(0, credits))

    def refunded(self, job: Job, credits: int) -> None:
        self.credits_refunded.inc(max(0, credits))

    def delivered(self, job: Job, seconds: float) -> None:
        self.delivery_delay.labels(job.state.value).observe(seconds)

    def abandoned(self, job: Job) -> None:
        self.deliveries_abandoned.labels(job.state.value).inc()


def _route(url: yarl.URL, headers: Mapping[str, str]) -> str:
    if headers.get("Upgrade", "").lower() == "websocket":
        return GATEWAY
    return route_template(url.path)


def _kind(job: Job) -> str:
    return job.kind if job.kind in _KINDS else "other"


_KINDS = frozenset(kind.value for kind in JobKind)
