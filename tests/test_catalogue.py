"""The model catalogue (bot/pixverse/catalogue.py): the shipped file's facts, a replacement
file, every way a file can be malformed, and the walk of every combination the bot accepts
through the simulator's own validation and pricing."""

from __future__ import annotations

import io
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.jobs.options import Defaults, OptionRejected, build_options
from bot.jobs.runner import audio_fields, request_fields
from bot.pixverse.catalogue import (
    Catalogue,
    CatalogueError,
    load_catalogue,
    price_table,
    shipped_catalogue,
)
from bot.pixverse.models import (
    ExtendRequest,
    ImageToVideoRequest,
    TextToVideoRequest,
    TransitionRequest,
    _GenerateRequest,
)
from bot.pixverse.rules import Combination, Motion, Quality, RuleViolation
from bot.simulator import SimState, SimulatorConfig
from bot.simulator.errors import ApiError
from bot.simulator.params import Kind
from bot.store.models import JobSource

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = shipped_catalogue()
KEY = "walk-key"

# A small valid catalogue that the malformed cases below break one entry at a time.
VALID = """
default_model = "m1"

[sound_effect]
credits = 10
per_seconds = 5

[models."m1"]
qualities = ["540p", "1080p"]
durations = [5, 8]
motion_modes = ["normal", "fast"]
aspect_ratios = ["16:9", "1:1"]
native_audio = false
prompt_max = 100

[models."m1".price]
"540p" = { "5" = 45, "8" = 90 }
"1080p" = { "5" = 120 }

[models."m1".fast_price]
"540p" = { "5" = 90 }

[models."m2"]
qualities = ["360p", "540p"]
durations = { min = 1, max = 10 }
motion_modes = ["normal"]
aspect_ratios = ["16:9", "21:9"]
native_audio = true
multi_shot = true
prompt_max = 300

[models."m2".price]
"360p" = 4
"540p" = 6

[models."m2".audio_price]
"360p" = 1
"540p" = 2
"""


def combo(model: str, quality: str, duration: int, motion: str = "normal", audio: bool = False):
    return Combination(model, Quality(quality), duration, Motion(motion), audio)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped catalogue --------------------------------------------------------------------


def test_every_model_of_the_research_notes_is_shipped_in_order():
    assert SHIPPED.names == ("v3.5", "v4", "v4.5", "v5", "v5.5", "v5.6", "v6", "c1")
    assert SHIPPED.default == "v4.5"
    assert SHIPPED.qualities == tuple(Quality)
    assert SHIPPED.duration_bounds == (1, 15)
    assert SHIPPED.prompt_max == 5000


@pytest.mark.parametrize("model", ["v3.5", "v4", "v4.5", "v5", "v5.5", "v5.6"])
def test_the_older_models_make_5_or_8_s_with_five_aspect_ratios_and_2048_characters(model):
    spec = SHIPPED.spec(model)
    assert spec.durations.values == (5, 8)
    assert spec.aspect_ratios == ("16:9", "4:3", "1:1", "3:4", "9:16")
    assert (spec.prompt_max, spec.native_audio, spec.multi_shot) == (2048, False, False)


@pytest.mark.parametrize("model", ["v6", "c1"])
def test_v6_and_c1_make_1_to_15_s_with_native_audio_multi_shot_and_wide_ratios(model):
    spec = SHIPPED.spec(model)
    assert spec.durations.values == tuple(range(1, 16)) and spec.durations.is_range
    assert spec.aspect_ratios[-3:] == ("2:3", "3:2", "21:9")
    assert (spec.prompt_max, spec.native_audio, spec.multi_shot) == (5000, True, True)
    assert spec.motion_modes == (Motion.NORMAL,)


# §8 of the research notes, row by row: (quality, 5 s, 8 s, fast 5 s).
CLASSIC = [("360p", 45, 90, 90), ("540p", 45, 90, 90), ("720p", 60, 120, 120)]


@pytest.mark.parametrize("model", ["v3.5", "v4", "v4.5"])
def test_classic_models_cost_what_the_pricing_page_says(model):
    for quality, five, eight, fast in CLASSIC:
        assert SHIPPED.price(combo(model, quality, 5)) == five
        assert SHIPPED.price(combo(model, quality, 8)) == eight
        assert SHIPPED.price(combo(model, quality, 5, "fast")) == fast
    assert SHIPPED.price(combo(model, "1080p", 5)) == 120


