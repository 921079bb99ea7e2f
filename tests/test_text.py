"""clean_prompt: what a member typed, as PixVerse and the public messages get it."""

from __future__ import annotations

import unicodedata

import pytest

from bot.jobs.text import clean_prompt

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
BIDI = [
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
]


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "   ",
        "\t\n\r\x0b\x0c",
        "\u00a0\u2003\u3000\u2028\u2029\x85",
        "".join(ZERO_WIDTH),
        "".join(BIDI),
        "\u3164\u115f\u1160\uffa0\u2800",
        "\x00\x07\x1b\x7f\x9b",
        "\x1b[31m\x1b[0m\x1b[2J\x1b]0;title\x07",
        "\u0301\u0308\ufe0f\U000e0100",
        "\U000e0001\U000e0041\U000e007f",
    ],
)
def test_nothing_visible_cleans_to_empty(text):
    assert clean_prompt(text) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a \x1b[31mred\x1b[0m fox", "a red fox"),
        ("\x1b[1;38;5;196mbold\x1b[m", "bold"),
        ("title\x1b]0;owned\x07 here", "title here"),
        ("title\x1b]8;;https://x.example\x1b\\link\x1b]8;;\x1b\\", "titlelink"),
        ("keep\x1bc going", "keep going"),
        ("nul\x00 and bel\x07 gone", "nul and bel gone"),
        ("abc\u202edcba\u202c end", "abcdcba end"),
        ("\u2067right\u2069 left", "right left"),
        ("line one\nline two\r\n\tthree", "line one line two three"),
        ("  lots    of\u00a0\u00a0space  ", "lots of space"),
        ("b\u200bad", "bad"),
        ("b\u200dad", "bad"),
        ("b\u00adad", "bad"),
        ("\ufeffbom first", "bom first"),
    ],
)
def test_controls_escapes_and_invisibles_are_stripped(text, expected):
    assert clean_prompt(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "an astronaut 👩\u200d🚀 waves",  # ZWJ emoji sequence
        "a rainbow flag 🏳\ufe0f\u200d🌈",  # with a variation selector before the joiner
        "a family 👨\u200d👩\u200d👧 on a beach",
        "café naïve — “quotes” and 日本語の猫",
        "mañana, ¿qué? ½ × 3 ≥ 2 ✨",
        "עברית ועוד",  # right-to-left text itself stays
    ],
)
def test_visible_text_and_emoji_sequences_are_kept(text):
    assert clean_prompt(text) == text


def test_nothing_invisible_or_controlling_survives_any_mix():
    # Every character category that draws nothing or steers the terminal or the line.
    mix = "".join(chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cc", "Cf"))
    cleaned = clean_prompt(f"a{mix}b")
    assert cleaned == "a b"  # the whitespace controls among them become one space


def test_cleaning_is_idempotent():
    text = "a \x1b[31mred\u202e fox\u200b 👩\u200d🚀\n"
    once = clean_prompt(text)
    assert clean_prompt(once) == once
