"""The PixVerse API: client, models, errors and the documented parameter rules."""

from bot.pixverse.client import DownloadTooLarge, PixVerseClient, job_label, new_trace_id
from bot.pixverse.errors import (
    AuthError,
    ConcurrencyLimit,
    EffectUnavailable,
    InvalidInput,
    InvalidParameters,
    ModerationRejected,
    NotFound,
    OutOfCredits,
    PixVerseError,
    TransientError,
    UnreadableAnswer,
)
from bot.pixverse.models import (
    Balance,
    ExtendRequest,
    ImageToVideoRequest,
    TextToVideoRequest,
    UploadedImage,
    UploadedMedia,
    VideoResult,
    VideoStatus,
)

__all__ = [
    "AuthError",
    "Balance",
    "ConcurrencyLimit",
    "DownloadTooLarge",
    "EffectUnavailable",
    "ExtendRequest",
    "ImageToVideoRequest",
    "InvalidInput",
    "InvalidParameters",
    "ModerationRejected",
    "NotFound",
    "OutOfCredits",
    "PixVerseClient",
    "PixVerseError",
    "TextToVideoRequest",
    "TransientError",
    "UnreadableAnswer",
    "UploadedImage",
    "UploadedMedia",
    "VideoResult",
    "VideoStatus",
    "job_label",
    "new_trace_id",
]