@pytest.mark.parametrize("model", ["v5", "v5.5", "v5.6"])
def test_v5_and_its_successors_cost_v5s_prices_and_allow_1080p_8_s(model):
    prices = {(q, d): SHIPPED.price(combo(model, q, d)) for q in ("360p", "1080p") for d in (5, 8)}
    assert prices == {("360p", 5): 45, ("360p", 8): 90, ("1080p", 5): 120, ("1080p", 8): 240}


def test_v6_is_priced_per_second_with_audio_on_top():
    assert [SHIPPED.price(combo("v6", q.value, 1)) for q in Quality] == [5, 7, 9, 18]
    assert [SHIPPED.price(combo("v6", q.value, 1, audio=True)) for q in Quality] == [7, 9, 12, 23]
    assert SHIPPED.price(combo("v6", "720p", 12)) == 108


def test_c1_720p_5_s_costs_what_the_live_job_cost():
    assert SHIPPED.price(combo("c1", "720p", 5)) == 50


def test_c1s_unknown_rows_reserve_no_less_than_its_one_known_rate():
    # Only 720p is known (10 a second); a lower quality must not reserve less, or an actual
    # cost at the known rate would take members past their allowance.
    per_second = [SHIPPED.price(combo("c1", q.value, 1)) for q in Quality]
    assert per_second == [10, 10, 10, 20]
    with_audio = [SHIPPED.price(combo("c1", q.value, 1, audio=True)) for q in Quality]
    assert with_audio == [14, 14, 14, 26]


def test_the_sound_effect_costs_10_per_started_5_s_on_models_without_native_audio():
    assert SHIPPED.price(combo("v4.5", "540p", 5, audio=True)) == 45 + 10
    assert SHIPPED.price(combo("v4.5", "540p", 8, audio=True)) == 90 + 20
    assert SHIPPED.price(combo("v4.5", "540p", 5, "fast", audio=True)) == 90 + 10


@pytest.mark.parametrize(
    ("combination", "message"),
    [
        (combo("v6", "540p", 5, "fast"), "v6 has no fast motion: choose normal motion"),
        (combo("v4.5", "540p", 12), r"v4\.5 makes videos of 5 or 8 s, not 12 s.*\(v6, c1\)"),
        (combo("v4.5", "1080p", 8), r"1080p supports 5 s only on v4\.5: choose 5 s"),
        (combo("v4.5", "1080p", 5, "fast"), "1080p has no fast motion on v4.5"),
        (combo("v4", "540p", 8, "fast"), "Fast motion supports 5 s only on v4"),
        (combo("v5", "540p", 5, "fast"), "v5 has no fast motion"),
        (combo("v9", "540p", 5), "'v9' is not a model: choose one of v3.5"),
        (combo("c1", "540p", 16), "c1 makes videos of 1 to 15 s, not 16 s"),
    ],
)
def test_refusals_say_what_to_change(combination, message):
    with pytest.raises(RuleViolation, match=message):
        SHIPPED.price(combination)


def test_a_3000_character_prompt_is_too_long_for_v4_5_but_not_for_v6():
    with pytest.raises(RuleViolation, match=r"limit is 2048 on v4\.5.*\(v6, c1\)"):
        SHIPPED.check_prompts("v4.5", "x" * 3000)
    SHIPPED.check_prompts("v6", "x" * 3000)
    with pytest.raises(RuleViolation, match="limit is 5000 on v6"):
        SHIPPED.check_prompts("v6", "x" * 5001)


def test_aspect_ratios_are_per_model():
    SHIPPED.check_aspect_ratio("v6", "21:9")
    with pytest.raises(RuleViolation, match=r"v4\.5 has no 21:9 aspect ratio.*\(v6, c1\)"):
        SHIPPED.check_aspect_ratio("v4.5", "21:9")


def test_the_cheapest_video_is_v6_at_360p_for_one_second():
    assert SHIPPED.cheapest() == 5


def test_an_installed_package_carries_the_file():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"pixverse/catalogue.toml"' in pyproject


# --- a replacement file ---------------------------------------------------------------------


def test_a_replacement_file_replaces_the_shipped_catalogue(tmp_path):
    catalogue = load_catalogue(write(tmp_path, VALID))
    assert catalogue.names == ("m1", "m2")
    assert str(tmp_path) in catalogue.source
    assert catalogue.duration_bounds == (1, 10)
    assert catalogue.price(combo("m2", "540p", 7)) == 42
    assert catalogue.price(combo("m2", "540p", 7, audio=True)) == 56
    assert catalogue.price(combo("m1", "540p", 8, audio=True)) == 90 + 20
    with pytest.raises(RuleViolation, match="1080p supports 5 s only on m1"):
        catalogue.check(combo("m1", "1080p", 8))


