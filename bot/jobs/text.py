"""What a member typed, made safe to send to PixVerse and to show in public messages.

Discord lets a slash-command string or a modal field carry anything: NUL, BEL, whole ANSI
escape sequences, bidi overrides that flip the rest of a line in every client that shows the
status message, and zero-width characters that make a prompt look empty (or let a filtered
word through ``/mod filter``). ``clean_prompt`` removes them once, where the job's options are
built, so everything downstream (the word filter, the status message, the moderation log,
PixVerse) sees the same visible text.
"""

from __future__ import annotations

import re
import unicodedata

# Whole terminal escape sequences, so "\x1b[31m" leaves nothing behind (removing ESC alone
# would leave "[31m"): CSI (ESC [ or U+009B … final byte), OSC (ESC ] or U+009D … BEL or ST),
# DCS / SOS / PM / APC strings (… ST), and the two-character escapes.
_ANSI = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]
    | (?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)
    | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)
    | \x1b[ -/]*[0-~]
    """,
    re.VERBOSE,
)

# Shown as nothing (or as a blank) by Discord's clients, though Unicode files them as letters
# or symbols: Hangul fillers and the braille blank are the usual "empty name" tricks.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
ZWJ = "\u200d"


def clean_prompt(text: str | None) -> str:
    """``text`` without control characters, escape sequences, bidi controls and invisible
    format characters; newlines, tabs and runs of spaces become one space; trimmed.

    A zero-width joiner is kept only inside an emoji sequence (between two symbols, as in
    👩‍🚀), where it is part of what the member sees; between letters it would only hide a
    word from the filter. Returns "" when nothing visible is left (only spaces, invisible
    characters, or combining marks with nothing to sit on).
    """
    if not text:
        return ""
    text = _ANSI.sub("", text)
    kept: list[str] = []
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if char.isspace() or char in _BLANKS:
            kept.append(" ")
        elif category == "Cc":
            continue  # NUL, BEL, a stray ESC, DEL, C1 controls
        elif category == "Cf":
            # Zero-width characters, the soft hyphen, BOM, bidi embeddings, overrides,
            # isolates and marks, tag characters: all invisible or line-flipping.
            if char == ZWJ and _joins_symbols(text, index):
                kept.append(char)
        else:
            kept.append(char)
    cleaned = " ".join("".join(kept).split())
    return cleaned if _has_visible(cleaned) else ""


def _has_visible(text: str) -> bool:
    """Whether ``text`` shows anything: a letter, digit, punctuation mark or symbol (combining
    marks and variation selectors alone draw nothing)."""
    return any(unicodedata.category(char)[0] in "LNPS" for char in text)


def _joins_symbols(text: str, index: int) -> bool:
    before = _neighbour(text, index, -1)
    after = _neighbour(text, index, 1)
    return before is not None and after is not None and before == after == "S"


def _neighbour(text: str, index: int, step: int) -> str | None:
    """The major category of the nearest character beside ``index`` that is not a combining
    mark (an emoji's variation selector sits between the emoji and the joiner)."""
    index += step
    while 0 <= index < len(text):
        category = unicodedata.category(text[index])
        if category[0] != "M":
            return category[0]
        index += step
    return None
