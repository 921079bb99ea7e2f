"""PixVerse's fixed vocabulary and input-file limits, as documented in docs/pixverse.md.

What each model accepts and costs is data, not code: the model catalogue
(``bot.pixverse.catalogue``, shipped as ``catalogue.toml``). This module keeps what no model
changes: the quality, motion and style names, the seed range, the input-file limits, and the
shape of one combination. Comments name the sections of docs/pixverse.md they rest on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
SEED_MAX = 2_147_483_647  # int32

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
    """One video as priced and checked: a catalogue model name and its options."""

    model: str
    quality: Quality
    duration: int
    motion: Motion = Motion.NORMAL
    audio: bool = False


class RuleViolation(ValueError):
    """A parameter combination PixVerse refuses; the message says what to change."""


def cost_key(combo: Combination) -> str:
    """The key an operator uses to override a price (``CREDIT_COSTS``), e.g.
    ``v4.5/540p/5/normal``."""
    return f"{combo.model}/{combo.quality.value}/{combo.duration}/{combo.motion.value}"
