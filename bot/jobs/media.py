"""Checks a member's input file by its declared type *and* its bytes, before anything is charged.

Images are opened lazily with Pillow (header only) so a decompression bomb is refused from
its declared size before a single pixel is decoded; images larger than PixVerse's
conservative 4,000 px bound are scaled down, keeping their aspect. Videos are recognised by
their container signature, and MP4/MOV headers are read for duration and size so PixVerse's
limits are enforced up front (both in docs/pixverse.md, "Input limits").
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.jobs.mp4 import boxes
from bot.pixverse.rules import (
    IMAGE_MAX_BYTES,
    IMAGE_MAX_PIXELS,
    IMAGE_MAX_SIDE,
    VIDEO_MAX_BYTES,
    VIDEO_MAX_SECONDS,
    VIDEO_MAX_SIDE,
)
from bot.refusal import Refusal

IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
VIDEO_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}
_DECLARED_IMAGE_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/webp"}
_DECLARED_VIDEO_TYPES = {"video/mp4", "video/quicktime", "video/mov", "video/webm"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
_VIDEO_SUFFIXES = {".mp4", ".mov", ".webm"}


class MediaRejected(Refusal, ValueError):
    """The file cannot be used; the message says what to change."""


@dataclass(frozen=True, slots=True)
class PreparedMedia:
    """Bytes ready to upload to PixVerse, with what was learnt about them."""

    data: bytes
    filename: str
    content_type: str
    kind: str  # "image" | "video"
    width: int | None = None
    height: int | None = None
    seconds: float | None = None
    scaled_from: tuple[int, int] | None = None


_EMPTY = "`{filename}` is empty (0 bytes): attach the picture again, or export it anew."


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def check_declared_image(filename: str, content_type: str | None, size: int) -> None:
    """Refuse from the attachment's metadata alone, before downloading it."""
    suffix = _suffix(filename)
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in _DECLARED_IMAGE_TYPES and suffix not in _IMAGE_SUFFIXES:
        raise MediaRejected(f"`{filename}` is not an image: attach a PNG, JPEG or WebP picture.")
    if size <= 0:
        raise MediaRejected(_EMPTY.format(filename=filename))
    if size > IMAGE_MAX_BYTES:
        raise MediaRejected(
            f"`{filename}` is {_mib(size)}; PixVerse takes images under "
            f"{_mib(IMAGE_MAX_BYTES)}: attach a smaller or more compressed picture."
        )


def check_declared_video(filename: str, content_type: str | None, size: int) -> None:
    suffix = _suffix(filename)
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in _DECLARED_VIDEO_TYPES and suffix not in _VIDEO_SUFFIXES:
        raise MediaRejected(f"`{filename}` is not a video: attach an MP4, MOV or WebM file.")
    if size > VIDEO_MAX_BYTES:
        raise MediaRejected(
            f"`{filename}` is {_mib(size)}; PixVerse takes videos up to "
            f"{_mib(VIDEO_MAX_BYTES)}: attach a shorter or smaller video."
        )


def sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def sniff_video(data: bytes) -> str | None:
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "mov" if data[8:12] == b"qt  " else "mp4"
    return None


