"""What the simulator knows about files: sniffing uploads by their bytes, and the sample video.

Uploads are judged by magic bytes, never by file name or declared type, and images are
opened lazily with Pillow (header only) so a huge image is measured, never decoded.
"""

from __future__ import annotations

import io
import math
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
# The sound of a video made with audio: AAC-LC, mono, 44.1 kHz, every frame the smallest
# valid one (a single channel element without spectral data: silence; the frame hls.js
# inserts to fill audio gaps). A real `soun` track with an `mp4a` sample entry, a few hundred
# bytes.
_AAC_RATE = 44_100
_AAC_FRAME_SAMPLES = 1024
_AAC_SILENT_FRAME = bytes([0x00, 0xC8, 0x00, 0x80, 0x23, 0x80])
# AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1): object type 2 (AAC LC), sampling frequency
# index 4 (44100 Hz), channel configuration 1: 00010 0100 0001 000.
_AAC_CONFIG = bytes([0x12, 0x08])
# The identity matrix of tkhd and mvhd (16.16 and 2.30 fixed point).
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


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


@cache
def sample_video_with_audio() -> bytes:
    """The sample clip with a sound track, served for jobs that asked for audio."""
    return with_silent_audio(sample_video())


def served_sample(audio: bool) -> bytes:
    return sample_video_with_audio() if audio else sample_video()


def with_silent_audio(video: bytes) -> bytes:
    """``video`` (an MP4 with 32-bit box sizes, as the sample is) with a silent AAC track
    added (ISO/IEC 14496-12 and 14496-14): a `trak` appended to `moov`, its samples in a
    new `mdat` at the end, and every chunk offset past `moov` moved by its growth."""
    moov = next(box for box in _children(video, 0, len(video)) if box[0] == b"moov")
    _, moov_start, moov_body, moov_end = moov
    mvhd = _child(video, moov_body, moov_end, b"mvhd")
    version = video[mvhd[2]]
    timescale, duration = (
        struct.unpack_from(">II", video, mvhd[2] + 12)
        if version == 0
        else struct.unpack_from(">IQ", video, mvhd[2] + 20)
    )
    (track_id,) = struct.unpack_from(">I", video, mvhd[3] - 4)  # next_track_ID, last field
    frames = max(1, math.floor(duration / timescale * _AAC_RATE / _AAC_FRAME_SAMPLES))
    movie_duration = frames * _AAC_FRAME_SAMPLES * timescale // _AAC_RATE

    body = bytearray(video[moov_body:moov_end])
    struct.pack_into(">I", body, mvhd[3] - 4 - moov_body, track_id + 1)
    placeholder = _sound_trak(track_id, frames, movie_duration, 0)
    growth = len(placeholder)
    for trak in _children(video, moov_body, moov_end):
        if trak[0] != b"trak":
            continue
        for stco in _descend(video, trak, (b"mdia", b"minf", b"stbl", b"stco")):
            (count,) = struct.unpack_from(">I", video, stco[2] + 4)
            for index in range(count):
                at = stco[2] + 8 + 4 * index
                (offset,) = struct.unpack_from(">I", video, at)
                if offset >= moov_end:  # data after moov moves with its growth
                    struct.pack_into(">I", body, at - moov_body, offset + growth)
    data_offset = len(video) + growth + _BOX_HEADER.size
    body += _sound_trak(track_id, frames, movie_duration, data_offset)
    new_moov = _box(b"moov", bytes(body))
    audio = _box(b"mdat", _AAC_SILENT_FRAME * frames)
    return video[:moov_start] + new_moov + video[moov_end:] + audio


