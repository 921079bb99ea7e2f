"""The PixVerse API: client, models, errors and the documented parameter rules."""

from bot.pixverse.client import DownloadTooLarge, PixVerseClient, new_trace_id
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
)
from bot.pixverse.models import (
    Balance,
    EffectTemplate,
    EffectTemplatePage,
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
    "EffectTemplate",
    "EffectTemplatePage",
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
    "UploadedImage",
    "UploadedMedia",
    "VideoResult",
    "VideoStatus",
    "new_trace_id",
]