def test_without_default_model_the_first_model_is_the_default(tmp_path):
    catalogue = load_catalogue(write(tmp_path, VALID.replace('default_model = "m1"', "")))
    assert catalogue.default == "m1"


def test_explicit_refusals_refuse_priced_combinations_with_their_reason(tmp_path):
    text = VALID + (
        '\n[[models."m2".refused]]\nquality = "540p"\nduration = 10\n'
        'reason = "m2 makes 540p up to 9 s: choose 9 s or 360p."\n'
    )
    catalogue = load_catalogue(write(tmp_path, text))
    assert catalogue.price(combo("m2", "540p", 9)) == 54
    with pytest.raises(RuleViolation, match="m2 makes 540p up to 9 s"):
        catalogue.price(combo("m2", "540p", 10))
    assert combo("m2", "540p", 10) not in set(catalogue.combinations())


# --- malformed files: one line naming the file and the entry ---------------------------------


def _replace(old: str, new: str):
    def mutate(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return mutate


MALFORMED = [
    pytest.param(_replace("[sound_effect]", "[sound_effect"), "not valid TOML", id="toml-syntax"),
    pytest.param(
        _replace("prompt_max = 100\n", ""), "models.m1.prompt_max: is required", id="missing-key"
    ),
    pytest.param(
        _replace('qualities = ["540p", "1080p"]', 'qualities = ["540p", "4k"]'),
        "models.m1.qualities[1]: Input should be",
        id="unknown-quality",
    ),
    pytest.param(
        _replace('"360p" = 4', '"360p" = -4'),
        'models.m2.price: the price of "360p" per second must not be negative',
        id="negative-price",
    ),
    pytest.param(
        _replace('"540p" = { "5" = 45, "8" = 90 }', '"540p" = { "5" = 45, "8" = -1 }'),
        'models.m1.price: the price of "540p" 8 s must not be negative',
        id="negative-table-price",
    ),
    pytest.param(
        _replace("{ min = 1, max = 10 }", "{ min = 12, max = 10 }"),
        "models.m2.durations: min (12) is greater than max (10)",
        id="range-min-over-max",
    ),
    pytest.param(
        _replace('"360p" = 4', '"2160p" = 4'),
        "models.m2.price.2160p: unknown key: Input should be '360p'",
        id="price-of-an-unknown-quality",
    ),
    pytest.param(
        _replace('[models."m1".fast_price]\n"540p" = { "5" = 90 }\n', ""),
        'models.m1: motion_modes has "fast" but there is no fast_price',
        id="fast-without-fast-price",
    ),
    pytest.param(
        _replace('"1080p" = { "5" = 120 }', '"1080p" = { "10" = 120 }'),
        'models.m1: price "1080p" prices 10 s, which durations does not allow',
        id="price-outside-durations",
    ),
    pytest.param(
        _replace('"1080p" = { "5" = 120 }\n', ""),
        'models.m1: price has no "1080p", which qualities lists',
        id="listed-quality-unpriced",
    ),
    pytest.param(
        _replace("prompt_max = 300", "prompt_max = 300\nprompt_maxx = 400"),
        "models.m2.prompt_maxx: is not a catalogue key",
        id="unknown-key",
    ),
    pytest.param(
        _replace('default_model = "m1"', 'default_model = "m9"'),
        "default_model 'm9' is not one of the models",
        id="unknown-default-model",
    ),
    pytest.param(
        _replace("durations = [5, 8]", "durations = [5, 5]"),
        "models.m1.durations: a duration is listed twice",
        id="duration-twice",
    ),
    pytest.param(
        _replace("native_audio = true", 'native_audio = "yes"'),
        "models.m2.native_audio: Input should be a valid boolean",
        id="not-a-boolean",
    ),
    pytest.param(
        _replace("per_seconds = 5", "per_seconds = 0"),
        "sound_effect.per_seconds: Input should be greater than or equal to 1",
        id="sound-effect-per-zero-seconds",
    ),
    pytest.param(
        _replace('aspect_ratios = ["16:9", "21:9"]', 'aspect_ratios = ["wide"]'),
        "models.m2.aspect_ratios: 'wide' is not an aspect ratio",
        id="bad-aspect-ratio",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), MALFORMED)
def test_a_malformed_file_is_one_line_naming_the_file_and_the_entry(tmp_path, mutate, expected):
    path = write(tmp_path, mutate(VALID))
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    message = str(caught.value)
    assert message.startswith(f"catalogue {path}: ")
    assert expected in message
    assert "\n" not in message


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CatalogueError, match=r"nothing\.toml: cannot be read"):
        load_catalogue(tmp_path / "nothing.toml")


