"""Logging set-up, with every configured secret scrubbed from every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import discord

_MASK = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replaces secret values anywhere in a log record's rendered message.

    Nothing in the bot logs a secret on purpose; this is the safety net for a library or an
    exception message that echoes a header or a URL.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class _RedactingFormatter(logging.Formatter):
    """Redacts the whole rendered line. Needed beside the filter: discord.py's colour
    formatter (used on a terminal) renders the traceback again from ``exc_info``, past the
    filter's redacted ``exc_text``."""

    def __init__(self, inner: logging.Formatter, redact: RedactSecrets) -> None:
        super().__init__()
        self._inner = inner
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact.redact(self._inner.format(record))


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """discord.py's own handler and formatter for the root logger, plus the redaction filter."""
    handler = logging.StreamHandler()
    redact = RedactSecrets(secrets)
    handler.addFilter(redact)
    discord.utils.setup_logging(handler=handler, level=logging.getLevelName(level), root=True)
    if handler.formatter is not None:
        handler.setFormatter(_RedactingFormatter(handler.formatter, redact))
