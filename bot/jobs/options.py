"""Validates a member's generation options before anything is charged or sent.

Every refusal says what to change. The rules themselves are the model catalogue's
(``bot.pixverse.catalogue``): what each model accepts is data, not code.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.jobs.effects import EffectList
from bot.jobs.text import clean_prompt
from bot.pixverse.catalogue import Catalogue
from bot.pixverse.rules import SEED_MAX, Combination, Motion, Quality, RuleViolation, Style
from bot.refusal import Refusal
from bot.store.models import JobParams, JobSource

EnumT = TypeVar("EnumT", Quality, Motion, Style)
DEFAULT_ASPECT_RATIO = "16:9"


class OptionRejected(Refusal, ValueError):
    """An option or combination PixVerse would refuse; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Defaults:
    model: str
    quality: Quality
    duration: int


def random_seed() -> int:
    return secrets.randbelow(SEED_MAX + 1)


def build_options(
    *,
    prompt: str,
    catalogue: Catalogue,
    defaults: Defaults,
    effects: EffectList | Mapping[str, int],
    negative_prompt: str | None = None,
    model: str | None = None,
    quality: str | None = None,
    duration: int | None = None,
    motion: str | None = None,
    style: str | None = None,
    seed: int | None = None,
    effect: str | None = None,
    aspect_ratio: str | None = None,
    audio: bool = False,
    source: JobSource = JobSource.IMAGE,
) -> JobParams:
    """Apply defaults and check every option and combination; raise OptionRejected.

    The prompts are cleaned first (``clean_prompt``), so the limits, the server's word filter,
    the public messages and PixVerse all see the same visible text. A negative prompt with
    nothing visible is left out, as an empty one is. ``aspect_ratio`` belongs to a video made
    from text alone (source TEXT), checked against the model's own ratios; other videos
    follow their input and take none."""
    prompt = clean_prompt(prompt)
    if not prompt:
        raise OptionRejected(
            "The prompt is empty (nothing visible, only spaces or invisible characters): "
            "describe the motion you want to see."
        )
    negative = clean_prompt(negative_prompt) or None
    chosen_model = model or defaults.model
    chosen_quality = _enum(Quality, quality, defaults.quality, "quality")
    chosen_motion = _enum(Motion, motion, Motion.NORMAL, "motion")
    chosen_duration = defaults.duration if duration is None else duration
    chosen_style = _enum(Style, style, None, "style") if style else None
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise OptionRejected(f"The seed must be between 0 and {SEED_MAX}; {seed} is not.")
    try:
        spec = catalogue.spec(chosen_model)
        catalogue.check_prompts(chosen_model, prompt, negative)
        catalogue.check(
            Combination(chosen_model, chosen_quality, chosen_duration, chosen_motion, audio)
        )
        chosen_ratio = None
        if source is JobSource.TEXT:
            chosen_ratio = aspect_ratio or _default_ratio(spec.aspect_ratios)
            catalogue.check_aspect_ratio(chosen_model, chosen_ratio)
        elif aspect_ratio:
            raise OptionRejected(
                "An aspect ratio is for videos made from text (`/imagine`): this video "
                "follows its input."
            )
    except RuleViolation as exc:
        raise OptionRejected(str(exc)) from None

    notes: list[str] = []
    if chosen_style is not None and chosen_style not in spec.styles:
        # A style works only on the models whose catalogue entry lists it (v3.5 as shipped:
        # docs/pixverse.md, "Input limits"), so it is not sent with another model.
        with_style = [
            name for name, other in catalogue.models.items() if chosen_style in other.styles
        ]
        where = f"with model {', '.join(with_style)}" if with_style else "with no model here"
        notes.append(f"Style “{chosen_style.value}” only works {where}, so it was left out.")
        chosen_style = None

    template_id = None
    effect_name = None
    if effect:
        known = effects if isinstance(effects, EffectList) else EffectList.operator(effects)
        chosen = known.find(effect)
        if chosen is None:
            raise OptionRejected(known.unknown(effect))
        effect_name, template_id = chosen.name, chosen.template_id

    return JobParams(
        source=source,
        prompt=prompt,
        model=chosen_model,
        quality=chosen_quality,
        duration=chosen_duration,
        motion=chosen_motion,
        negative_prompt=negative,
        style=chosen_style,
        seed=random_seed() if seed is None else seed,
        effect=effect_name,
        template_id=template_id,
        aspect_ratio=chosen_ratio,
        audio=audio,
        notes=tuple(notes),
    )


def _default_ratio(ratios: tuple[str, ...]) -> str:
    # 16:9 when the member names none (interface.md, /imagine), else the model's first.
    return DEFAULT_ASPECT_RATIO if DEFAULT_ASPECT_RATIO in ratios else ratios[0]


def _enum(kind: type[EnumT], value: str | None, default: Any, name: str) -> EnumT:
    if value is None or value == "":
        return default  # type: ignore[no-any-return]
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise OptionRejected(f"{value!r} is not a {name}: choose one of {allowed}.") from None
