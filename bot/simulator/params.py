"""Parse and check a generate body the way PixVerse does.

Only the checks that need no account state live here; ids, templates, credits and
concurrency are checked by the account. Order: missing fields (400011), types and
enums (400013), lengths (400018/400019), then cross-field rules (400017).
Unknown fields are ignored, as a JSON binder does. The rules are those of docs/pixverse.md,
"Endpoints used" and "Input limits"; what each model accepts (qualities, durations, motion,
aspect ratios, prompt lengths, audio, camera movement) is the model catalogue's, the same
one the bot checks against.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from bot.pixverse.catalogue import Catalogue
from bot.pixverse.rules import SEED_MAX, Combination, Motion, Quality, RuleViolation, Style
from bot.simulator.errors import (
    BAD_BINDING,
    EMPTY_PARAMETER,
    INVALID_PARAMETER,
    NEGATIVE_PROMPT_TOO_LONG,
    PROMPT_TOO_LONG,
    ApiError,
)


class Kind(StrEnum):
    IMAGE = "img"
    TEXT = "text"
    TRANSITION = "transition"
    EXTEND = "extend"
    SOUND = "sound_effect"  # sound for a finished video: parse_sound_effect


# Camera movements: docs/pixverse.md, "Input limits".
# The documented camera movements plus the t2v guide's `auto_camera`.
CAMERA_MOVEMENTS = frozenset(
    {
        "horizontal_left",
        "horizontal_right",
        "vertical_up",
        "vertical_down",
        "zoom_in",
        "zoom_out",
        "crane_up",
        "quickly_zoom_in",
        "quickly_zoom_out",
        "smooth_zoom_in",
        "camera_rotation",
        "robo_arm",
        "super_dolly_out",
        "whip_pan",
        "hitchcock",
        "left_follow",
        "right_follow",
        "pan_left",
        "pan_right",
        "fix_bg",
        "auto_camera",
    }
)
# Ids are JSON integers (docs/pixverse.md, "Transport and trace ids"), taken up to uint64.
ID_MAX = 2**64 - 1
E = TypeVar("E", bound=StrEnum)

# Required fields of each generate call (docs/pixverse.md, "Endpoints used").
_REQUIRED: dict[Kind, tuple[str, ...]] = {
    Kind.TEXT: ("prompt", "model", "duration", "quality", "aspect_ratio"),
    Kind.IMAGE: ("prompt", "model", "duration", "quality", "img_id"),
    Kind.TRANSITION: (
        "prompt",
        "model",
        "duration",
        "quality",
        "first_frame_img",
        "last_frame_img",
    ),
    Kind.EXTEND: ("prompt", "model", "duration", "quality"),  # + one source id
}


@dataclass(frozen=True, slots=True)
class GenerateParams:
    kind: Kind
    prompt: str
    model: str
    duration: int
    quality: Quality
    motion: Motion = Motion.NORMAL
    negative_prompt: str | None = None
    style: Style | None = None
    seed: int | None = None
    template_id: int | None = None
    camera_movement: str | None = None
    aspect_ratio: str | None = None
    img_id: int | None = None
    # A transition's first and last frames (uploaded images).
    first_frame_img: int | None = None
    last_frame_img: int | None = None
    source_video_id: int | None = None
    video_media_id: int | None = None
    # generate_audio_switch (native audio) or sound_effect_switch (the sound effect)
    audio: bool = False
    multi_clip: bool = False

    @property
    def combination(self) -> Combination:
        return Combination(self.model, self.quality, self.duration, self.motion, self.audio)


def parse_generate(kind: Kind, body: Any, catalogue: Catalogue) -> GenerateParams:
    """The checked parameters of one generate body, or ApiError with PixVerse's code."""
    if not isinstance(body, dict):
        raise ApiError(BAD_BINDING, "invalid binding request: body must be a JSON object")
    for name in _REQUIRED[kind]:
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ApiError(EMPTY_PARAMETER, f"{name} is required")

    prompt = _string(body, "prompt")
    assert prompt is not None  # checked as required above
    negative = _string(body, "negative_prompt")
    model = _string(body, "model")
    if model is not None and model not in catalogue.models:
        raise ApiError(BAD_BINDING, f"invalid binding request: model {model!r} is not supported")
    quality = _enum(body, "quality", Quality)
    motion = _enum(body, "motion_mode", Motion) or Motion.NORMAL
    style = _enum(body, "style", Style)
    duration = _integer(body, "duration", 0, ID_MAX)
    seed = _integer(body, "seed", 0, SEED_MAX)
    aspect_ratio = (
        _choice(body, "aspect_ratio", frozenset(catalogue.aspect_ratios))
        if kind is Kind.TEXT
        else None
    )
    camera = _choice(body, "camera_movement", CAMERA_MOVEMENTS)
    template_id = _integer(body, "template_id", 1, ID_MAX)
    img_id = _integer(body, "img_id", 1, ID_MAX) if kind is Kind.IMAGE else None
    frames = kind is Kind.TRANSITION
    first_frame = _integer(body, "first_frame_img", 1, ID_MAX) if frames else None
    last_frame = _integer(body, "last_frame_img", 1, ID_MAX) if frames else None
    source_id = _integer(body, "source_video_id", 1, ID_MAX) if kind is Kind.EXTEND else None
    media_id = _integer(body, "video_media_id", 1, ID_MAX) if kind is Kind.EXTEND else None
    flags = (
        "water_mark",
        "sound_effect_switch",
        "lip_sync_switch",
        "generate_audio_switch",
        "generate_multi_clip_switch",
    )
    for flag in flags:
        if flag in body and body[flag] is not None and not isinstance(body[flag], bool):
            raise ApiError(BAD_BINDING, f"invalid binding request: {flag} must be a boolean")
    assert model is not None and quality is not None and duration is not None
    spec = catalogue.models[model]

    if len(prompt) > spec.prompt_max:
        raise ApiError(PROMPT_TOO_LONG, f"prompt is longer than {spec.prompt_max} characters")
    if negative is not None and len(negative) > spec.negative_prompt_max:
        raise ApiError(
            NEGATIVE_PROMPT_TOO_LONG,
            f"negative_prompt is longer than {spec.negative_prompt_max} characters",
        )
    native_audio = body.get("generate_audio_switch") is True
    multi_clip = body.get("generate_multi_clip_switch") is True

    params = GenerateParams(
        kind=kind,
        prompt=prompt,
        model=model,
        duration=duration,
        quality=quality,
        motion=motion,
        negative_prompt=negative,
        style=style,
        seed=seed,
        template_id=template_id,
        camera_movement=camera,
        aspect_ratio=aspect_ratio,
        img_id=img_id,
        first_frame_img=first_frame,
        last_frame_img=last_frame,
        source_video_id=source_id,
        video_media_id=media_id,
        audio=native_audio or body.get("sound_effect_switch") is True,
        multi_clip=multi_clip,
    )
    try:
        catalogue.check(params.combination)
        if aspect_ratio is not None:
            catalogue.check_aspect_ratio(model, aspect_ratio)
    except RuleViolation as exc:
        raise ApiError(INVALID_PARAMETER, str(exc)) from None
    if native_audio and not spec.native_audio:
        raise ApiError(INVALID_PARAMETER, f"generate_audio_switch is not supported on {model}")
    if multi_clip and not spec.multi_shot:
        raise ApiError(INVALID_PARAMETER, f"generate_multi_clip_switch is not supported on {model}")
    if kind is Kind.EXTEND and (source_id is None) == (media_id is None):
        # The two sources are mutually exclusive and one is needed (docs/pixverse.md,
        # "Endpoints used").
        raise ApiError(
            INVALID_PARAMETER, "exactly one of source_video_id or video_media_id is required"
        )
    if camera is not None:
        # camera_movement XOR template_id (docs/pixverse.md, "Input limits")
        if template_id is not None:
            raise ApiError(INVALID_PARAMETER, "camera_movement cannot be used with template_id")
        if not spec.camera_movement:
            raise ApiError(INVALID_PARAMETER, f"camera_movement is not supported on {model}")
    return params


