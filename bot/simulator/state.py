"""The simulated PixVerse service: accounts, uploads, jobs and their lazy life cycle.

No job has a task or a timer: a job's status is computed from the monotonic clock each time
it is asked for (5 until ``finish_at``, then its outcome), so thousands of jobs cost nothing.
Refunds and concurrency slots are settled lazily too, whenever the account is touched.
(Only the webhook sender, ``webhooks.py``, sets one loop timer per job, and only when a
webhook URL is configured: it hears of each job through ``SimState.listeners``.)
Everything here is synchronous, so one request's checks and writes never interleave with
another's.
"""

from __future__ import annotations

import hmac
import itertools
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.pixverse.catalogue import Catalogue, shipped_catalogue
from bot.pixverse.rules import SEED_MAX, Quality, cost_key
from bot.simulator.config import SimulatorConfig
from bot.simulator.errors import (
    CONCURRENCY_LIMIT,
    INSUFFICIENT_BALANCE,
    INVALID_IMAGE_ID,
    INVALID_PARAMETER,
    NOT_FOUND,
    TEMPLATE_NO_HD,
    TEMPLATE_NOT_ACTIVATED,
    ApiError,
)
from bot.simulator.faults import GENERATE_ROUTES, FaultBook
from bot.simulator.media import (
    IMAGE_CONTENT_TYPES,
    MEDIA_CONTENT_TYPES,
    inspect_image,
    inspect_media,
    output_size,
    parse_ratio,
)
from bot.simulator.params import (
    GenerateParams,
    Kind,
    SoundEffectParams,
    parse_generate,
    parse_sound_effect,
)

# A prompt containing this marker ends in status 7 (moderation failed, credits refunded),
# so tests and operators can exercise the asynchronous moderation path (status 7 in
# docs/pixverse.md, "Result and status codes").
MODERATION_MARKER = "[[moderate]]"

GENERATING = 5
DONE = 1
DELETED = 6
MODERATED = 7
FAILED = 8
TERMINAL = frozenset({DONE, DELETED, MODERATED, FAILED})
# Credits come back on 7 and 8 (docs/pixverse.md, "Result and status codes", "Credits").
REFUNDED = frozenset({MODERATED, FAILED})

# Ids are ~15-digit integers (live: 425918148159561), well below 2**53 (docs/pixverse.md,
# "Transport and trace ids").
VIDEO_ID_BASE = 400_000_000_000_000
UPLOAD_ID_BASE = 300_000_000_000_000
ACCOUNT_ID_BASE = 123_450_000
GEN_TIME_JITTER = 0.25  # ± share of a combination's centre when ``gen_time_range`` is set
_QUALITIES = tuple(Quality)


