"""What the simulator knows about files: sniffing uploads by their bytes, and the sample video.

Uploads are judged by magic bytes, never by file name or declared type, and images are
opened lazily with Pillow (header only) so a huge image is measured, never decoded.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from functools import cache
from importlib import resources

from PIL import Image, UnidentifiedImageError

from bot.pixverse.rules import IMAGE_MAX_BYTES, IMAGE_MAX_SIDE, VIDEO_MAX_BYTES
from bot.simulator.errors import (
    IMAGE_BAD_FORMAT,
    IMAGE_TOO_LARGE,
    IMAGE_UNREADABLE,
    INVALID_PARAMETER,
    ApiError,
)

IMAGE_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
MEDIA_CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "m4a": "audio/mp4",
}
# H.264 160x90, 2 s, 12 fps (4.8 KB), made once and committed, never fetched at run time:
#   ffmpeg -f lavfi -i testsrc=size=160x90:rate=12:duration=2 -c:v libx264 -profile:v baseline
#     -preset veryslow -crf 32 -pix_fmt yuv420p -movflags +faststart -an sample.mp4
_SAMPLE = "sample.mp4"
_BOX_HEADER = struct.Struct(">I4s")
_LARGE_BOX_HEADER = struct.Struct(">I4sQ")


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # "png" | "jpeg" | "webp"
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class MediaInfo:
    # Inferred from the file (docs/pixverse.md, "Endpoints used": upload video).
    media_type: str  # "video" | "audio"
    format: str


def sniff_image_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def inspect_image(data: bytes) -> ImageInfo:
    """Check an uploaded image against the limits, or raise ApiError with the ErrCode
    (docs/pixverse.md, "Input limits" and "Envelope and errors")."""
    if len(data) > IMAGE_MAX_BYTES:
        raise ApiError(IMAGE_TOO_LARGE, "image too large: the file must be under 20 MB")
    fmt = sniff_image_format(data)
    if fmt is None:
        raise ApiError(IMAGE_BAD_FORMAT, "invalid image format: use png, jpeg or webp")
    try:
        with warnings.catch_warnings():
            # A bomb-sized header is just "too large" here; nothing is decoded anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ApiError(IMAGE_TOO_LARGE, "image too large: at most 4000x4000 pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(IMAGE_UNREADABLE, "cannot read image info") from None
    # 4000x4000 is the conservative bound of the sources that disagree (4000 vs 10000;
    # docs/pixverse.md, "Input limits").
    if width > IMAGE_MAX_SIDE or height > IMAGE_MAX_SIDE:
        raise ApiError(
            IMAGE_TOO_LARGE,
            f"image too large: {width}x{height}, at most {IMAGE_MAX_SIDE}x{IMAGE_MAX_SIDE} pixels",
        )
    return ImageInfo(fmt, width, height)


def sniff_media(data: bytes) -> MediaInfo | None:
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand.startswith(b"M4A"):
            return MediaInfo("audio", "m4a")
        return MediaInfo("video", "mov" if brand == b"qt  " else "mp4")
    if data.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska / WebM
        return MediaInfo("video", "webm")
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return MediaInfo("audio", "mp3")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return MediaInfo("audio", "wav")
    return None


def inspect_media(data: bytes) -> MediaInfo:
    """Check an uploaded video/audio file (≤ 50 MB: docs/pixverse.md, "Input limits"), or
    raise ApiError (400017)."""
    if len(data) > VIDEO_MAX_BYTES:
        raise ApiError(INVALID_PARAMETER, "media file too large: at most 50 MB")
    info = sniff_media(data)
    if info is None:
        # PixVerse's extend docs quote this message for a file that is not a video.
        raise ApiError(INVALID_PARAMETER, "Invalid media_type: not a video resource")
    return info


@cache
def sample_video() -> bytes:
    """The committed sample clip served for every finished job (read once)."""
    return resources.files("bot.simulator").joinpath("assets", _SAMPLE).read_bytes()


def free_box_header(padding: int) -> bytes:
    """The header of a top-level `free` box of ``padding`` bytes in all (ISO/IEC 14496-12):
    players skip it, so a padded file stays playable."""
    if padding < _BOX_HEADER.size:
        raise ValueError("a free box needs at least 8 bytes")
    if padding <= 0xFFFFFFFF:
        return _BOX_HEADER.pack(padding, b"free")
    return _LARGE_BOX_HEADER.pack(1, b"free", padding)  # size 1 = 64-bit size follows


def served_video_size(video_size_bytes: int | None) -> int:
    """The size of the file served for ``video_size_bytes``: the sample, or padded to it
    (never smaller than the sample plus the smallest box)."""
    base = len(sample_video())
    if video_size_bytes is None or video_size_bytes <= base:
        return base
    return max(video_size_bytes, base + _BOX_HEADER.size)


def output_size(short_side: int, ratio: float) -> tuple[int, int]:
    """Width and height of an output at a quality whose short side is ``short_side`` pixels
    (720p 16:9 is 1280x720: docs/pixverse.md, "Result and status codes"), for width/height
    ``ratio``; even, as H.264 wants."""
    if ratio >= 1:
        return _even(short_side * ratio), short_side
    return short_side, _even(short_side / ratio)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def parse_ratio(aspect_ratio: str) -> float:
    width, _, height = aspect_ratio.partition(":")
    return int(width) / int(height)
