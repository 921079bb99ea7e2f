"""Where PixVerse charged other than the catalogue's price (``price_differences``).

A job's reservation is the catalogue's price; PixVerse reports what it actually took
(``credits`` in the result). The ledger commits the reported amount (``ledger.commit``) and
this table counts each difference per model, quality, duration and variant, so /status can
tell admins which prices to correct. Written in the transaction that finishes the job, so a
job is counted once, across restarts.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from bot.store.models import JobParams


@dataclass(frozen=True, slots=True)
class PriceDifference:
    """One combination PixVerse charged differently from the catalogue."""

    model: str
    quality: str
    duration: int
    variant: str  # "" or what else set the price apart (e.g. "fast" motion)
    reserved: int  # the catalogue's price, reserved at acceptance
    charged: int  # what PixVerse reported
    jobs: int
    last_at: float
    last_job_id: int | None


def variant_of(params: JobParams) -> str:
    """What besides model, quality and duration sets the price: fast motion, audio, or a
    Sound job (the sound effect alone)."""
    if params.add_sound:
        return "sound effect"
    parts: list[str] = [] if params.motion.value == "normal" else [params.motion.value]
    if params.audio:
        parts.append("audio")
    return " ".join(parts)


def record(
    conn: sqlite3.Connection,
    params: JobParams,
    *,
    reserved: int,
    charged: int,
    job_id: int,
    now: float,
) -> None:
    """Count one job charged ``charged`` credits where ``reserved`` were reserved."""
    conn.execute(
        "INSERT INTO price_differences (model, quality, duration, variant, reserved, charged,"
        " jobs, first_at, last_at, last_job_id) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
        " ON CONFLICT (model, quality, duration, variant, reserved, charged) DO UPDATE"
        " SET jobs = price_differences.jobs + 1, last_at = excluded.last_at,"
        " last_job_id = excluded.last_job_id",
        (
            params.model,
            params.quality.value,
            params.duration,
            variant_of(params),
            reserved,
            charged,
            now,
            now,
            job_id,
        ),
    )


def recent(conn: sqlite3.Connection, since: float, *, limit: int = 10) -> list[PriceDifference]:
    """The differences seen since ``since``, most jobs first."""
    rows = conn.execute(
        "SELECT model, quality, duration, variant, reserved, charged, jobs, last_at, last_job_id"
        " FROM price_differences WHERE last_at >= ?"
        " ORDER BY jobs DESC, last_at DESC LIMIT ?",
        (since, limit),
    ).fetchall()
    return [
        PriceDifference(
            model=str(r[0]),
            quality=str(r[1]),
            duration=int(r[2]),
            variant=str(r[3]),
            reserved=int(r[4]),
            charged=int(r[5]),
            jobs=int(r[6]),
            last_at=float(r[7]),
            last_job_id=None if r[8] is None else int(r[8]),
        )
        for r in rows
    ]