def _sound_trak(track_id: int, frames: int, movie_duration: int, data_offset: int) -> bytes:
    frame = len(_AAC_SILENT_FRAME)
    samples = frames * _AAC_FRAME_SAMPLES
    bitrate = math.ceil(frame * 8 * _AAC_RATE / _AAC_FRAME_SAMPLES)
    tkhd = _full(
        b"tkhd",
        0,
        0x000003,  # enabled, in the movie
        struct.pack(">IIIII", 0, 0, track_id, 0, movie_duration)
        + bytes(8)
        + struct.pack(">hhhH", 0, 1, 0x0100, 0)  # layer, alternate group, volume 1.0
        + _MATRIX
        + struct.pack(">II", 0, 0),  # no width or height: sound
    )
    language = (21 << 10) | (14 << 5) | 4  # "und", 5 bits a letter
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, _AAC_RATE, samples, language, 0))
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I4s", 0, b"soun") + bytes(12) + b"SoundHandler\0")
    smhd = _full(b"smhd", 0, 0, struct.pack(">hH", 0, 0))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1) + _full(b"url ", 0, 1, b"")))
    decoder_info = bytes([0x05, len(_AAC_CONFIG)]) + _AAC_CONFIG
    decoder_body = (
        bytes([0x40, 0x15])  # MPEG-4 audio; audio stream, upstream 0, reserved 1
        + bytes(3)  # bufferSizeDB
        + struct.pack(">II", bitrate, bitrate)
        + decoder_info
    )
    decoder = bytes([0x04, len(decoder_body)]) + decoder_body
    sl_config = bytes([0x06, 1, 0x02])  # predefined: MP4 files
    es_body = struct.pack(">HB", track_id, 0) + decoder + sl_config
    esds = _full(b"esds", 0, 0, bytes([0x03, len(es_body)]) + es_body)
    mp4a = _box(
        b"mp4a",
        bytes(6)
        + struct.pack(">H", 1)  # data reference index
        + bytes(8)
        + struct.pack(">HHHHI", 1, 16, 0, 0, _AAC_RATE << 16)  # mono, 16 bit, rate 16.16
        + esds,
    )
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1) + mp4a)
        + _full(b"stts", 0, 0, struct.pack(">III", 1, frames, _AAC_FRAME_SAMPLES))
        + _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1))
        + _full(b"stsz", 0, 0, struct.pack(">II", frame, frames))
        + _full(b"stco", 0, 0, struct.pack(">II", 1, data_offset)),
    )
    minf = _box(b"minf", smhd + dinf + stbl)
    return _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + minf))


def _box(kind: bytes, payload: bytes) -> bytes:
    return _BOX_HEADER.pack(_BOX_HEADER.size + len(payload), kind) + payload


def _full(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags) + payload)


_Span = tuple[bytes, int, int, int]  # kind, start, body, end


def _children(data: bytes, start: int, end: int) -> list[_Span]:
    found: list[_Span] = []
    offset = start
    while offset + _BOX_HEADER.size <= end:
        size, kind = _BOX_HEADER.unpack_from(data, offset)
        if size < _BOX_HEADER.size or offset + size > end:
            break  # 64-bit or open-ended sizes: the sample has none
        found.append((kind, offset, offset + _BOX_HEADER.size, offset + size))
        offset += size
    return found


def _child(data: bytes, start: int, end: int, kind: bytes) -> _Span:
    return next(box for box in _children(data, start, end) if box[0] == kind)


def _descend(data: bytes, box: _Span, path: tuple[bytes, ...]) -> list[_Span]:
    found = [box]
    for kind in path:
        found = [
            c for parent in found for c in _children(data, parent[2], parent[3]) if c[0] == kind
        ]
    return found


def free_box_header(padding: int) -> bytes:
    """The header of a top-level `free` box of ``padding`` bytes in all (ISO/IEC 14496-12):
    players skip it, so a padded file stays playable."""
    if padding < _BOX_HEADER.size:
        raise ValueError("a free box needs at least 8 bytes")
    if padding <= 0xFFFFFFFF:
        return _BOX_HEADER.pack(padding, b"free")
    return _LARGE_BOX_HEADER.pack(1, b"free", padding)  # size 1 = 64-bit size follows


def served_video_size(video_size_bytes: int | None, *, audio: bool = False) -> int:
    """The size of the file served for ``video_size_bytes``: the sample, or padded to it
    (never smaller than the sample plus the smallest box)."""
    base = len(served_sample(audio))
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
