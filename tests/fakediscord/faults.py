"""Faults injected per route, for tests of a bot's delivery path (`FakeDiscord.inject_fault`).

"status" answers a 5xx with a Discord-shaped JSON body; "drop" aborts the TCP connection without
an answer. With `after_apply` the request is served first (the message really is edited) and only
then the answer is replaced or lost, as when Discord fails on the way back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal

FaultKind = Literal["status", "drop"]
FAULT_KINDS: tuple[FaultKind, ...] = ("status", "drop")


@dataclass
class FaultRule:
    method: str
    pattern: re.Pattern[str]
    kind: FaultKind
    remaining: int
    status: int = 503
    after_apply: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and self.method in ("*", method)
            and self.pattern.search(path) is not None
        )

    @property
    def message(self) -> str:
        return f"{self.status}: {HTTPStatus(self.status).phrase}"
