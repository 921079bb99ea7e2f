"""How a simulated PixVerse account behaves: timings, failures, credits, limits, effects."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.pixverse.catalogue import Catalogue
from bot.pixverse.rules import Quality

# Effects that refuse HD output answer 500071 at 720p/1080p (the ErrCode table of
# docs/pixverse.md, "Envelope and errors").
NO_HD: frozenset[Quality] = frozenset({Quality.P720, Quality.P1080})

# The example template ids PixVerse's image-to-video docs quote ("kiss kiss", "Muscle Surge", the
# docs' own example), activated by default so an operator can try /video effect at once, and
# one of the simulator's own that refuses HD output (500071 at 720p/1080p).
NO_HD_TEMPLATE_ID = 300000000000071
DEFAULT_TEMPLATES: dict[int, frozenset[Quality]] = {
    315446315336768: frozenset(),
    308621408717184: frozenset(),
    302325299692608: frozenset(),
    NO_HD_TEMPLATE_ID: NO_HD,
}
# Their names in the served template list; a template without one is listed as "Effect <id>".
DEFAULT_TEMPLATE_NAMES: dict[int, str] = {
    315446315336768: "Kiss kiss",
    308621408717184: "Muscle Surge",
    302325299692608: "Effect example",
    NO_HD_TEMPLATE_ID: "Retro Flicker",
}


class SimulatorConfig(BaseModel):
    """Settings of one simulator; changing a field on a running simulator takes effect at once."""

    model_config = ConfigDict(validate_assignment=True)

    # The models this PixVerse offers and their prices: the bot's catalogue, so the simulator
    # refuses and charges exactly what the bot expects. None: the shipped catalogue.
    catalogue: Catalogue | None = Field(default=None, repr=False)
    # None (or "") accepts any non-empty API-KEY; the real service has one key per account.
    api_key: str | None = Field(default=None, repr=False)
    gen_time: float = Field(default=10.0, ge=0)  # seconds a job stays at status 5
    # When set, (low, high) seconds: each job's generation time is drawn from the seeded RNG
    # around a centre that grows with quality and duration (see state.draw_gen_time), so
    # jobs finish spread over the range, as at PixVerse (docs/pixverse.md, "Latency and polling");
    # ``gen_time`` is unused.
    gen_time_range: tuple[float, float] | None = None
    failure_rate: float = Field(default=0.0, ge=0, le=1)  # share of jobs that end in status 8
    max_concurrent: int = Field(default=5, ge=1)  # jobs at status 5 per key (500044 above it)
    balance: int = Field(default=100_000, ge=0)  # starting `credit_package` of each account
    monthly_credits: int = Field(default=0, ge=0)  # starting `credit_monthly`; spent first
    seed: int | None = None  # seeds outcomes, seeds and file names for reproducible runs
    # Template id -> the qualities that template refuses (500071); any other id gives 500070.
    activated_templates: dict[int, frozenset[Quality]] = Field(
        default_factory=lambda: dict(DEFAULT_TEMPLATES)
    )
    # What the account is charged instead of the catalogue's price, keyed like the bot's
    # CREDIT_COSTS ("v4.5/540p/5/normal"): PixVerse's real prices may differ from the
    # catalogue, and the job's result reports what was charged (`credits`).
    price_overrides: dict[str, int] = Field(default_factory=dict)
    # Names of the activated templates in the template list (GET video/effects/templates/list).
    template_names: dict[int, str] = Field(default_factory=lambda: dict(DEFAULT_TEMPLATE_NAMES))
    # Pad every served video to this many bytes (a trailing mp4 `free` box keeps it playable).
    video_size_bytes: int | None = Field(default=None, ge=0)
    # Scheme://host[:port] put in returned URLs; default: the host the client connected to.
    public_base_url: str | None = None
    # Result polls reusing a trace id get the first answer, frozen (docs/pixverse.md,
    # "Transport and trace ids").
    stale_get: bool = False
    # A job still generating after 10 min no longer holds a concurrency slot
    # (docs/pixverse.md, "Result and status codes").
    slot_release_after: float = Field(default=600.0, gt=0)
    # POST each job's terminal status (1, 7, 8) to this URL, signed with the secret
    # (docs/pixverse.md, "Webhooks").
    webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, repr=False)
    webhook_loss_rate: float = Field(default=0.0, ge=0, le=1)  # share never delivered
    webhook_late_rate: float = Field(default=0.0, ge=0, le=1)  # share sent late by …
    webhook_late_delay: float = Field(default=30.0, ge=0)  # … this many seconds

    @field_validator("gen_time_range")
    @classmethod
    def _check_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return None
        low, high = value
        if low < 0 or high < low:
            raise ValueError("must be low:high seconds with 0 <= low <= high")
        return (float(low), float(high))

    @field_validator("webhook_url", "webhook_secret")
    @classmethod
    def _empty_means_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("api_key")
    @classmethod
    def _empty_key_means_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None
