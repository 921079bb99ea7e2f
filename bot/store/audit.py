"""The admin audit log: who changed what, from what, to what, and when."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from bot.store.db import Database
from bot.store.models import AuditEntry


def write_audit(
    conn: sqlite3.Connection,
    *,
    guild_id: int,
    actor_id: int,
    action: str,
    target_id: int | None,
    before: dict[str, Any],
    after: dict[str, Any],
    now: float,
    reason: str | None = None,
) -> None:
    """Append one row; call it inside the transaction that makes the change."""
    conn.execute(
        "INSERT INTO audit_log (guild_id, actor_id, action, target_id, before_json,"
        " after_json, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            guild_id,
            actor_id,
            action,
            target_id,
            json.dumps(before, sort_keys=True),
            json.dumps(after, sort_keys=True),
            reason,
            now,
        ),
    )


async def read_audit(
    db: Database, guild_id: int, *, user_id: int | None = None, limit: int = 20
) -> list[AuditEntry]:
    """Most recent first; with ``user_id``, the actions on that user or by that user."""
    if user_id is None:
        rows = await db.fetch_all(
            "SELECT * FROM audit_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, limit),
        )
    else:
        # Two index range scans (target, actor) merged, instead of an OR that scans the guild.
        rows = await db.fetch_all(
            "SELECT * FROM audit_log WHERE id IN ("
            " SELECT id FROM audit_log WHERE guild_id = :g AND target_id = :u"
            " UNION SELECT id FROM audit_log WHERE guild_id = :g AND actor_id = :u)"
            " ORDER BY id DESC LIMIT :limit",
            {"g": guild_id, "u": user_id, "limit": limit},
        )
    return [AuditEntry.from_row(row) for row in rows]
