"""The wait between a member's jobs (``COMMAND_COOLDOWN_SECONDS``): a generation command or
result button within that many seconds of the member's last *accepted* job in the server is
refused before any work.

It is read from the database — the ``created_at`` of the member's newest job, the moment it
was accepted — so it holds across restarts (and processes), and a refusal writes nothing, so
it never restarts the wait. ``JobStore`` checks it in the precheck (before a download) and
again in the accepting transaction, so two commands sent together cannot both pass.
"""

from __future__ import annotations

import math
import sqlite3

from bot.refusal import Refusal


class CoolingDown(Refusal):
    """The member's last accepted job is too recent."""

    def __init__(self, wait: float, cooldown: float) -> None:
        self.wait = wait
        self.cooldown = cooldown
        # Whole seconds, rounded up: "wait 0 s" would be refused again.
        seconds = max(1, math.ceil(wait))
        every = f"{cooldown:g}"
        super().__init__(
            f"Slow down: wait {seconds} s before starting another video (one every {every} s "
            "per member). Nothing was charged."
        )


def remaining(
    conn: sqlite3.Connection, guild_id: int, user_id: int, cooldown: float, now: float
) -> float:
    """Seconds the member must still wait in this server (0 when they may start a job)."""
    if cooldown <= 0:
        return 0.0
    # The newest job by id through ix_jobs_member (guild_id, user_id, id): one index step.
    row = conn.execute(
        "SELECT created_at FROM jobs WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT 1",
        (guild_id, user_id),
    ).fetchone()
    if row is None:
        return 0.0
    return max(0.0, float(row[0]) + cooldown - now)


def check(
    conn: sqlite3.Connection, guild_id: int, user_id: int, cooldown: float, now: float
) -> None:
    """Raise CoolingDown while the member's last accepted job is within ``cooldown`` s."""
    wait = remaining(conn, guild_id, user_id, cooldown, now)
    if wait > 0:
        raise CoolingDown(wait, cooldown)
