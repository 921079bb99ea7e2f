"""The model catalogue: what each PixVerse model accepts and what it costs, as data.

Shipped as ``catalogue.toml`` beside this module; ``PIXVERSE_CATALOGUE`` names a file that
replaces it whole. The file is read with ``tomllib`` and validated into the models below once
at start; a file that cannot be used raises ``CatalogueError``, whose message is one line
naming the file and the entry. The bot (options, prices, command choices) and the simulator
(validation, charges) ask the same ``Catalogue``, so nothing a member may choose is refused
by the simulator after the bot accepted it.

``python -m bot.pixverse.catalogue [FILE]`` checks a file and prints its price table (the
README's table is this output for the shipped file).
"""

from __future__ import annotations

import functools
import math
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.pixverse.rules import Combination, Motion, Quality, RuleViolation, Style

SHIPPED = "catalogue.toml"
SHIPPED_NAME = "the built-in catalogue (bot/pixverse/catalogue.toml)"
# negative_prompt ≤ 2048 characters (ErrCode 400019; docs/pixverse.md, "Input limits").
DEFAULT_NEGATIVE_PROMPT_MAX = 2048
MAX_MODELS = 25  # a Discord option offers at most 25 choices
MAX_DURATION = 600  # seconds; far above any PixVerse model, and keeps a range small
_RATIO = re.compile(r"[1-9][0-9]*:[1-9][0-9]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message is one line naming the file and entry."""


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative ({value})")
    return value


class Price(BaseModel):
    """One quality's price: credits per second, or a table of duration -> credits."""

    model_config = ConfigDict(frozen=True)

    per_second: int | None = None
    table: dict[int, int] = Field(default_factory=dict)

    @classmethod
    def read(cls, value: Any, quality: str) -> Price:
        if isinstance(value, dict):
            table: dict[int, int] = {}
            for key, credits in value.items():
                try:
                    seconds = int(str(key))
                except ValueError:
                    raise ValueError(
                        f'"{quality}" has {key!r} where a duration in seconds belongs'
                    ) from None
                if seconds < 1:
                    raise ValueError(f'"{quality}" prices {seconds} s: durations start at 1 s')
                table[seconds] = _whole(credits, f'the price of "{quality}" {seconds} s')
            if not table:
                raise ValueError(f'"{quality}" has an empty table: price at least one duration')
            return cls(table=table)
        return cls(per_second=_whole(value, f'the price of "{quality}" per second'))

    def credits(self, duration: int) -> int | None:
        """The price of ``duration`` seconds, or None when this price does not cover it."""
        if self.per_second is not None:
            return self.per_second * duration
        return self.table.get(duration)

    def covers(self, durations: Iterable[int]) -> tuple[int, ...]:
        return tuple(d for d in durations if self.credits(d) is not None)

    def describe(self) -> str:
        if self.per_second is not None:
            return f"{self.per_second}/s"
        return " · ".join(f"{seconds} s: {credits}" for seconds, credits in self.table.items())


PriceTable = dict[Quality, Price]


def _read_prices(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(
            'must be a table of quality -> price, e.g. { "540p" = 7 } or { "540p" = { "5" = 45 } }'
        )
    return {quality: Price.read(price, str(quality)) for quality, price in value.items()}


class SoundEffect(BaseModel):
    """PixVerse's sound effect: ``credits`` per started ``per_seconds`` of video."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    credits: StrictInt = Field(ge=0)
    per_seconds: StrictInt = Field(ge=1)

    def price(self, duration: int) -> int:
        return self.credits * math.ceil(duration / self.per_seconds)


class Refused(BaseModel):
    """A combination a model refuses although its price tables cover it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quality: Quality | None = None
    duration: StrictInt | None = None
    motion: Motion | None = None
    audio: StrictBool | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _names_something(self) -> Refused:
        if self.quality is None and self.duration is None and self.motion is None:
            if self.audio is None:
                raise ValueError("name at least one of quality, duration, motion or audio")
        return self

    def matches(self, combo: Combination) -> bool:
        return (
            (self.quality is None or self.quality is combo.quality)
            and (self.duration is None or self.duration == combo.duration)
            and (self.motion is None or self.motion is combo.motion)
            and (self.audio is None or self.audio == combo.audio)
        )


class Durations(BaseModel):
    model_config = ConfigDict(frozen=True)

    values: tuple[int, ...]
    is_range: bool = False

    def describe(self) -> str:
        if self.is_range:
            return f"{self.values[0]} to {self.values[-1]} s"
        return f"{_or_list(map(str, self.values))} s"


def _read_durations(value: Any) -> Any:
    if isinstance(value, Durations):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"min", "max"}
        if unknown or "min" not in value or "max" not in value:
            raise ValueError("a range is { min = 1, max = 15 }: exactly the keys min and max")
        low, high = _whole(value["min"], "min"), _whole(value["max"], "max")
        if low < 1:
            raise ValueError("min must be at least 1 second")
        if low > high:
            raise ValueError(f"min ({low}) is greater than max ({high})")
        if high > MAX_DURATION:
            raise ValueError(f"max must be at most {MAX_DURATION} seconds")
        return Durations(values=tuple(range(low, high + 1)), is_range=True)
    if isinstance(value, list):
        seconds = [_whole(item, "a duration") for item in value]
        if not seconds:
            raise ValueError("list at least one duration")
        if len(set(seconds)) != len(seconds):
            raise ValueError("a duration is listed twice")
        if min(seconds) < 1 or max(seconds) > MAX_DURATION:
            raise ValueError(f"durations are 1 to {MAX_DURATION} seconds")
        return Durations(values=tuple(sorted(seconds)))
    raise ValueError("must be a list of seconds, [5, 8], or a range, { min = 1, max = 15 }")


def _unique(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values:
        raise ValueError("list at least one")
    if len(set(values)) != len(values):
        raise ValueError("an entry is listed twice")
    return values


class ModelSpec(BaseModel):
    """One model's entry: what it accepts and what it costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    qualities: tuple[Quality, ...]
    durations: Durations
    motion_modes: tuple[Motion, ...]
    aspect_ratios: tuple[str, ...]
    native_audio: StrictBool
    prompt_max: StrictInt = Field(ge=1)
    price: PriceTable
    fast_price: PriceTable | None = None
    audio_price: PriceTable | None = None
    multi_shot: StrictBool = False
    negative_prompt_max: StrictInt = Field(default=DEFAULT_NEGATIVE_PROMPT_MAX, ge=0)
    styles: tuple[Style, ...] = ()
    camera_movement: StrictBool = False
    refused: tuple[Refused, ...] = ()

    @field_validator("durations", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _read_durations(value)

    @field_validator("price", "fast_price", "audio_price", mode="before")
    @classmethod
    def _prices(cls, value: Any) -> Any:
        return value if value is None else _read_prices(value)

    @field_validator("qualities", "motion_modes", "aspect_ratios")
    @classmethod
    def _listed_once(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        return _unique(value)

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ratio in value:
            if not _RATIO.fullmatch(ratio):
                raise ValueError(f"{ratio!r} is not an aspect ratio like 16:9")
        return value

    @model_validator(mode="after")
    def _prices_match_rules(self) -> ModelSpec:
        durations = self.durations.values
        tables = {"price": self.price, "fast_price": self.fast_price or {}}
        tables["audio_price"] = self.audio_price or {}
        for key, table in tables.items():
            for quality, price in table.items():
                if quality not in self.qualities:
                    raise ValueError(
                        f'{key} prices "{quality}", which qualities does not list: '
                        "add it to qualities or remove the price"
                    )
                outside = sorted(set(price.table) - set(durations))
                if outside:
                    raise ValueError(
                        f'{key} "{quality}" prices {outside[0]} s, which durations does not '
                        f"allow ({self.durations.describe()})"
                    )
        for quality in self.qualities:
            if quality not in self.price:
                raise ValueError(
                    f'price has no "{quality}", which qualities lists: price it or remove it'
                )
        fast = Motion.FAST in self.motion_modes
        if fast and not self.fast_price:
            raise ValueError('motion_modes has "fast" but there is no fast_price: add one')
        if self.fast_price and not fast:
            raise ValueError('fast_price is given but motion_modes has no "fast"')
        return self

    # --- what a member may choose -------------------------------------------------------

    def video_price(self, combo: Combination) -> Price | None:
        table = self.fast_price if combo.motion is Motion.FAST else self.price
        return (table or {}).get(combo.quality)


class Catalogue(BaseModel):
    """Every model the bot offers, in the file's order, and the sound effect's price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sound_effect: SoundEffect
    models: dict[str, ModelSpec] = Field(min_length=1, max_length=MAX_MODELS)
    # What DEFAULT_MODEL means when it is unset; the first model when this is absent.
    default_model: str | None = None
    _source: str = PrivateAttr(default="a catalogue")

    @model_validator(mode="after")
    def _default_is_a_model(self) -> Catalogue:
        if self.default_model is not None and self.default_model not in self.models:
            raise ValueError(
                f"default_model {self.default_model!r} is not one of the models "
                f"({', '.join(self.models)})"
            )
        return self

    @property
    def default(self) -> str:
        """The model used when neither the member nor DEFAULT_MODEL names one."""
        return self.default_model or next(iter(self.models))

    @model_validator(mode="before")
    @classmethod
    def _name_models(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            named = {}
            for name, entry in data["models"].items():
                if not 1 <= len(name) <= 100 or name != name.strip():
                    raise ValueError(f"models: {name!r} is not a usable model name (1–100 chars)")
                named[name] = {**entry, "name": name} if isinstance(entry, dict) else entry
            data = {**data, "models": named}
        return data

    @property
    def source(self) -> str:
        """Where it was read from, for log lines and messages."""
        return self._source

    # --- the whole catalogue, for the commands' choices ---------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def qualities(self) -> tuple[Quality, ...]:
        offered = {q for spec in self.models.values() for q in spec.qualities}
        return tuple(q for q in Quality if q in offered)

    @property
    def motion_modes(self) -> tuple[Motion, ...]:
        offered = {m for spec in self.models.values() for m in spec.motion_modes}
        return tuple(m for m in Motion if m in offered)

    @property
    def durations(self) -> tuple[int, ...]:
        return tuple(sorted({d for spec in self.models.values() for d in spec.durations.values}))

    @property
    def duration_bounds(self) -> tuple[int, int]:
        durations = self.durations
        return durations[0], durations[-1]

    @property
    def aspect_ratios(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for spec in self.models.values():
            seen.update(dict.fromkeys(spec.aspect_ratios))
        return tuple(seen)

    @property
    def prompt_max(self) -> int:
        return max(spec.prompt_max for spec in self.models.values())

    @property
    def negative_prompt_max(self) -> int:
        return max(spec.negative_prompt_max for spec in self.models.values())

    # --- one model ----------------------------------------------------------------------

    def spec(self, model: str) -> ModelSpec:
        try:
            return self.models[model]
        except KeyError:
            raise RuleViolation(
                f"{model!r} is not a model: choose one of {', '.join(self.names)}."
            ) from None

    def check(self, combo: Combination) -> ModelSpec:
        """Raise RuleViolation, saying what to change, unless the model accepts ``combo``."""
        spec = self.spec(combo.model)
        name, quality, duration, motion = combo.model, combo.quality, combo.duration, combo.motion
        if quality not in spec.qualities:
            raise RuleViolation(
                f"{name} has no {quality}: choose {_or_list(spec.qualities)}"
                f"{self._others(name, 'a model that has it', lambda s: quality in s.qualities)}."
            )
        if duration not in spec.durations.values:
            others = self._others(
                name,
                f"a model that makes {duration} s videos",
                lambda s: duration in s.durations.values,
            )
            raise RuleViolation(
                f"{name} makes videos of {spec.durations.describe()}, not {duration} s: "
                f"choose {spec.durations.describe()}{others}."
            )
        if motion not in spec.motion_modes:
            modes = _or_list(spec.motion_modes)
            others = self._others(
                name, f"a model with {motion} motion", lambda s: motion in s.motion_modes
            )
            raise RuleViolation(f"{name} has no {motion} motion: choose {modes} motion{others}.")
        price = spec.video_price(combo)
        if motion is Motion.FAST and price is None:
            fast_qualities = list(spec.fast_price or {})
            raise RuleViolation(
                f"{quality} has no fast motion on {name}: choose normal motion or "
                f"{_or_list(fast_qualities)}."
            )
        assert price is not None  # every listed quality has a price (checked at load)
        if price.credits(duration) is None:
            priced = _or_list(map(str, price.covers(spec.durations.values)))
            if motion is Motion.FAST:
                raise RuleViolation(
                    f"Fast motion supports {priced} s only on {name} at {quality}: "
                    f"choose {priced} s or normal motion."
                )
            qualities = [
                q
                for q in spec.qualities
                if spec.video_price(Combination(name, q, duration, motion)) is not None
                and spec.price[q].credits(duration) is not None
            ]
            instead = f", another quality ({_or_list(qualities)})" if qualities else ""
            others = self._others(
                name,
                f"a model that makes {quality} {duration} s videos",
                lambda s: (
                    (p := s.price.get(quality)) is not None and p.credits(duration) is not None
                ),
            )
            raise RuleViolation(
                f"{quality} supports {priced} s only on {name}: choose {priced} s{instead}{others}."
            )
        if combo.audio and spec.audio_price is not None:
            audio = spec.audio_price.get(quality)
            if audio is None or audio.credits(duration) is None:
                raise RuleViolation(
                    f"{name} has no audio at {quality} {duration} s: leave audio out or choose "
                    "another quality or duration."
                )
        for refused in spec.refused:
            if refused.matches(combo):
                raise RuleViolation(
                    refused.reason
                    or f"{name} refuses this combination ({quality}, {duration} s, {motion} "
                    "motion): choose another quality, duration or motion."
                )
        return spec

    def price(self, combo: Combination) -> int:
        """Credits PixVerse charges for ``combo``; RuleViolation if the model refuses it."""
        spec = self.check(combo)
        video = spec.video_price(combo)
        assert video is not None
        credits = video.credits(combo.duration)
        assert credits is not None
        return credits + (self.audio_cost(spec, combo) if combo.audio else 0)

    def audio_cost(self, spec: ModelSpec, combo: Combination) -> int:
        """What asking for audio adds: the model's audio_price, else the sound effect."""
        if spec.audio_price is None:
            return self.sound_effect.price(combo.duration)
        audio = spec.audio_price.get(combo.quality)
        credits = audio.credits(combo.duration) if audio is not None else None
        if credits is None:
            raise RuleViolation(f"{spec.name} has no audio at {combo.quality}.")
        return credits

    def check_prompts(self, model: str, prompt: str, negative: str | None = None) -> None:
        """Raise RuleViolation when a prompt is longer than ``model`` takes."""
        spec = self.spec(model)
        if len(prompt) > spec.prompt_max:
            others = self._others(
                model,
                "choose a model that takes longer prompts",
                lambda s: len(prompt) <= s.prompt_max,
            )
            raise RuleViolation(
                f"The prompt is {len(prompt)} characters; the limit is {spec.prompt_max} on "
                f"{model}: shorten it{others}."
            )
        if negative is not None and len(negative) > spec.negative_prompt_max:
            raise RuleViolation(
                f"The negative prompt is {len(negative)} characters; the limit is "
                f"{spec.negative_prompt_max} on {model}: shorten it."
            )

    def check_aspect_ratio(self, model: str, ratio: str) -> None:
        spec = self.spec(model)
        if ratio not in spec.aspect_ratios:
            others = self._others(
                model, f"a model that makes {ratio} videos", lambda s: ratio in s.aspect_ratios
            )
            raise RuleViolation(
                f"{model} has no {ratio} aspect ratio: choose {_or_list(spec.aspect_ratios)}"
                f"{others}."
            )

    def combinations(self, *, audio: bool = False) -> Iterator[Combination]:
        """Every model × quality × duration × motion the catalogue accepts."""
        for name, spec in self.models.items():
            for quality in spec.qualities:
                for duration in spec.durations.values:
                    for motion in spec.motion_modes:
                        combo = Combination(name, quality, duration, motion, audio)
                        try:
                            self.check(combo)
                        except RuleViolation:
                            continue
                        yield combo

    def cheapest(self, price: Callable[[Combination], int] | None = None) -> int:
        """The lowest price of any combination (``price`` may add the operator's overrides)."""
        return min(map(price or self.price, self.combinations()))

    def _others(self, model: str, label: str, fits: Callable[[ModelSpec], bool]) -> str:
        names = [name for name, spec in self.models.items() if name != model and fits(spec)]
        return f", or {label} ({', '.join(names)})" if names else ""


def _or_list(items: Iterable[object]) -> str:
    words = [str(item) for item in items]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} or {words[-1]}"


# --- loading --------------------------------------------------------------------------------


def parse_catalogue(data: dict[str, Any], source: str) -> Catalogue:
    """Validate a parsed TOML document; CatalogueError names ``source`` and the entry."""
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(f"{source}: {_describe(exc)}") from None
    catalogue._source = source
    return catalogue


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue in ``path``, or the shipped one; CatalogueError in one line if unusable."""
    if path is None:
        return shipped_catalogue()
    source = f"catalogue {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CatalogueError(f"{source}: is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{source}: is not valid TOML: {exc}") from None
    return parse_catalogue(data, source)


@functools.cache
def shipped_catalogue() -> Catalogue:
    """The catalogue inside the package (read once per process)."""
    text = resources.files("bot.pixverse").joinpath(SHIPPED).read_text(encoding="utf-8")
    return parse_catalogue(tomllib.loads(text), SHIPPED_NAME)


def _entry(location: Iterable[int | str]) -> str:
    parts = []
    for part in location:
        text = str(part)
        if text in {"[key]", "function-after[_names_something()]"}:
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        parts.append(text if _BARE_KEY.fullmatch(text) else f'"{text}"')
    return ".".join(parts).replace(".[", "[") or "the file"


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    location = [
        part
        for part in error.get("loc", ())
        # pydantic names the branch of a union or a validator in the location
        if not (isinstance(part, str) and ("[" in part and "(" in part))
    ]
    kind = error.get("type", "")
    if kind == "missing":
        message = "is required but missing"
    elif kind == "extra_forbidden":
        message = "is not a catalogue key (a typo?)"
    else:
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        if location and location[-1] == "[key]":
            message = f"unknown key: {message}"
    return f"{_entry(location)}: {message}".replace("\n", " ")


# --- the README's price table ---------------------------------------------------------------


def price_table(catalogue: Catalogue) -> str:
    """The catalogue's prices as a Markdown table, one row per model and quality."""
    lines = [
        "| model | quality | durations | normal | fast | audio adds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    effect = catalogue.sound_effect
    for name, spec in catalogue.models.items():
        for quality in spec.qualities:
            normal = spec.price[quality]
            fast = (spec.fast_price or {}).get(quality)
            if spec.audio_price is None:
                audio = f"{effect.credits} per started {effect.per_seconds} s"
            else:
                price = spec.audio_price.get(quality)
                audio = price.describe() if price is not None else "–"
            durations = _or_list(map(str, normal.covers(spec.durations.values)))
            if spec.durations.is_range and normal.per_second is not None:
                durations = spec.durations.describe().removesuffix(" s")
            lines.append(
                f"| {name} | {quality} | {durations} s | {normal.describe()} | "
                f"{fast.describe() if fast is not None else '–'} | {audio} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        catalogue = load_catalogue(args[0] if args else None)
    except CatalogueError as exc:
        print(f"pixbot: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(price_table(catalogue))
    return 0


if __name__ == "__main__":
    sys.exit(main())
