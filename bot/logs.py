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

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, _MASK)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text
        if exc_text:
            for secret in self._secrets:
                exc_text = exc_text.replace(secret, _MASK)
            record.exc_text = exc_text
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """discord.py's own handler and formatter for the root logger, plus the redaction filter."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets(secrets))
    discord.utils.setup_logging(handler=handler, level=logging.getLevelName(level), root=True)
