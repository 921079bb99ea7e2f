"""Logging set-up, with every secret scrubbed from every record.

Two kinds of secret reach log records without anyone logging them on purpose:

- the configured ones (the bot token, the PixVerse key, the webhook secret), e.g. in an
  exception message that echoes a header;
- interaction tokens, which the bot never configures: discord.py at DEBUG logs each request
  URL (``/webhooks/{app}/{token}/messages/@original``, ``/interactions/{id}/{token}/callback``)
  and each gateway event as a dict (INTERACTION_CREATE carries ``'token': '…'``). They are
  masked by pattern, and so is the keyword form ``token='…'`` of a dataclass repr.

The scrubbing runs when a record is created (a log record factory), so it covers every
handler any library or test adds, not only ours; ``RedactSecrets`` is the same scrubbing as a
handler filter, and our handler's formatter scrubs the rendered line once more, because
discord.py's colour formatter renders a traceback again from ``exc_info``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import discord

if TYPE_CHECKING:
    from bot.settings import Settings

MASK = "[redacted]"
# A configured secret shorter than this is not masked: in simulate mode the key is "", and
# masking a short common string would garble every line without protecting anything.
_MIN_SECRET = 6

# (pattern, replacement): each keeps what names the secret and masks the secret itself.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Interaction webhook and callback URLs: the segment after the id is the token.
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)([^/\s?#'\"]+)"), rf"\g<1>{MASK}"),
    # JSON bodies and dict reprs: "token": "…", 'token': '…', also "access_token" and the like.
    (re.compile(r"""(["'][\w-]*token["']\s*:\s*["'])([^"']+)""", re.IGNORECASE), rf"\g<1>{MASK}"),
    # Dataclass reprs and keyword arguments: token='…', interaction_token="…". Our own
    # reprs leave tokens out (field(repr=False)); this catches any that still print one.
    (re.compile(r"""(\b[\w-]*token\s*=\s*["'])([^"']+)""", re.IGNORECASE), rf"\g<1>{MASK}"),
    # PixVerse's key header, as a header line or in a dict repr.
    (
        re.compile(r"""(API-KEY["']?\s*[:=]\s*["']?)([^"'\s,}]+)""", re.IGNORECASE),
        rf"\g<1>{MASK}",
    ),
    # An Authorization header: "Bot <token>" or "Bearer <token>".
    (re.compile(r"""(\b(?:Bot|Bearer)\s+)([\w-]{20,}(?:\.[\w-]+){0,2})"""), rf"\g<1>{MASK}"),
)


class Redactor:
    """Masks configured secrets and anything shaped like an interaction or API token."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def scrub(self, record: logging.LogRecord) -> None:
        """Redact ``record`` in place; a record without secrets is left untouched."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller
            message = f"{record.msg!s} {record.args!r}"
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            clean = self.redact(text)
            if clean != text:
                # With exc_info gone no formatter can render the traceback again from the
                # exception; every formatter prints exc_text instead.
                record.exc_text, record.exc_info = clean, None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


class RedactSecrets(logging.Filter):
    """The redaction as a handler filter (the record factory does it for every record)."""

    def __init__(self, secrets: Iterable[str] | Redactor) -> None:
        super().__init__()
        self.redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    def filter(self, record: logging.LogRecord) -> bool:
        self.redactor.scrub(record)
        return True


class _RedactingFormatter(logging.Formatter):
    """Redacts the whole rendered line. Needed beside the filter: discord.py's colour
    formatter (used on a terminal) renders the traceback again from ``exc_info``."""

    def __init__(self, inner: logging.Formatter, redactor: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(self._inner.format(record))


class _RedactingFactory:
    """A log record factory that scrubs each record as it is made."""

    def __init__(self, inner: Callable[..., logging.LogRecord], redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        self.redactor.scrub(record)
        return record


def install_redaction(secrets: Iterable[str] | Redactor) -> Callable[[], None]:
    """Scrub every log record made from now on; returns a function that undoes it.

    Installing again replaces the previous redaction instead of stacking on it.
    """
    current = logging.getLogRecordFactory()
    inner = current.inner if isinstance(current, _RedactingFactory) else current
    redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)
    factory = _RedactingFactory(inner, redactor)
    logging.setLogRecordFactory(factory)

    def uninstall() -> None:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(inner)

    return uninstall


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold: the bot token, the PixVerse key, the webhook secret,
    the database password."""
    secrets = [settings.discord_token.get_secret_value(), settings.pixverse_key]
    if settings.pixverse_webhook_secret is not None:
        secrets.append(settings.pixverse_webhook_secret.get_secret_value())
    if settings.database_url is not None:
        password = urlsplit(settings.database_url.get_secret_value()).password
        if password:
            secrets.append(password)
    return secrets


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """discord.py's own handler and formatter for the root logger, with every record
    scrubbed (record factory, handler filter, and the rendered line)."""
    redactor = Redactor(secrets)
    install_redaction(redactor)
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets(redactor))
    discord.utils.setup_logging(handler=handler, level=logging.getLevelName(level), root=True)
    if handler.formatter is not None:
        handler.setFormatter(_RedactingFormatter(handler.formatter, redactor))
