"""The bot's settings: environment variables (and `.env`), validated once at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from bot.pixverse.catalogue import Catalogue, CatalogueError, load_catalogue
from bot.pixverse.rules import Combination, Quality, RuleViolation, cost_key

_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class Settings(BaseSettings):
    """Every variable of the README's settings table; names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # .env.example ships `DEV_GUILD_ID=`, `PIXVERSE_API_KEY=`…: an empty value means unset.
        env_ignore_empty=True,
        hide_input_in_errors=True,
    )

    discord_token: SecretStr = Field(min_length=1)
    pixverse_api_key: SecretStr | None = None
    pixverse_base_url: str = "https://app-api.pixverse.ai"
    database_path: Path = Path("data/bot.sqlite3")
    # PostgreSQL instead of the SQLite file: what several processes share (bot/store/pg.py).
    database_url: SecretStr | None = None
    # With DATABASE_URL: how long a process's claim on its jobs holds without renewal, i.e.
    # how soon another process takes over the jobs of one that died (renewed every third).
    job_lease_seconds: float = Field(default=30.0, ge=3, le=3600)
    dev_guild_id: int | None = Field(default=None, gt=0)
    # The model catalogue (bot/pixverse/catalogue.py): a TOML file replacing the shipped one.
    pixverse_catalogue: Path | None = None
    # A model of the catalogue; unset: the catalogue's default_model (v4.5 as shipped).
    default_model: str | None = None
    default_quality: Quality = Quality.P540
    default_duration: int = Field(default=5, ge=1)
    daily_credits: int = Field(default=150, ge=0)
    # The account's concurrency: whatever the PixVerse plan allows.
    max_active_jobs: int = Field(default=5, ge=1, le=100_000)
    pixverse_requests_per_second: float = Field(default=20.0, gt=0, le=10_000)
    max_jobs_per_user: int = Field(default=2, ge=1, le=50)
    pixverse_webhook_secret: SecretStr | None = None
    webhook_port: int | None = Field(default=None, ge=1, le=65535)
    # PixVerse must reach the webhook port from outside, hence all interfaces by default.
    webhook_host: str = "0.0.0.0"  # noqa: S104
    pixverse_effects: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    # Operator overrides of the catalogue's prices, keyed "model/quality/duration/motion".
    credit_costs: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    log_level: str = "INFO"
    # Protecting the operator's PixVerse account and wallet (issue 9): the bot's own daily
    # spend across all servers (0 = no budget), moderation refusals a member may collect in a
    # UTC day before being blocked (0 = off), and the wait between a member's accepted jobs.
    budget_daily_credits: int = Field(default=0, ge=0, le=1_000_000_000)
    moderation_strikes: int = Field(default=3, ge=0, le=1000)
    command_cooldown_seconds: float = Field(default=3.0, ge=0, le=86_400)
    # Gateway sharding (issue 11): unset runs one unsharded connection; SHARD_IDS picks this
    # process's shards out of SHARD_COUNT, so several processes can split them.
    shard_count: int | None = Field(default=None, ge=1, le=100_000)
    shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = None
    # Prometheus metrics at /metrics and a health check at /healthz (bot/metrics); unset: no
    # server. Loopback by default: the numbers are the operator's, not the internet's.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    # Not environment variables: set from the command line by `python -m bot`.
    simulate: bool = Field(default=False, exclude=True)

    _catalogue: Catalogue = PrivateAttr()

    @field_validator("pixverse_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        upper = value.strip().upper()
        if upper not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return upper

    @field_validator("metrics_port")
    @classmethod
    def _check_port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError(f"must be a port number from 1 to 65535, not {value}")
        return value

    @field_validator("metrics_host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be an address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
        return value.strip()

    @field_validator("pixverse_effects", "credit_costs", mode="before")
    @classmethod
    def _parse_json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON object ({exc.msg})") from None
            if not isinstance(value, dict):
                raise ValueError('must be a JSON object like {"name": 123}')
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _parse_shard_ids(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        ids: list[int] = []
        for part in value.split(","):
            text = part.strip()
            if not text.isdigit():
                what = f"{text!r} is not a shard number" if text else "an entry is empty"
                raise ValueError(f"{what}: list shard numbers separated by commas, e.g. 0,1")
            ids.append(int(text))
        return tuple(ids)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = value.get_secret_value().strip()
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must be a PostgreSQL URL like postgresql://user:password@host:5432/db"
                " (leave it unset to keep the SQLite file of DATABASE_PATH)"
            )
        return SecretStr(url)

    @property
    def database(self) -> str | Path:
        """Where the store lives: the PostgreSQL URL if set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.database_path

    @field_validator("pixverse_effects", "credit_costs")
    @classmethod
    def _no_negative_numbers(cls, value: dict[str, int]) -> dict[str, int]:
        for key, number in value.items():
            if number < 0:
                raise ValueError(f"value for {key!r} must not be negative")
        return value

    @model_validator(mode="after")
    def _check_webhook_pair(self) -> Settings:
        if (self.pixverse_webhook_secret is None) != (self.webhook_port is None):
            missing = "WEBHOOK_PORT" if self.webhook_port is None else "PIXVERSE_WEBHOOK_SECRET"
            given = "PIXVERSE_WEBHOOK_SECRET" if missing == "WEBHOOK_PORT" else "WEBHOOK_PORT"
            raise ValueError(f"{missing} is required when {given} is set")
        return self

    @model_validator(mode="after")
    def _check_shards(self) -> Settings:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError(
                "SHARD_COUNT is required when SHARD_IDS is set: set it to the total number of "
                "shards all processes run"
            )
        if not self.shard_ids:
            raise ValueError("SHARD_IDS is invalid: list at least one shard, e.g. 0,1")
        for shard_id in self.shard_ids:
            if not 0 <= shard_id < self.shard_count:
                raise ValueError(
                    f"SHARD_IDS is invalid: there is no shard {shard_id} with "
                    f"SHARD_COUNT={self.shard_count}: use numbers from 0 to {self.shard_count - 1}"
                )
        repeated = sorted({s for s in self.shard_ids if self.shard_ids.count(s) > 1})
        if repeated:
            listed = ", ".join(str(s) for s in repeated)
            what = f"shards {listed} are" if len(repeated) > 1 else f"shard {listed} is"
            raise ValueError(f"SHARD_IDS is invalid: {what} listed more than once")
        return self

    @model_validator(mode="after")
    def _check_ports_differ(self) -> Settings:
        if self.metrics_port is not None and self.metrics_port == self.webhook_port:
            raise ValueError(
                f"METRICS_PORT and WEBHOOK_PORT are both {self.metrics_port}: give each its own"
            )
        return self

    @model_validator(mode="after")
    def _load_catalogue(self) -> Settings:
        """Read the catalogue, then check the defaults and price overrides against it: a
        problem stops the start with one line naming the file and the entry."""
        try:
            catalogue = load_catalogue(self.pixverse_catalogue)
        except CatalogueError as exc:
            raise ValueError(f"PIXVERSE_CATALOGUE is invalid: {exc}") from None
        self._catalogue = catalogue
        if self.default_model is None:
            self.default_model = catalogue.default
        spec = catalogue.models.get(self.default_model)
        if spec is None:
            raise ValueError(
                f"DEFAULT_MODEL is invalid: {self.default_model!r} is not in {catalogue.source}: "
                f"choose one of {', '.join(catalogue.names)}"
            )
        default = Combination(self.default_model, self.default_quality, self.default_duration)
        try:
            catalogue.check(default)
        except RuleViolation as exc:
            if self.default_duration not in spec.durations.values:
                named = "DEFAULT_DURATION is invalid"
            elif self.default_quality not in spec.qualities:
                named = "DEFAULT_QUALITY is invalid"
            else:
                named = "DEFAULT_MODEL, DEFAULT_QUALITY and DEFAULT_DURATION do not go together"
            raise ValueError(
                f"{named}: {catalogue.source} refuses {self.default_model} at "
                f"{self.default_quality.value} for {self.default_duration} s: {exc}"
            ) from None
        accepted = {cost_key(combo) for combo in catalogue.combinations()}
        example = cost_key(next(catalogue.combinations()))
        for key in self.credit_costs:
            if key not in accepted:
                raise ValueError(
                    f"CREDIT_COSTS is invalid: {key!r} is no combination {catalogue.source} "
                    f"accepts (keys are model/quality/duration/motion, e.g. {example})"
                )
        return self

    @property
    def catalogue(self) -> Catalogue:
        """The model catalogue this bot offers, checked with the settings."""
        return self._catalogue

    @property
    def default_model_name(self) -> str:
        """DEFAULT_MODEL, or the catalogue's default when it is unset."""
        assert self.default_model is not None  # filled in by _load_catalogue
        return self.default_model

    @property
    def shards(self) -> tuple[int, ...] | None:
        """The shards this process runs, in order; None when the gateway is not sharded."""
        if self.shard_count is None:
            return None
        return tuple(sorted(self.shard_ids or range(self.shard_count)))

    @property
    def pixverse_key(self) -> str:
        """The API key to send; empty only in simulate mode, where the simulator takes any."""
        return self.pixverse_api_key.get_secret_value() if self.pixverse_api_key else ""


class SettingsProblem(Exception):
    """A setting is missing or malformed; the message names the variable."""


def load_settings(*, simulate: bool = False, env_file: str | Path | None = ".env") -> Settings:
    """Read and validate settings; raise SettingsProblem with one line naming the variable."""
    try:
        settings = Settings(_env_file=env_file, simulate=simulate)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsProblem(_describe(exc)) from None
    except SettingsError as exc:
        raise SettingsProblem(f"invalid setting: {exc}") from None
    if not simulate and settings.pixverse_api_key is None:
        raise SettingsProblem(
            "PIXVERSE_API_KEY is required (or start with --simulate to use the simulator)"
        )
    return settings


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = error.get("loc") or ()
    field = str(location[0]) if location else ""
    name = field.upper() if field else "settings"
    if error.get("type") == "missing":
        return f"{name} is required but not set"
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if not field:
        # A check across variables (the webhook pair) names them in its own message.
        return message
    return f"{name} is invalid: {message}"
