"""Edit-rate measurements over the request log, for benchmarks of how a bot paces its edits.

Edits are grouped per channel and per route kind: "webhook" (PATCH of an interaction's message
through its token) and "channel" (PATCH /channels/{c}/messages/{m} with the bot token). A webhook
token is mapped to its channel through the interaction it belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Literal

from .models import RequestRecord

EditKind = Literal["webhook", "channel"]
EDIT_KINDS: tuple[EditKind, ...] = ("webhook", "channel")

_WEBHOOK_EDIT = re.compile(r"^/webhooks/[^/]+/(?P<token>[^/]+)/messages/[^/]+$")
_CHANNEL_EDIT = re.compile(r"^/channels/(?P<channel>\d+)/messages/[^/]+$")


def classify_edit(
    record: RequestRecord, channel_of_token: Callable[[str], int | None]
) -> tuple[EditKind, int] | None:
    """(kind, channel id) of a message edit, or None for any other request (or an edit through
    a token the fake never issued, which belongs to no channel)."""
    if record.method != "PATCH":
        return None
    match = _CHANNEL_EDIT.match(record.path)
    if match:
        return "channel", int(match["channel"])
    match = _WEBHOOK_EDIT.match(record.path)
    if match:
        channel_id = channel_of_token(match["token"])
        return ("webhook", channel_id) if channel_id is not None else None
    return None


def group_edits(
    records: Iterable[RequestRecord],
    channel_of_token: Callable[[str], int | None],
    *,
    successful_only: bool = False,
) -> dict[int, dict[EditKind, list[RequestRecord]]]:
    """Edits per channel id and kind, each list in time order."""
    grouped: dict[int, dict[EditKind, list[RequestRecord]]] = {}
    for record in records:
        if successful_only and not 200 <= record.status < 300:
            continue
        found = classify_edit(record, channel_of_token)
        if found is None:
            continue
        kind, channel_id = found
        grouped.setdefault(channel_id, {}).setdefault(kind, []).append(record)
    for kinds in grouped.values():
        for edits in kinds.values():
            edits.sort(key=lambda r: r.at)
    return grouped


def most_in_window(times: list[float], window: float) -> int:
    """The most entries of the sorted `times` inside one half-open span [t, t + window), by two
    pointers in O(n); half-open so that a limit of N per `window` reads as at most N."""
    best = 0
    start = 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