# The sound description's two names in use (docs/pixverse.md, "Sound"): the spec bundle's and
# a third-party CLI's. Both are accepted; a body giving both must not disagree.
SOUND_DESCRIPTION_FIELDS = ("sound_effect_content", "prompt")
SOUND_DESCRIPTION_MAX = 2048  # undocumented; the older models' prompt limit


@dataclass(frozen=True, slots=True)
class SoundEffectParams:
    """A checked sound-effect body (docs/pixverse.md, "Sound")."""

    source_video_id: int | None
    video_media_id: int | None
    description: str
    original_sound: bool


def parse_sound_effect(body: Any) -> SoundEffectParams:
    """The checked fields of a sound-effect body: exactly one source, an optional
    description under either name, an optional ``original_sound_switch``."""
    if not isinstance(body, dict):
        raise ApiError(BAD_BINDING, "invalid binding request: body must be a JSON object")
    source_id = _integer(body, "source_video_id", 1, ID_MAX)
    media_id = _integer(body, "video_media_id", 1, ID_MAX)
    if source_id is None and media_id is None:
        raise ApiError(EMPTY_PARAMETER, "source_video_id or video_media_id is required")
    if source_id is not None and media_id is not None:
        raise ApiError(
            INVALID_PARAMETER, "exactly one of source_video_id or video_media_id is required"
        )
    texts = {text for name in SOUND_DESCRIPTION_FIELDS if (text := _string(body, name))}
    if len(texts) > 1:
        raise ApiError(INVALID_PARAMETER, "sound_effect_content and prompt disagree")
    description = texts.pop() if texts else ""
    if len(description) > SOUND_DESCRIPTION_MAX:
        raise ApiError(
            PROMPT_TOO_LONG, f"sound_effect_content is longer than {SOUND_DESCRIPTION_MAX}"
        )
    original = body.get("original_sound_switch")
    if original is not None and not isinstance(original, bool):
        raise ApiError(
            BAD_BINDING, "invalid binding request: original_sound_switch must be a boolean"
        )
    return SoundEffectParams(source_id, media_id, description, original is True)


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(BAD_BINDING, f"invalid binding request: {name} must be a string")
    return value


def _choice(body: dict[str, Any], name: str, allowed: frozenset[str]) -> str | None:
    value = _string(body, name)
    if value is not None and value not in allowed:
        raise ApiError(BAD_BINDING, f"invalid binding request: {name} {value!r} is not supported")
    return value


def _enum(body: dict[str, Any], name: str, enum: type[E]) -> E | None:
    value = _string(body, name)
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        raise ApiError(
            BAD_BINDING, f"invalid binding request: {name} {value!r} is not supported"
        ) from None


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    """A JSON integer in [low, high]: a quoted id is refused, and so is a bool or float (ids
    are JSON numbers: docs/pixverse.md, "Transport and trace ids")."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(BAD_BINDING, f"invalid binding request: {name} must be an integer")
    if not low <= value <= high:
        raise ApiError(BAD_BINDING, f"invalid binding request: {name} {value} is out of range")
    return value
