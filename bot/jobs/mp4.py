"""ISO-BMFF (MP4/MOV) boxes: walking them, telling a whole file from a cut one, and naming
its tracks.

A box is a 32-bit big-endian size (header included), a four-letter type, and, when the size
is 1, a 64-bit size after the type; size 0 means "to the end of the file" (ISO/IEC 14496-12,
4.2). ``bot.jobs.media`` reads members' uploads tolerantly through ``boxes``; ``problem``
is strict, for PixVerse's results: a file cut short in transit still starts with good boxes,
and only the sizes that run past its end give it away.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

_HEADER = struct.Struct(">I4s")
_LARGE = struct.Struct(">Q")
REQUIRED = (b"ftyp", b"moov", b"mdat")


@dataclass(frozen=True, slots=True)
class Box:
    kind: bytes
    start: int  # offset of the header
    body: int  # offset of the body
    end: int  # offset just past the box, as its size declares (may pass the data's end)


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes one after another from ``start`` to ``end``, as their headers declare them.

    Stops at a header that does not fit or declares less than itself; a box whose declared
    end lies past ``end`` is still yielded (the caller decides whether to clamp or refuse),
    and is the last one.
    """
    end = len(data) if end is None else end
    offset = start
    while offset + _HEADER.size <= end:
        size, kind = _HEADER.unpack_from(data, offset)
        header = _HEADER.size
        if size == 1:
            if offset + 16 > end:
                return
            size = _LARGE.unpack_from(data, offset + 8)[0]
            header = 16
        elif size == 0:
            size = end - offset
        if size < header:
            return
        yield Box(kind, offset, offset + header, offset + size)
        if offset + size >= end:
            return
        offset += size


def problem(data: bytes) -> str | None:
    """Why ``data`` is not a whole MP4 file, or None when its top-level boxes are sound:
    they tile the file exactly (none runs past its end, no stray tail) and ftyp, moov and
    mdat are there, ftyp first."""
    if len(data) < _HEADER.size:
        return f"only {len(data)} bytes"
    found: list[bytes] = []
    covered = 0
    for box in boxes(data):
        if box.end > len(data):
            return (
                f"the {_name(box.kind)} box needs {box.end - box.start} bytes, "
                f"{len(data) - box.start} are there (the file was cut short)"
            )
        found.append(box.kind)
        covered = box.end
    if covered != len(data):
        return f"{len(data) - covered} bytes after the last box"
    if not found or found[0] != b"ftyp":
        return "it does not start with an ftyp box"
    missing = [_name(kind) for kind in REQUIRED if kind not in found]
    if missing:
        return f"no {' or '.join(missing)} box"
    return None


@dataclass(frozen=True, slots=True)
class Track:
    handler: str  # the media handler: "vide", "soun", …
    codec: str  # the first sample entry's format: "avc1", "mp4a", … ("" when none)


def find(data: bytes, path: tuple[bytes, ...], start: int = 0, end: int | None = None) -> list[Box]:
    """Every box at ``path`` below ``start``..``end``, e.g. ``(b"moov", b"trak")``; boxes
    running past the data are left out."""
    end = len(data) if end is None else min(end, len(data))
    found = [box for box in boxes(data, start, end) if box.kind == path[0] and box.end <= end]
    if len(path) == 1:
        return found
    return [inner for box in found for inner in find(data, path[1:], box.body, box.end)]


def tracks(data: bytes) -> list[Track]:
    """The file's tracks in order, each with its handler (``hdlr``: version and flags,
    pre_defined, then the type) and its codec (``stsd``: version and flags, entry count,
    then sample entries, each a box named for its format), ISO/IEC 14496-12, 8.4.3 and
    8.5.2."""
    found: list[Track] = []
    for trak in find(data, (b"moov", b"trak")):
        handler = codec = ""
        for hdlr in find(data, (b"mdia", b"hdlr"), trak.body, trak.end):
            handler = _name(data[hdlr.body + 8 : hdlr.body + 12])
        for stsd in find(data, (b"mdia", b"minf", b"stbl", b"stsd"), trak.body, trak.end):
            entry = next(boxes(data, stsd.body + 8, stsd.end), None)
            codec = _name(entry.kind) if entry is not None else ""
        found.append(Track(handler, codec))
    return found


def _name(kind: bytes) -> str:
    return kind.decode("latin-1")
