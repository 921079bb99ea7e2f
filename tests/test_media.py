"""Input files are judged by their bytes, not their names."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from bot.jobs.media import (
    MediaRejected,
    check_declared_image,
    check_declared_video,
    prepare_image,
    prepare_video,
)


def image_bytes(width: int, height: int, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, format=fmt)
    return out.getvalue()


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def mp4_bytes(seconds: float, width: int, height: int) -> bytes:
    timescale = 1000
    mvhd = bytes(4) + struct.pack(">IIII", 0, 0, timescale, int(seconds * timescale)) + bytes(80)
    tkhd = bytes(4) + bytes(72) + struct.pack(">II", width << 16, height << 16)
    moov = box(b"moov", box(b"mvhd", mvhd) + box(b"trak", box(b"tkhd", tkhd)))
    return box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2") + moov + box(b"mdat", b"\x00" * 16)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_each_supported_format_is_accepted_as_is(fmt):
    data = image_bytes(640, 360, fmt)
    prepared = prepare_image(data, "cat.bin")
    assert prepared.data == data
    assert (prepared.width, prepared.height) == (640, 360)
    assert (
        prepared.content_type
        == {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
    )
    assert prepared.scaled_from is None


def test_text_named_png_is_refused_by_its_bytes():
    with pytest.raises(MediaRejected, match="whatever its name says"):
        prepare_image(b"this is not a picture at all", "cat.png")


def test_gif_is_refused():
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, format="GIF")
    with pytest.raises(MediaRejected, match="PNG, JPEG or WebP"):
        prepare_image(out.getvalue(), "anim.gif")


def test_truncated_png_is_refused():
    data = image_bytes(300, 300)
    with pytest.raises(MediaRejected):
        prepare_image(data[: len(data) // 2], "broken.png")


def test_over_50_megapixels_is_refused_before_decoding():
    # A PNG header claiming 8000×8000 px: refused from the header, nothing decoded.
    data = image_bytes(8000, 8000)
    with pytest.raises(MediaRejected, match="50 megapixels"):
        prepare_image(data, "huge.png")


def test_side_over_4000_is_scaled_down_keeping_aspect():
    data = image_bytes(6000, 3000, "JPEG")
    prepared = prepare_image(data, "wide.jpeg")
    assert (prepared.width, prepared.height) == (4000, 2000)
    assert prepared.scaled_from == (6000, 3000)
    with Image.open(io.BytesIO(prepared.data)) as image:
        assert image.size == (4000, 2000)
        assert image.format == "JPEG"


def test_declared_metadata_is_checked_before_download():
    with pytest.raises(MediaRejected, match="not an image"):
        check_declared_image("notes.txt", "text/plain", 10)
    with pytest.raises(MediaRejected, match=r"under 20\.0 MB"):
        check_declared_image("big.png", "image/png", 25 * 1024 * 1024)
    check_declared_image("ok.png", "image/png", 1000)
    with pytest.raises(MediaRejected, match="not a video"):
        check_declared_video("clip.png", "image/png", 10)
    with pytest.raises(MediaRejected, match=r"50\.0 MB"):
        check_declared_video("clip.mp4", "video/mp4", 60 * 1024 * 1024)


def test_mp4_header_limits():
    ok = prepare_video(mp4_bytes(5, 1280, 720), "clip.mp4")
    assert ok.content_type == "video/mp4"
    assert (ok.width, ok.height, ok.seconds) == (1280, 720, 5)
    with pytest.raises(MediaRejected, match="lasts 45 s"):
        prepare_video(mp4_bytes(45, 1280, 720), "long.mp4")
    with pytest.raises(MediaRejected, match="3840×2160"):
        prepare_video(mp4_bytes(5, 3840, 2160), "4k.mp4")


def test_video_signature_is_required():
    with pytest.raises(MediaRejected, match="whatever its name says"):
        prepare_video(image_bytes(10, 10), "clip.mp4")
    webm = prepare_video(b"\x1a\x45\xdf\xa3" + bytes(64), "clip.webm")
    assert webm.content_type == "video/webm"


def noisy_image(fmt: str) -> bytes:
    """Noise does not compress away: cutting the file loses real pixel data."""
    out = io.BytesIO()
    Image.effect_noise((400, 300), 80).convert("RGB").save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "cut.jpg"), ("PNG", "cut.png")])
def test_image_cut_short_is_refused_though_its_header_is_whole(fmt, name):
    # A JPEG's header opens fine and Pillow's verify() does not look at JPEG data at all:
    # only decoding every pixel shows the picture is missing its second half.
    data = noisy_image(fmt)
    with pytest.raises(MediaRejected, match="damaged"):
        prepare_image(data[: len(data) * 2 // 3], name)


def test_empty_file_is_refused_with_its_own_reason():
    with pytest.raises(MediaRejected, match=r"empty \(0 bytes\)"):
        check_declared_image("cat.png", "image/png", 0)
    with pytest.raises(MediaRejected, match=r"empty \(0 bytes\)"):
        prepare_image(b"", "cat.png")


def animated_bytes(fmt: str, frames: int = 3) -> bytes:
    pictures = [Image.new("RGB", (32, 24), (80 * n, 20, 20)) for n in range(frames)]
    out = io.BytesIO()
    pictures[0].save(out, format=fmt, save_all=True, append_images=pictures[1:], duration=100)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "shown"), [("WEBP", "animated WebP"), ("PNG", "animated PNG")])
def test_animated_webp_and_png_are_refused_not_flattened(fmt, shown):
    with pytest.raises(MediaRejected, match=f"{shown} \\(3 frames\\).*attach a single frame"):
        prepare_image(animated_bytes(fmt), "moving.img")


def test_single_frame_webp_saved_as_animation_is_a_still():
    prepared = prepare_image(animated_bytes("WEBP", frames=1), "still.webp")
    assert (prepared.width, prepared.height) == (32, 24)


def test_animated_gif_named_png_is_refused_by_its_bytes():
    with pytest.raises(MediaRejected, match="whatever its name says"):
        prepare_image(animated_bytes("GIF"), "dance.png")


def test_declared_decompression_bomb_is_refused_before_decoding():
    # 2 GB of pixels declared by a few hundred bytes: refused from the header.
    header = struct.pack(">IIBBBBB", 50_000, 40_000, 8, 6, 0, 0, 0)
    ihdr = struct.pack(">I", len(header)) + b"IHDR" + header
    ihdr += struct.pack(">I", zlib.crc32(b"IHDR" + header))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    with pytest.raises(MediaRejected, match="too many pixels"):
        prepare_image(b"\x89PNG\r\n\x1a\n" + ihdr + iend, "bomb.png")