def test_a_file_without_models_is_refused(tmp_path):
    text = VALID[: VALID.index('[models."m1"]')]
    with pytest.raises(CatalogueError, match="models: is required"):
        load_catalogue(write(tmp_path, text))


# --- the walk: nothing the bot accepts is refused or priced otherwise by the simulator ---------


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


# What the bot sends for each way in: its request model, the simulator's kind, and the
# job source the bot's option check is told.
_WAYS_IN: dict[Kind, JobSource] = {
    Kind.IMAGE: JobSource.IMAGE,
    Kind.TEXT: JobSource.TEXT,
    Kind.TRANSITION: JobSource.FRAMES,
    Kind.EXTEND: JobSource.JOB,
}


def _walk(
    catalogue: Catalogue,
    *,
    audio: bool = False,
    kind: Kind = Kind.IMAGE,
    aspect_ratio: str | None = None,
) -> tuple[int, int]:
    """Every model × quality × duration × motion for one way in (image, text, first and last
    frame, extend), with or without audio, and for text one aspect ratio: when the bot's
    option check accepts it, the simulator accepts the body the runner would send and charges
    the bot's price; when the bot refuses it, so does the simulator. Returns (accepted,
    refused)."""
    now = [0.0]
    state = SimState(
        SimulatorConfig(catalogue=catalogue, balance=10**12, max_concurrent=10**6, seed=1),
        clock=lambda: now[0],
    )
    image, last = state.upload_image(KEY, _png()), state.upload_image(KEY, _png())
    some = next(catalogue.combinations())
    earlier = state.submit(
        KEY,
        state.parse(
            Kind.IMAGE,
            ImageToVideoRequest(
                img_id=image.id,
                prompt="a finished video to extend",
                model=some.model,
                quality=some.quality,
                duration=some.duration,
            ).body(),
        ),
        "the-source",
    )
    now[0] = earlier.finish_at + 1  # extends need a finished video
    source = _WAYS_IN[kind]
    defaults = Defaults(catalogue.default, Quality.P540, 5)
    low, high = catalogue.duration_bounds
    accepted = refused = 0
    for model, quality, duration, motion in itertools.product(
        catalogue.names, Quality, range(low, high + 2), Motion
    ):
        body_params = {"prompt": "a cat turns its head", "model": model, "duration": duration}
        body_params.update(quality=quality.value, motion=motion.value)
        try:
            params = build_options(
                catalogue=catalogue,
                defaults=defaults,
                effects={},
                audio=audio,
                aspect_ratio=aspect_ratio,
                source=source,
                **body_params,
            )
        except OptionRejected:
            params = None
        sent = params or build_options(
            catalogue=catalogue,
            defaults=defaults,
            effects={},
            prompt="a cat turns its head",
            source=source,
        ).model_copy(
            update={"model": model, "quality": quality, "duration": duration, "audio": audio}
        )
        fields = {**request_fields(sent), **audio_fields(sent, catalogue)}
        fields["motion_mode"] = motion.value if motion is not Motion.NORMAL else None
        request: _GenerateRequest
        if kind is Kind.IMAGE:
            request = ImageToVideoRequest(img_id=image.id, **fields)
        elif kind is Kind.TEXT:
            request = TextToVideoRequest(aspect_ratio=aspect_ratio or "16:9", **fields)
        elif kind is Kind.TRANSITION:
            request = TransitionRequest(first_frame_img=image.id, last_frame_img=last.id, **fields)
        else:
            request = ExtendRequest(source_video_id=earlier.video_id, **fields)
        body = request.body()
        trace = f"{kind}-{model}-{quality}-{duration}-{motion}-{audio}-{aspect_ratio}"
        try:
            job = state.submit(KEY, state.parse(kind, body), trace)
        except ApiError as exc:
            assert params is None, f"the simulator refused what the bot accepted: {body} ({exc})"
            refused += 1
            continue
        assert params is not None, f"the simulator accepted what the bot refused: {body}"
        assert job.credits == catalogue.price(params.combination), body
        accepted += 1
    return accepted, refused