def prepare_image(data: bytes, filename: str) -> PreparedMedia:
    """Validate an image by its bytes; scale it down when a side exceeds 4,000 px.

    Every pixel is decoded once: a JPEG or WebP cut short opens fine from its header (and
    Pillow's ``verify`` checks PNG chunks only), so only a full decode proves PixVerse will get
    a whole picture. Animated WebP and PNG are refused rather than flattened to a frame the
    member did not choose. CPU-bound: run it in a worker thread.
    """
    if not data:
        raise MediaRejected(_EMPTY.format(filename=filename))
    fmt = sniff_image(data)
    if fmt is None:
        raise MediaRejected(
            f"`{filename}` is not a PNG, JPEG or WebP image, whatever its name says: "
            "attach a real picture in one of those formats."
        )
    if len(data) > IMAGE_MAX_BYTES:
        raise MediaRejected(
            f"`{filename}` is {_mib(len(data))}; PixVerse takes images under "
            f"{_mib(IMAGE_MAX_BYTES)}: attach a smaller picture."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as image:
                width, height = image.size
                _check_pixels(filename, width, height)
                _check_still(image, filename, fmt)
                if max(width, height) <= IMAGE_MAX_SIDE:
                    image.load()  # raises on a truncated or corrupt file
                    return PreparedMedia(
                        data, _renamed(filename, fmt), IMAGE_TYPES[fmt], "image", width, height
                    )
                return _scaled(image, filename, fmt)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaRejected(
            f"`{filename}` declares too many pixels to be safe to open: attach a picture "
            "under 50 megapixels."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, MediaRejected):
            raise
        raise MediaRejected(
            f"`{filename}` could not be read as an image (it may be damaged): "
            "export it again as PNG, JPEG or WebP."
        ) from None


_ANIMATED_NAMES = {"png": "PNG", "webp": "WebP"}


def _check_still(image: Image.Image, filename: str, fmt: str) -> None:
    # A camera's multi-picture JPEG (MPO) also has frames, but its first is a plain JPEG that
    # every decoder shows: only animated PNG and WebP are refused.
    if fmt not in _ANIMATED_NAMES or not getattr(image, "is_animated", False):
        return
    frames = getattr(image, "n_frames", 2)
    raise MediaRejected(
        f"`{filename}` is an animated {_ANIMATED_NAMES[fmt]} ({frames} frames); PixVerse "
        "animates a still picture: attach a single frame as a PNG, JPEG or WebP image."
    )


def _check_pixels(filename: str, width: int, height: int) -> None:
    if width * height > IMAGE_MAX_PIXELS:
        raise MediaRejected(
            f"`{filename}` is {width}×{height} ({width * height / 1e6:.0f} megapixels); "
            "the limit is 50 megapixels: attach a smaller picture."
        )
    if width < 1 or height < 1:
        raise MediaRejected(f"`{filename}` has no pixels: attach a real picture.")


def _scaled(image: Image.Image, filename: str, fmt: str) -> PreparedMedia:
    original = image.size
    if fmt == "jpeg":
        # Decode at a reduced scale straight from the JPEG data: far less memory and time.
        image.draft("RGB", (IMAGE_MAX_SIDE, IMAGE_MAX_SIDE))
    image.load()
    frame = ImageOps.exif_transpose(image)
    frame.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if fmt == "jpeg" or (fmt == "webp" and frame.mode not in ("RGB", "RGBA")):
        frame.convert("RGB").save(out, format="JPEG", quality=92)
        fmt = "jpeg"
    elif fmt == "webp":
        frame.save(out, format="WEBP", quality=92)
    else:
        frame.save(out, format="PNG")
    data = out.getvalue()
    if len(data) > IMAGE_MAX_BYTES:
        out = io.BytesIO()
        frame.convert("RGB").save(out, format="JPEG", quality=85)
        data, fmt = out.getvalue(), "jpeg"
    return PreparedMedia(
        data,
        _renamed(filename, fmt),
        IMAGE_TYPES[fmt],
        "image",
        frame.width,
        frame.height,
        scaled_from=original,
    )


def prepare_video(data: bytes, filename: str) -> PreparedMedia:
    """Validate a video by its container signature and, for MP4/MOV, its header."""
    fmt = sniff_video(data)
    if fmt is None:
        raise MediaRejected(
            f"`{filename}` is not an MP4, MOV or WebM video, whatever its name says: "
            "attach a real video in one of those formats."
        )
    if len(data) > VIDEO_MAX_BYTES:
        raise MediaRejected(
            f"`{filename}` is {_mib(len(data))}; PixVerse takes videos up to "
            f"{_mib(VIDEO_MAX_BYTES)}: attach a shorter or smaller video."
        )
    seconds = width = height = None
    if fmt in ("mp4", "mov"):
        seconds, width, height = _mp4_header(data)
    if seconds is not None and seconds > VIDEO_MAX_SECONDS + 0.5:
        raise MediaRejected(
            f"`{filename}` lasts {seconds:.0f} s; PixVerse extends videos of up to "
            f"{VIDEO_MAX_SECONDS} s: trim it first."
        )
    if width and height and max(width, height) > VIDEO_MAX_SIDE:
        raise MediaRejected(
            f"`{filename}` is {width}×{height}; PixVerse takes videos up to {VIDEO_MAX_SIDE} px "
            "on each side: export it at 1080p or lower."
        )
    return PreparedMedia(
        data,
        _renamed(filename, fmt),
        VIDEO_TYPES[fmt],
        "video",
        width,
        height,
        seconds,
    )


def _mp4_header(data: bytes) -> tuple[float | None, int | None, int | None]:
    """Duration (mvhd) and the largest track size (tkhd) from an ISO-BMFF file."""
    moov = _find_box(data, 0, len(data), b"moov")
    if moov is None:
        return None, None, None
    start, end = moov
    seconds = None
    mvhd = _find_box(data, start, end, b"mvhd")
    if mvhd is not None:
        seconds = _mvhd_seconds(data[mvhd[0] : mvhd[1]])
    width = height = None
    offset = start
    while (trak := _find_box(data, offset, end, b"trak")) is not None:
        tkhd = _find_box(data, trak[0], trak[1], b"tkhd")
        if tkhd is not None and tkhd[1] - tkhd[0] >= 8:
            body = data[tkhd[0] : tkhd[1]]
            w, h = struct.unpack(">II", body[-8:])
            w, h = w >> 16, h >> 16  # 16.16 fixed point
            if w and h and (width is None or w * h > width * (height or 0)):
                width, height = w, h
        offset = trak[1]
    return seconds, width, height


def _mvhd_seconds(body: bytes) -> float | None:
    if len(body) < 20:
        return None
    version = body[0]
    if version == 1 and len(body) >= 32:
        timescale, duration = struct.unpack(">IQ", body[20:32])
    else:
        timescale, duration = struct.unpack(">II", body[12:20])
    return duration / timescale if timescale else None


def _find_box(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """The (body start, body end) of the first box of ``kind`` among start..end's children;
    a box cut short is read as far as it goes (members' files are judged by PixVerse)."""
    for box in boxes(data, start, end):
        if box.kind == kind:
            return box.body, min(box.end, end)
    return None


def _suffix(filename: str) -> str:
    dot = filename.rfind(".")
    return filename[dot:].lower() if dot >= 0 else ""


def _renamed(filename: str, fmt: str) -> str:
    stem = filename[: filename.rfind(".")] if "." in filename else filename
    extension = {"jpeg": "jpg"}.get(fmt, fmt)
    return f"{stem or 'input'}.{extension}"
