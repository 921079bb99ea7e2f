"""bot.jobs.mp4: a whole MP4 from one cut short, by its top-level boxes."""

from __future__ import annotations

import struct

import pytest

from bot.jobs.mp4 import Track, boxes, find, problem, tracks
from bot.simulator.media import free_box_header, sample_video, sample_video_with_audio


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


FTYP = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2")
MOOV = box(b"moov", box(b"mvhd", bytes(100)))
MDAT = box(b"mdat", bytes(500))
WHOLE = FTYP + MOOV + MDAT


def test_a_whole_file_has_no_problem() -> None:
    assert problem(WHOLE) is None
    assert problem(FTYP + MDAT + MOOV) is None  # moov at the end (no faststart) is fine


def test_the_simulators_sample_and_its_padded_form_are_whole() -> None:
    sample = sample_video()
    padded = sample + free_box_header(4096) + bytes(4096 - 8)
    assert problem(sample) is None
    assert problem(padded) is None


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9])
def test_a_file_cut_short_is_caught(keep: float) -> None:
    data = sample_video()
    cut = data[: int(len(data) * keep)]
    found = problem(cut)
    assert found is not None
    assert "cut short" in found or found.startswith("no ")


def test_a_box_whose_size_runs_past_the_end_is_named() -> None:
    assert (
        problem(WHOLE[:-1])
        == "the mdat box needs 508 bytes, 507 are there (the file was cut short)"
    )


def test_missing_boxes_are_named() -> None:
    assert problem(FTYP + MDAT) == "no moov box"
    assert problem(FTYP + MOOV) == "no mdat box"
    assert problem(MOOV + FTYP + MDAT) == "it does not start with an ftyp box"


def test_bytes_after_the_last_box_and_tiny_files_are_refused() -> None:
    assert problem(WHOLE + b"\x00\x00\x00") == "3 bytes after the last box"
    assert problem(b"") == "only 0 bytes"
    assert problem(b"<html>") == "only 6 bytes"
    assert problem(b"<html><body>Gateway Timeout</body></html>") is not None


def test_size_zero_means_to_the_end_and_64_bit_sizes_are_read() -> None:
    to_end = FTYP + MOOV + struct.pack(">I4s", 0, b"mdat") + bytes(300)
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 300) + bytes(300)
    assert problem(to_end) is None
    assert problem(FTYP + MOOV + large) is None
    assert problem(FTYP + MOOV + large[:-1]) is not None
    assert [b.kind for b in boxes(FTYP + MOOV + large)] == [b"ftyp", b"moov", b"mdat"]


def test_boxes_walks_children_within_a_range_as_declared() -> None:
    [moov] = [b for b in boxes(WHOLE) if b.kind == b"moov"]
    [mvhd] = list(boxes(WHOLE, moov.body, moov.end))
    assert (mvhd.kind, mvhd.end - mvhd.body) == (b"mvhd", 100)
    cut = list(boxes(WHOLE[:-10]))
    assert cut[-1].kind == b"mdat" and cut[-1].end > len(WHOLE) - 10  # declared, not clamped


def chunk_offsets(data: bytes) -> list[list[int]]:
    """Each track's chunk offsets (stco), in track order."""
    found = []
    for stco in find(data, (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stco")):
        (count,) = struct.unpack_from(">I", data, stco.body + 4)
        found.append(
            [struct.unpack_from(">I", data, stco.body + 8 + 4 * i)[0] for i in range(count)]
        )
    return found


def test_the_sample_has_one_video_track() -> None:
    assert tracks(sample_video()) == [Track("vide", "avc1")]


def test_the_sample_with_audio_adds_a_sound_track_and_keeps_the_video_whole() -> None:
    plain, sounding = sample_video(), sample_video_with_audio()
    assert problem(sounding) is None
    assert tracks(sounding) == [Track("vide", "avc1"), Track("soun", "mp4a")]
    assert len(sounding) - len(plain) < 1024  # small
    # The video's chunks moved with the grown moov box and still point at the same bytes.
    [before], [after, audio] = chunk_offsets(plain), chunk_offsets(sounding)
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        assert sounding[new : new + 64] == plain[old : old + 64]
    # The sound's one chunk is in the last mdat box.
    last = list(boxes(sounding))[-1]
    assert last.kind == b"mdat" and audio == [last.body]
