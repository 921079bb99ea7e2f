"""PixVerse's parameter rules and credit prices, as documented in docs/pixverse.md.

Pure data and functions: the bot validates against them before charging anyone, and the
simulator enforces the same rules, so every fact lives once. Comments name the sections of
docs/pixverse.md they rest on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Model(StrEnum):
    V3_5 = "v3.5"
    V4 = "v4"
    V4_5 = "v4.5"
    V5 = "v5"


class Quality(StrEnum):
    P360 = "360p"
    P540 = "540p"
    P720 = "720p"
    P1080 = "1080p"


class Motion(StrEnum):
    NORMAL = "normal"
    FAST = "fast"


class Style(StrEnum):
    ANIME = "anime"
    ANIMATION_3D = "3d_animation"
    CLAY = "clay"
    COMIC = "comic"
    CYBERPUNK = "cyberpunk"


# Parameters (docs/pixverse.md, "Input limits")
DURATIONS: tuple[int, ...] = (5, 8)  # v3.5–v5 accept 5 or 8 seconds
PROMPT_MAX = 2048  # prompt / negative_prompt ≤ 2048 (ErrCode 400018 / 400019)
SEED_MAX = 2_147_483_647  # int32
STYLE_MODELS = frozenset({Model.V3_5})  # style only effective on v3.5

# Input files (docs/pixverse.md, "Input limits")
IMAGE_FORMATS = frozenset({"png", "jpeg", "webp"})
IMAGE_MAX_BYTES = 20 * 1024 * 1024  # "< 20 MB"
IMAGE_MAX_SIDE = 4000  # the conservative bound (500030); larger images are scaled down
IMAGE_MAX_PIXELS = 50_000_000  # the bot's own guard: over 50 megapixels is refused outright
VIDEO_FORMATS = frozenset({"mp4", "mov", "webm"})
VIDEO_MAX_BYTES = 50 * 1024 * 1024
VIDEO_MAX_SECONDS = 30
VIDEO_MAX_SIDE = 1920


@dataclass(frozen=True, slots=True)
class Combination:
    model: Model
    quality: Quality
    duration: int
    motion: Motion = Motion.NORMAL


class RuleViolation(ValueError):
    """A parameter combination PixVerse refuses; the message says what to change."""


def check_combination(combo: Combination) -> None:
    """Raise RuleViolation when PixVerse would refuse this model/quality/duration/motion."""
    if combo.duration not in DURATIONS:
        raise RuleViolation(f"Duration must be 5 or 8 seconds, not {combo.duration}.")
    if combo.motion is Motion.FAST:
        if combo.model is Model.V5:
            raise RuleViolation("v5 has no fast motion: choose normal motion or another model.")
        if combo.duration != 5:
            raise RuleViolation("Fast motion supports 5 s only: choose 5 s or normal motion.")
        if combo.quality is Quality.P1080:
            raise RuleViolation(
                "1080p has no fast motion: choose normal motion or a lower quality."
            )
    # 1080p is 5 s only up to v4.5; v5 prices 1080p 8 s, so v5 allows it (docs/pixverse.md,
    # "Input limits" and "Credits").
    if combo.quality is Quality.P1080 and combo.duration != 5 and combo.model is not Model.V5:
        raise RuleViolation("1080p supports 5 s only: choose 5 s or a lower quality (or model v5).")


# Credits per (quality, duration, motion) for v3.5 / v4 / v4.5, and for v5 (no motion):
# docs/pixverse.md, "Credits".
_CLASSIC_PRICES: dict[tuple[Quality, int, Motion], int] = {
    (Quality.P360, 5, Motion.NORMAL): 45,
    (Quality.P360, 8, Motion.NORMAL): 90,
    (Quality.P360, 5, Motion.FAST): 90,
    (Quality.P540, 5, Motion.NORMAL): 45,
    (Quality.P540, 8, Motion.NORMAL): 90,
    (Quality.P540, 5, Motion.FAST): 90,
    (Quality.P720, 5, Motion.NORMAL): 60,
    (Quality.P720, 8, Motion.NORMAL): 120,
    (Quality.P720, 5, Motion.FAST): 120,
    (Quality.P1080, 5, Motion.NORMAL): 120,
}
_V5_PRICES: dict[tuple[Quality, int], int] = {
    (Quality.P360, 5): 45,
    (Quality.P540, 5): 45,
    (Quality.P720, 5): 60,
    (Quality.P1080, 5): 120,
    (Quality.P360, 8): 90,
    (Quality.P540, 8): 90,
    (Quality.P720, 8): 120,
    (Quality.P1080, 8): 240,
}


def cost_key(combo: Combination) -> str:
    """The key an operator uses to override a price, e.g. ``v4.5/540p/5/normal``."""
    return f"{combo.model.value}/{combo.quality.value}/{combo.duration}/{combo.motion.value}"


def credit_cost(combo: Combination, overrides: dict[str, int] | None = None) -> int:
    """Credits PixVerse charges for one generation (docs/pixverse.md, "Credits"); raises
    RuleViolation if impossible."""
    check_combination(combo)
    if overrides and (key := cost_key(combo)) in overrides:
        return overrides[key]
    if combo.model is Model.V5:
        return _V5_PRICES[(combo.quality, combo.duration)]
    return _CLASSIC_PRICES[(combo.quality, combo.duration, combo.motion)]