def test_every_combination_the_bot_accepts_the_simulator_accepts_at_the_same_price():
    accepted, refused = _walk(SHIPPED)
    assert accepted == len(list(SHIPPED.combinations())) == 174
    assert refused > accepted


def test_with_audio_every_combination_the_bot_accepts_the_simulator_accepts_alike():
    accepted, refused = _walk(SHIPPED, audio=True)
    assert accepted == len(list(SHIPPED.combinations(audio=True))) == 174
    assert refused > accepted


@pytest.mark.parametrize("audio", [False, True], ids=["silent", "audio"])
@pytest.mark.parametrize("kind", [Kind.TRANSITION, Kind.EXTEND])
def test_transition_and_extend_walk_every_combination_alike(kind, audio):
    accepted, refused = _walk(SHIPPED, audio=audio, kind=kind)
    assert accepted == len(list(SHIPPED.combinations(audio=audio))) == 174
    assert refused > accepted


@pytest.mark.parametrize("audio", [False, True], ids=["silent", "audio"])
@pytest.mark.parametrize("ratio", sorted(SHIPPED.aspect_ratios))
def test_text_walks_every_combination_and_ratio_alike(ratio, audio):
    # A ratio only some models make: what the bot accepts is exactly those models'
    # combinations, and the simulator refuses the rest as the bot does.
    accepted, refused = _walk(SHIPPED, audio=audio, kind=Kind.TEXT, aspect_ratio=ratio)
    makers = [name for name, spec in SHIPPED.models.items() if ratio in spec.aspect_ratios]
    expected = [c for c in SHIPPED.combinations(audio=audio) if c.model in makers]
    assert makers and accepted == len(expected)
    assert refused > 0


def test_the_walk_holds_for_a_replacement_catalogue(tmp_path):
    catalogue = load_catalogue(write(tmp_path, VALID))
    accepted, _ = _walk(catalogue)
    assert accepted == len(list(catalogue.combinations()))


def test_with_audio_the_simulator_charges_the_catalogues_audio_price():
    state = SimState(SimulatorConfig(balance=10**9, max_concurrent=1000, seed=1))
    image = state.upload_image(KEY, _png())
    cases = [
        ("v6", "540p", 12, "generate_audio_switch", 12 * 9),
        ("v4.5", "540p", 8, "sound_effect_switch", 90 + 20),
    ]
    for n, (model, quality, duration, switch, credits) in enumerate(cases):
        body = {"img_id": image.id, "prompt": "waves", "model": model, "quality": quality}
        body.update({"duration": duration, switch: True})
        job = state.submit(KEY, state.parse(Kind.IMAGE, body), f"audio-{n}")
        assert job.credits == credits
    body = {"img_id": image.id, "prompt": "waves", "model": "v4.5", "quality": "540p"}
    body.update(duration=5, generate_audio_switch=True)
    with pytest.raises(ApiError, match=r"generate_audio_switch is not supported on v4\.5"):
        state.parse(Kind.IMAGE, body)


# --- the README's price table -----------------------------------------------------------------


def test_the_readme_price_table_is_the_shipped_catalogues():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- prices:start -->\n(.*?)<!-- prices:end -->", readme, re.DOTALL)
    assert found, "README.md has no <!-- prices:start --> … <!-- prices:end --> section"
    assert found.group(1) == price_table(SHIPPED), (
        "README's price table is out of date: paste the output of "
        "`python -m bot.pixverse.catalogue` between the prices markers"
    )


def test_the_command_line_checks_a_file_and_prints_its_table(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "bot.pixverse.catalogue", str(write(tmp_path, VALID))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "| m2 | 540p | 1 to 10 s | 6/s | – | 2/s |" in good.stdout
    bad = write(tmp_path, VALID.replace('"360p" = 4', '"360p" = -4'))
    broken = subprocess.run(
        [sys.executable, "-m", "bot.pixverse.catalogue", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1 and "must not be negative" in broken.stderr


# --- the standalone simulator ----------------------------------------------------------------


def test_the_standalone_simulator_takes_a_catalogue_file(tmp_path):
    from bot.simulator.__main__ import build_config, main, parse_args

    path = write(tmp_path, VALID)
    assert build_config(parse_args(["--catalogue", str(path)])).catalogue.names == ("m1", "m2")
    assert build_config(parse_args([])).catalogue is SHIPPED
    broken = write(tmp_path, VALID.replace("per_seconds = 5", "per_seconds = -5"))
    assert main(["--catalogue", str(broken), "--port", "0"]) == 2
