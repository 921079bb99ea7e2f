"""Option validation: every refusal says what to change."""

from __future__ import annotations

import pytest

from bot.jobs.options import Defaults, OptionRejected, build_options
from bot.pixverse.catalogue import shipped_catalogue
from bot.pixverse.rules import Motion, Quality
from bot.store.models import JobSource

CATALOGUE = shipped_catalogue()
DEFAULTS = Defaults("v4.5", Quality.P540, 5)
EFFECTS = {"Kiss kiss": 315446315336768}


def build(**kwargs):
    return build_options(
        catalogue=CATALOGUE, defaults=DEFAULTS, effects=EFFECTS, **{"prompt": "a cat", **kwargs}
    )


def credit_cost(combination):
    return CATALOGUE.price(combination)


def test_defaults_fill_in_and_a_seed_is_chosen():
    options = build()
    assert (options.model, options.quality, options.duration, options.motion) == (
        "v4.5",
        Quality.P540,
        5,
        Motion.NORMAL,
    )
    assert 0 <= options.seed <= 2147483647
    assert credit_cost(options.combination) == 45


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 2049}, "2049 characters; the limit is 2048 on v4.5"),
        ({"prompt": "x" * 3000}, "3000 characters; the limit is 2048 on v4.5.*v6, c1"),
        ({"prompt": "x" * 5001, "model": "v6"}, "5001 characters; the limit is 5000 on v6"),
        ({"negative_prompt": "x" * 2049}, "negative prompt"),
        ({"quality": "1080p", "duration": 8}, "1080p supports 5 s only.*model.*v5"),
        ({"motion": "fast", "duration": 8}, "Fast motion supports 5 s only"),
        ({"motion": "fast", "quality": "1080p"}, "1080p has no fast motion"),
        ({"model": "v5", "motion": "fast"}, "v5 has no fast motion"),
        ({"model": "v6", "motion": "fast"}, r"v6 has no fast motion: choose normal motion"),
        ({"duration": 12}, r"v4\.5 makes videos of 5 or 8 s, not 12 s.*\(v6, c1\)"),
        ({"model": "v6", "duration": 16}, "v6 makes videos of 1 to 15 s, not 16 s"),
        ({"model": "v5", "duration": 3}, "not 3 s"),
        ({"seed": -1}, "between 0 and 2147483647"),
        ({"seed": 2147483648}, "between 0 and 2147483647"),
        ({"model": "v9"}, "choose one of"),
        ({"effect": "Explode"}, "choose one of Kiss kiss"),
    ],
)
def test_refusals_say_what_to_change(kwargs, message):
    with pytest.raises(OptionRejected, match=message):
        build(**kwargs)


def test_style_on_another_model_is_dropped_with_a_note():
    options = build(style="anime")
    assert options.style is None
    assert "only works with model v3.5" in options.notes[0]
    assert build(style="anime", model="v3.5").style.value == "anime"


def test_effect_maps_to_its_template_id():
    options = build(effect="kiss KISS")
    assert (options.effect, options.template_id) == ("Kiss kiss", 315446315336768)


def test_v5_allows_1080p_8s_at_its_price():
    assert credit_cost(build(model="v5", quality="1080p", duration=8).combination) == 240


def test_a_long_prompt_is_taken_by_the_models_that_take_it():
    options = build(prompt="x" * 3000, model="v6")
    assert len(options.prompt) == 3000
    assert len(build(prompt="x" * 5000, model="c1").prompt) == 5000


def test_v6_takes_any_whole_second_up_to_15_at_its_per_second_price():
    for seconds, credits in [(1, 7), (12, 84), (15, 105)]:
        options = build(model="v6", quality="540p", duration=seconds)
        assert (options.model, options.duration) == ("v6", seconds)
        assert credit_cost(options.combination) == credits


def test_round_trip_through_json():
    options = build(negative_prompt="blur", seed=7, style="clay", model="v3.5")
    assert type(options).model_validate_json(options.model_dump_json()) == options


@pytest.mark.parametrize(
    "prompt",
    ["\u200b\u200c\u2060\ufeff\u00ad", "\u202e\u2066 \u2069", "\x00\x1b[31m\x07", "\u3164\u2800"],
)
def test_prompt_with_nothing_visible_is_refused(prompt):
    with pytest.raises(OptionRejected, match=r"prompt is empty.*invisible"):
        build(prompt=prompt)


def test_prompts_reach_pixverse_cleaned():
    options = build(
        prompt="a \x1b[31mred\x1b[0m fox\x00 \u202ejumps\u202c\u200b",
        negative_prompt="\u2067blur\u2069\x07",
    )
    assert (options.prompt, options.negative_prompt) == ("a red fox jumps", "blur")


def test_negative_prompt_with_nothing_visible_is_left_out():
    assert build(negative_prompt="\u200b\x1b[0m ").negative_prompt is None


def test_limits_count_the_cleaned_text():
    assert build(prompt="a" * 2048 + "\u200b" * 50).prompt == "a" * 2048
    assert build(negative_prompt="b" * 2048 + "\x1b[0m").negative_prompt == "b" * 2048
    with pytest.raises(OptionRejected, match="2049 characters"):
        build(prompt="\u200b" + "a" * 2049)
    with pytest.raises(OptionRejected, match="negative prompt is 2049"):
        build(negative_prompt="b" * 2049 + "\u202e")


# --- aspect ratios: text videos only (/imagine) ------------------------------------------------


def test_a_text_video_without_a_ratio_is_16_9_and_other_videos_carry_none():
    assert build(source=JobSource.TEXT).aspect_ratio == "16:9"
    assert build(source=JobSource.TEXT, aspect_ratio="9:16").aspect_ratio == "9:16"
    assert build().aspect_ratio is None
    assert build(source=JobSource.FRAMES).aspect_ratio is None


def test_a_ratio_the_model_lacks_is_refused_naming_the_models_that_make_it():
    with pytest.raises(OptionRejected, match=r"v4\.5 has no 21:9 .*16:9.*\(v6, c1\)"):
        build(source=JobSource.TEXT, aspect_ratio="21:9")
    assert build(source=JobSource.TEXT, aspect_ratio="21:9", model="c1").aspect_ratio == "21:9"


def test_a_ratio_for_a_video_that_follows_its_input_is_refused():
    with pytest.raises(OptionRejected, match="follows its input"):
        build(aspect_ratio="1:1")
