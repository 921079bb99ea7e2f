"""PixVerse failures as a small exception hierarchy, mapped from ErrCode and HTTP status.

The classes follow the "Class → effect" column of the ErrCode table (docs/pixverse.md,
"Envelope and errors"), so callers decide what to do (refund, re-queue, retry, tell the
member) with a plain ``isinstance`` ladder.
"""

from __future__ import annotations


class PixVerseError(Exception):
    """Any failure talking to PixVerse. ``code`` is the ErrCode (0 when there was none)."""

    retryable = False

    def __init__(self, message: str, *, code: int = 0, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.message} (ErrCode {self.code})" if self.code else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, http_status={self.http_status})"


class AuthError(PixVerseError):
    """The API key is missing, wrong or lacks permission (400012, 500020, HTTP 401/403)."""


class OutOfCredits(PixVerseError):
    """The PixVerse account has no credits left (500090)."""


class ConcurrencyLimit(PixVerseError):
    """The account's concurrent-generation limit is reached (500044): queue and try later."""


class InvalidParameters(PixVerseError):
    """PixVerse refused the request's parameters (400011/13/17/18/19, 400032, 500071…)."""


class EffectUnavailable(InvalidParameters):
    """The effect is not activated, over its monthly cap, or not offered at this quality."""


class InvalidInput(PixVerseError):
    """The uploaded image or video was refused (500030–500033, 500041/42, 500047)."""


class ModerationRejected(PixVerseError):
    """Content moderation refused the input or prompt (500052, 500054, 500063)."""


class NotFound(PixVerseError):
    """The id is unknown or the content was deleted (500008, 500064)."""


class TransientError(PixVerseError):
    """A passing failure worth retrying: 5xx, 429, timeouts, high load (500069, 500100…)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.retry_after = retry_after


class UnreadableAnswer(TransientError):
    """A 2xx answer the client could not read: a cut body, malformed JSON, no envelope, or a
    ``Resp`` of the wrong shape. PixVerse may have acted on the request (made and charged a
    video), so it is resent as it was -- a generate with the same trace id -- never given up
    on as a refusal (docs/pixverse.md, "Transport and trace ids")."""


_BY_CODE: dict[int, type[PixVerseError]] = {
    400011: InvalidParameters,
    400012: AuthError,
    400013: InvalidParameters,
    400017: InvalidParameters,
    400018: InvalidParameters,
    400019: InvalidParameters,
    400032: InvalidParameters,
    500008: NotFound,
    500020: AuthError,
    500030: InvalidInput,
    500031: InvalidInput,
    500032: InvalidInput,
    500033: InvalidInput,
    500041: InvalidInput,
    500042: InvalidInput,
    500044: ConcurrencyLimit,
    500047: InvalidInput,
    500052: ModerationRejected,
    500054: ModerationRejected,
    500060: EffectUnavailable,
    500063: ModerationRejected,
    500064: NotFound,
    500069: TransientError,
    500070: EffectUnavailable,
    500071: EffectUnavailable,
    500090: OutOfCredits,
    500100: TransientError,
    99999: TransientError,
}


def error_for_code(code: int, message: str, *, http_status: int | None = None) -> PixVerseError:
    """The exception for a non-zero ErrCode; unknown codes are treated as parameter errors
    so that nothing is retried blindly (a retry of an unknown failure could double-charge)."""
    cls = _BY_CODE.get(code, InvalidParameters)
    return cls(message or "PixVerse refused the request", code=code, http_status=http_status)


def error_for_http_status(
    status: int, message: str, *, retry_after: float | None = None
) -> PixVerseError:
    """The exception for a non-2xx answer without a usable envelope."""
    if status in (401, 403):
        return AuthError(message, http_status=status)
    if status == 429 or status >= 500:
        return TransientError(message, http_status=status, retry_after=retry_after)
    if status == 404:
        return NotFound(message, http_status=status)
    return InvalidParameters(message, http_status=status)