def iso_z(moment: datetime) -> str:
    """Timestamps look like ``2026-09-22T15:16:40Z`` (see docs/pixverse.md,
    "Result and status codes")."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class RecordedRequest:
    """One request as a test sees it; the API-KEY header is never kept."""

    route: str
    method: str
    path: str
    headers: dict[str, str]
    trace_id: str | None
    json: Any = None
    form: dict[str, dict[str, Any]] = field(default_factory=dict)
    http_status: int | None = None
    err_code: int | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived (monotonic clock)


@dataclass(slots=True)
class Upload:
    id: int
    kind: str  # "image" | "video" | "audio"
    format: str
    name: str  # served at /media/<name>
    content_type: str
    data: bytes = field(repr=False)
    width: int | None = None
    height: int | None = None
    owner: str = field(default="", repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class Job:
    video_id: int
    params: GenerateParams
    trace_id: str
    credits: int
    seed: int
    file_name: str  # served at /media/<file_name> once done
    width: int
    height: int
    outcome: int  # the status reached at finish_at (1, 7 or 8), drawn at submit
    created_at: float  # monotonic
    finish_at: float  # monotonic
    created_wall: datetime
    owner: str = field(default="", repr=False)
    from_monthly: int = 0
    from_package: int = 0
    forced_status: int | None = None
    forced_wall: datetime | None = None
    forced_at: float | None = None  # monotonic time of the last force_status
    refunded: bool = False
    # Drawn at submit: this job's webhook never arrives / arrives this much late
    # (docs/pixverse.md, "Webhooks").
    webhook_lost: bool = False
    webhook_delay: float = 0.0

    def status(self, now: float) -> int:
        if self.forced_status is not None:
            return self.forced_status
        return GENERATING if now < self.finish_at else self.outcome

    @property
    def terminal_at(self) -> float:
        """Monotonic time the job reaches (or reached) its terminal status: ``finish_at``,
        or the moment a test forced it (a forced status 5 keeps it generating: ``inf``)."""
        if self.forced_status is not None:
            if self.forced_status == GENERATING:
                return float("inf")
            assert self.forced_at is not None
            return min(self.forced_at, self.finish_at)
        return self.finish_at

    def modify_time(self, now: float) -> datetime:
        if self.forced_wall is not None:
            return self.forced_wall
        elapsed = min(now, self.finish_at) - self.created_at
        return self.created_wall + timedelta(seconds=max(elapsed, 0.0))


@dataclass(slots=True)
class WebhookRecord:
    """One webhook POST attempt (docs/pixverse.md, "Webhooks"), as tests and the benchmark
    see it."""

    video_id: int
    status: int  # the job status the body carried (1, 7 or 8)
    attempt: int  # 1 for the first send, 2.. for retries
    at: float  # monotonic time the POST started
    reply_status: int | None = None  # HTTP status of the answer; None: no answer
    ok: bool = False  # HTTP 200 with the body exactly "ok"
    error: str | None = None  # why there was no answer (connection refused, timeout…)
    late: bool = False  # this job's webhook was held back by ``webhook_late_delay``


@dataclass(slots=True)
class Account:
    account_id: int
    credit_monthly: int
    credit_package: int
    # Jobs not yet settled (not terminal, or terminal but not yet refunded).
    open_jobs: set[int] = field(default_factory=set)

    @property
    def total(self) -> int:
        return self.credit_monthly + self.credit_package


class SimState:
    """All the simulator knows. ``clock`` is monotonic seconds; ``wall`` is aware UTC now."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock
        self.wall = wall or (lambda: datetime.now(UTC))
        self.faults = FaultBook()
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[int, Job] = {}
        self.uploads: dict[int, Upload] = {}
        self.accounts: dict[str, Account] = {}
        self._rng = random.Random(self.config.seed)
        # Separate streams from the same seed, so turning on a gen-time range or webhooks
        # leaves the outcomes, seeds and file names of a seeded run unchanged.
        seed = self.config.seed
        self._timing_rng = random.Random(None if seed is None else f"{seed}:gen-time")
        self._webhook_rng = random.Random(None if seed is None else f"{seed}:webhooks")
        self.webhooks: list[WebhookRecord] = []  # every webhook attempt, in send order
        # The most jobs one account had generating at once (what ``max_concurrent`` limits),
        # counted at each submit: a count can only grow when a job starts.
        self.peak_generating = 0
        # Called with a job when it starts or its end moves (finish_now, force_status).
        self.listeners: list[Callable[[Job], None]] = []
        self._video_ids = itertools.count(VIDEO_ID_BASE + 1)
        self._upload_ids = itertools.count(UPLOAD_ID_BASE + 1)
        self._account_ids = itertools.count(ACCOUNT_ID_BASE + 1)
        self._media: dict[str, int] = {}  # served name -> job or upload id
        # Generate answers replayed by (API-KEY, Ai-trace-id), as docs/pixverse.md,
        # "Transport and trace ids", describes. Unbounded on purpose: the real TTL is unknown
        # (an open question) and a simulator run never sees millions of jobs.
        self._replay: dict[tuple[str, str], bytes] = {}
        self._stale: dict[tuple[str, str, int], bytes] = {}

    @property
    def catalogue(self) -> Catalogue:
        """The models this PixVerse offers (the config's, read on each use so a running
        simulator can be given another)."""
        return self.config.catalogue or shipped_catalogue()

    def parse(self, kind: Kind, body: Any) -> GenerateParams:
        """A generate body checked as PixVerse would (``params.parse_generate``)."""
        return parse_generate(kind, body, self.catalogue)

    def parse_sound(self, key: str, body: Any) -> GenerateParams:
        """A sound-effect body checked as PixVerse would: the new video takes its source's
        model, quality and duration (an uploaded video: the default model, 5 s), and its
        description as its prompt; 400017 when the source is no finished video of this
        account."""
        sound: SoundEffectParams = parse_sound_effect(body)
        catalogue = self.catalogue
        spec = catalogue.spec(catalogue.default)
        model, quality, duration = spec.name, spec.qualities[0], 5
        if sound.source_video_id is not None:
            source = self.jobs.get(sound.source_video_id)
            if source is not None and source.owner == key:
                model = source.params.model
                quality, duration = source.params.quality, source.params.duration
        # The source itself is checked at submit (``_source_ratio``), as an extension's.
        return GenerateParams(
            kind=Kind.SOUND,
            prompt=sound.description,
            model=model,
            duration=duration,
            quality=quality,
            source_video_id=sound.source_video_id,
            video_media_id=sound.video_media_id,
            audio=True,
        )

    # -- accounts ----------------------------------------------------------------------

    def key_accepted(self, key: str | None) -> bool:
        if not key:
            return False
        expected = self.config.api_key
        return expected is None or hmac.compare_digest(key.encode(), expected.encode())

    def account(self, key: str) -> Account:
        account = self.accounts.get(key)
        if account is None:
            account = Account(
                account_id=next(self._account_ids),
                credit_monthly=self.config.monthly_credits,
                credit_package=self.config.balance,
            )
            self.accounts[key] = account
        return account

    def default_key(self) -> str | None:
        """The configured key, else the first key that was used (None before any request)."""
        if self.config.api_key is not None:
            return self.config.api_key
        return next(iter(self.accounts), None)

    def set_credits(self, credits: int, key: str | None = None) -> None:
        """Give an account (the default one, see ``default_key``) exactly ``credits``
        package credits and no monthly ones; before any request, every new account."""
        key = key or self.default_key()
        if key is None:
            self.config.balance = credits
            self.config.monthly_credits = 0
            return
        account = self.account(key)
        account.credit_package = credits
        account.credit_monthly = 0

    def settle(self, account: Account) -> None:
        """Refund jobs that ended in 7/8 and forget jobs that ended (docs/pixverse.md,
        "Credits")."""
        now = self.clock()
        for video_id in list(account.open_jobs):
            job = self.jobs[video_id]
            status = job.status(now)
            if status not in TERMINAL:
                continue
            if status in REFUNDED and not job.refunded:
                account.credit_monthly += job.from_monthly
                account.credit_package += job.from_package
                job.refunded = True
            account.open_jobs.discard(video_id)

    def generating(self, account: Account) -> int:
        """Jobs holding a concurrency slot: at status 5 and younger than the release delay.
        Call ``settle`` first; only unsettled jobs are looked at."""
        now = self.clock()
        release = self.config.slot_release_after
        return sum(
            1
            for video_id in account.open_jobs
            if self.jobs[video_id].status(now) == GENERATING
            and now - self.jobs[video_id].created_at < release
        )

    def balance(self, key: str) -> dict[str, int]:
        account = self.account(key)
        self.settle(account)
        return {
            "account_id": account.account_id,
            "credit_monthly": account.credit_monthly,
            "credit_package": account.credit_package,
        }

    # -- uploads -----------------------------------------------------------------------

    def upload_image(self, key: str, data: bytes) -> Upload:
        info = inspect_image(data)
        name = f"openapi/{self._uuid()}.{'jpg' if info.format == 'jpeg' else info.format}"
        upload = Upload(
            id=next(self._upload_ids),
            kind="image",
            format=info.format,
            name=name,
            content_type=IMAGE_CONTENT_TYPES[info.format],
            data=data,
            width=info.width,
            height=info.height,
            owner=key,
        )
        return self._store_upload(upload)

    def upload_media(self, key: str, data: bytes) -> Upload:
        info = inspect_media(data)
        upload = Upload(
            id=next(self._upload_ids),
            kind=info.media_type,
            format=info.format,
            name=f"openapi/{self._uuid()}.{info.format}",
            content_type=MEDIA_CONTENT_TYPES[info.format],
            data=data,
            owner=key,
        )
        return self._store_upload(upload)

    def _store_upload(self, upload: Upload) -> Upload:
        self.uploads[upload.id] = upload
        self._media[upload.name] = upload.id
        return upload

    # -- jobs --------------------------------------------------------------------------

    def submit(self, key: str, params: GenerateParams, trace_id: str) -> Job:
        """Check what needs the account, charge, and start a job; or raise ApiError."""
        ratio = self._source_ratio(key, params)
        self._check_template(params)
        if params.kind is Kind.SOUND:
            # Sound for a video: the catalogue's sound effect, by the video's duration
            # (docs/pixverse.md, "Credits").
            credits = self.catalogue.sound_effect.price(params.duration)
        else:
            # The combination is already checked; the price is the catalogue's unless the
            # account is set to charge another (``price_overrides``).
            credits = self.config.price_overrides.get(
                cost_key(params.combination), self.catalogue.price(params.combination)
            )
        account = self.account(key)
        self.settle(account)
        if account.total < credits:
            raise ApiError(
                INSUFFICIENT_BALANCE,
                f"insufficient balance: {credits} credits needed, {account.total} left",
            )
        if self.generating(account) >= self.config.max_concurrent:
            raise ApiError(CONCURRENCY_LIMIT)

        # Draw every random number whatever the outcome, so one seed gives one run.
        failed = self._rng.random() < self.config.failure_rate
        seed = params.seed if params.seed is not None else self._rng.randint(0, SEED_MAX)
        file_name = f"{self._uuid()}_seed{seed}.mp4"  # live names are <uuid>_seed<seed>
        if MODERATION_MARKER in params.prompt:
            outcome = MODERATED
        else:
            outcome = FAILED if failed else DONE

        # Which pool is drawn first is unknown; we spend the monthly credits first
        # (docs/pixverse.md, "Credits").
        from_monthly = min(account.credit_monthly, credits)
        account.credit_monthly -= from_monthly
        account.credit_package -= credits - from_monthly

        gen_time = self.draw_gen_time(params)
        webhook_lost = self._webhook_rng.random() < self.config.webhook_loss_rate
        late = self._webhook_rng.random() < self.config.webhook_late_rate

        short_side = int(params.quality.value.removesuffix("p"))
        width, height = output_size(short_side, ratio)
        now = self.clock()
        job = Job(
            video_id=next(self._video_ids),
            params=params,
            trace_id=trace_id,
            credits=credits,
            seed=seed,
            file_name=file_name,
            width=width,
            height=height,
            outcome=outcome,
            created_at=now,
            finish_at=now + gen_time,
            created_wall=self.wall(),
            owner=key,
            from_monthly=from_monthly,
            from_package=credits - from_monthly,
            webhook_lost=webhook_lost,
            webhook_delay=self.config.webhook_late_delay if late else 0.0,
        )
        self.jobs[job.video_id] = job
        self._media[file_name] = job.video_id
        account.open_jobs.add(job.video_id)
        self.peak_generating = max(self.peak_generating, self.generating(account))
        self._changed(job)
        return job

    def draw_gen_time(self, params: GenerateParams) -> float:
        """Seconds this job generates: ``gen_time``, or a draw within ``gen_time_range``.

        With a range, each quality/duration has a centre inside it (360p 5 s at the low
        end, the top quality at the longest duration at the high end, the rest between),
        and a job takes that centre ± 25 %, kept in the range by mirroring at its bounds
        (clamping would pile jobs up on exactly the bounds, e.g. on a multiple of a
        poller's interval)."""
        bounds = self.config.gen_time_range
        if bounds is None:
            return self.config.gen_time
        low, high = bounds
        durations = self.catalogue.spec(params.model).durations.values
        weight = gen_time_weight(params.quality, params.duration, durations)
        centre = low + weight * (high - low)
        drawn = centre * (1 + self._timing_rng.uniform(-GEN_TIME_JITTER, GEN_TIME_JITTER))
        if drawn < low:
            drawn = 2 * low - drawn
        elif drawn > high:
            drawn = 2 * high - drawn
        return min(max(drawn, low), high)

    def _changed(self, job: Job) -> None:
        for listener in list(self.listeners):
            listener(job)

    def _source_ratio(self, key: str, params: GenerateParams) -> float:
        """Check the ids the body refers to, and return the width/height ratio of the output
        (an image-to-video follows its image; an extension follows its source: see
        docs/pixverse.md, "Endpoints used")."""
        if params.kind is Kind.TEXT:
            assert params.aspect_ratio is not None
            return parse_ratio(params.aspect_ratio)
        if params.kind is Kind.IMAGE:
            image = self._image(key, params.img_id)
            assert image.width and image.height
            return image.width / image.height
        if params.kind is Kind.TRANSITION:
            # Both frames must be this account's images; the video follows the first.
            first = self._image(key, params.first_frame_img)
            self._image(key, params.last_frame_img)
            assert first.width and first.height
            return first.width / first.height
        if params.source_video_id is not None:
            source = self.jobs.get(params.source_video_id)
            if source is None or source.owner != key or source.status(self.clock()) != DONE:
                raise ApiError(
                    INVALID_PARAMETER,
                    f"no matching source_video_id: {params.source_video_id} is not a finished "
                    "video of this account",
                )
            return source.width / source.height
        media = self.uploads.get(params.video_media_id or 0)
        if media is None or media.owner != key or media.kind == "image":
            raise ApiError(
                INVALID_PARAMETER,
                f"no matching video_media_id: {params.video_media_id} is not an uploaded media",
            )
        if media.kind != "video":
            raise ApiError(INVALID_PARAMETER, "Invalid media_type: not a video resource")
        return 16 / 9  # the upload's own size is not parsed; 16:9 is the common case

    def _image(self, key: str, img_id: int | None) -> Upload:
        image = self.uploads.get(img_id or 0)
        if image is None or image.kind != "image" or image.owner != key:
            raise ApiError(INVALID_IMAGE_ID, f"invalid image id: {img_id}")
        return image

    def _check_template(self, params: GenerateParams) -> None:
        if params.template_id is None:
            return
        refused = self.config.activated_templates.get(params.template_id)
        if refused is None:
            raise ApiError(TEMPLATE_NOT_ACTIVATED, f"template {params.template_id} not activated")
        if params.quality in refused:
            raise ApiError(TEMPLATE_NO_HD, f"this effect does not support {params.quality.value}")

    def effect_templates(self, kind: int) -> list[dict[str, Any]]:
        """The activated templates as the template list shows them, in id order (all of
        them are video templates: type 1)."""
        if kind != 1:
            return []
        names = self.config.template_names
        return [
            {
                "template_id": template_id,
                "name": names.get(template_id, f"Effect {template_id}"),
                "template_type": 1,
                "qualities": [q.value for q in Quality if q not in refused],
            }
            for template_id, refused in sorted(self.config.activated_templates.items())
        ]

    def job_for(self, key: str, video_id: int) -> Job:
        job = self.jobs.get(video_id)
        # Another account's job is as unknown as a made-up id.
        if job is None or job.owner != key:
            raise ApiError(NOT_FOUND, f"requested data not found: video {video_id}")
        return job

    def result(self, key: str, video_id: int, base_url: str) -> dict[str, Any]:
        """The result object of one job (docs/pixverse.md, "Result and status codes")."""
        job = self.job_for(key, video_id)
        self.settle(self.account(key))
        now = self.clock()
        status = job.status(now)
        params = job.params
        return {
            "id": job.video_id,
            "status": status,
            # The url is only valid at status 1; before that it is empty (docs/pixverse.md,
            # "Result and status codes").
            "url": f"{base_url}/media/{job.file_name}" if status == DONE else "",
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt or "",
            "style": params.style.value if params.style else "",
            "seed": job.seed,
            # resolution_ratio and size: docs/pixverse.md, "Result and status codes".
            "resolution_ratio": 0,  # meaning unclear; the live sample answers 0
            "outputWidth": job.width,
            "outputHeight": job.height,
            "size": params.duration,  # not a byte count; the live 5 s clip said 5
            "create_time": iso_z(job.created_wall),
            "modify_time": iso_z(job.modify_time(now)),
            "quality": params.quality.value,
            "duration": params.duration,
            "aspect_ratio": params.aspect_ratio or _ratio_text(job.width, job.height),
            # Sound was asked for (native audio, the sound-effect switch or endpoint): the
            # served file then has a sound track (``media.sample_video_with_audio``).
            "has_audio": params.audio,
            "credits": job.credits,
        }

    def force_status(self, video_id: int, status: int) -> None:
        """Pin a job to ``status`` from now on (refunds follow on 7/8 as usual)."""
        job = self.jobs[video_id]
        job.forced_status = status
        job.forced_wall = self.wall()
        job.forced_at = self.clock()
        self.account(job.owner).open_jobs.add(video_id)
        self.settle(self.account(job.owner))
        self._changed(job)

    def finish_now(self, video_id: int) -> None:
        """End a job's generation now; it reaches the outcome drawn at submit."""
        job = self.jobs[video_id]
        job.finish_at = min(job.finish_at, self.clock())
        self.settle(self.account(job.owner))
        self._changed(job)

    # -- served files ------------------------------------------------------------------

    def served(self, name: str) -> Job | Upload | None:
        """What /media/<name> serves: an upload, or a job's video once it is done."""
        item_id = self._media.get(name)
        if item_id is None:
            return None
        if item_id in self.uploads:
            return self.uploads[item_id]
        job = self.jobs[item_id]
        return job if job.status(self.clock()) == DONE else None

    # -- replay caches (docs/pixverse.md, "Transport and trace ids") ------------------

    def replayed(self, key: str, trace_id: str) -> bytes | None:
        return self._replay.get((key, trace_id))

    def remember(self, key: str, trace_id: str, body: bytes) -> None:
        # Only successful answers are kept (whether errors replay is one of the
        # "Open questions" in docs/pixverse.md): a refused request can then be corrected and
        # resent with the same trace id, which is what a client retrying a 500044 after a
        # wait does.
        self._replay[(key, trace_id)] = body

    def stale_result(self, key: str, trace_id: str, video_id: int) -> bytes | None:
        return self._stale.get((key, trace_id, video_id))

    def remember_result(self, key: str, trace_id: str, video_id: int, body: bytes) -> None:
        self._stale.setdefault((key, trace_id, video_id), body)

    # -- introspection -----------------------------------------------------------------

    @property
    def generate_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route in GENERATE_ROUTES]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def gen_time_weight(quality: Quality, duration: int, durations: Sequence[int]) -> float:
    """Where a quality/duration sits in ``gen_time_range``: 0 (360p, the model's shortest
    duration) to 1 (1080p, its longest), half from the quality's rank and half from the
    duration."""
    rank = _QUALITIES.index(quality) / (len(_QUALITIES) - 1)
    shortest, longest = min(durations), max(durations)
    span = (duration - shortest) / (longest - shortest) if longest > shortest else 0.0
    return (rank + min(max(span, 0.0), 1.0)) / 2


def _ratio_text(width: int, height: int) -> str:
    """The aspect ratio (docs/pixverse.md, "Input limits") nearest to width:height, for
    outputs that follow their input."""
    ratios = {"16:9": 16 / 9, "4:3": 4 / 3, "1:1": 1.0, "3:4": 3 / 4, "9:16": 9 / 16}
    actual = width / height
    return min(ratios, key=lambda name: abs(ratios[name] - actual))
