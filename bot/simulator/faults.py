"""Fault injection: make the next N requests to one route misbehave.

Faults are queued per route and used up in order, one request at a time. They act before
authentication and validation, like a proxy or an overloaded server in front of PixVerse,
so a faulted request creates nothing and charges nothing -- except `drop`, `truncate`,
`garble` and `bare`, which serve the request and then spoil the answer (the cases the
trace-id replay exists for; see docs/pixverse.md, "Transport and trace ids"). On the
served files (`media`), `truncate` sends the first half of the video as a complete 200.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Route(StrEnum):
    """Names of the simulated routes, as used to target faults and in recorded requests."""

    BALANCE = "balance"
    IMAGE_UPLOAD = "image_upload"
    MEDIA_UPLOAD = "media_upload"
    IMG_GENERATE = "img_generate"
    TEXT_GENERATE = "text_generate"
    TRANSITION_GENERATE = "transition_generate"
    EXTEND_GENERATE = "extend_generate"
    SOUND_EFFECT_GENERATE = "sound_effect_generate"
    RESULT = "result"
    EFFECT_TEMPLATES = "effect_templates"
    MEDIA = "media"  # the served files (finished videos and uploads)


GENERATE_ROUTES = frozenset(
    {
        Route.IMG_GENERATE,
        Route.TEXT_GENERATE,
        Route.TRANSITION_GENERATE,
        Route.EXTEND_GENERATE,
        Route.SOUND_EFFECT_GENERATE,
    }
)


class FaultKind(StrEnum):
    HTTP_500 = "http_500"  # HTTP 500 with a plain-text body
    HTTP_429 = "http_429"  # HTTP 429 with a Retry-After header (`retry_after` seconds)
    HANG = "hang"  # sleep `seconds`, then answer normally (if the client still listens)
    # 500052 answers in its documented HTTP 500 form (docs/pixverse.md, "Envelope and errors").
    ERR_CODE = "err_code"  # HTTP 200 with ErrCode `err_code` (500052: the HTTP 500 form)
    DROP = "drop"  # serve the request, then close the connection without an answer
    HTTP_404 = "http_404"  # HTTP 404 with a plain-text body (a CDN file not there yet)
    # Serve the request, then answer HTTP 200 with its body spoilt:
    TRUNCATE = "truncate"  # the first half of the body, as a complete response
    GARBLE = "garble"  # the body's bytes scrambled: not JSON
    BARE = "bare"  # valid JSON without PixVerse's envelope


SERVED_FAULTS = frozenset({FaultKind.DROP, FaultKind.TRUNCATE, FaultKind.GARBLE, FaultKind.BARE})


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    retry_after: float = 1.0
    seconds: float = 5.0
    err_code: int = 500069
    message: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> tuple[Route, Fault, int]:
        """(route, fault, count) from a control-endpoint body; ValueError if malformed."""
        try:
            route = Route(data["route"])
            kind = FaultKind(data["kind"])
            count = int(data.get("count", 1))
            fault = cls(
                kind=kind,
                retry_after=float(data.get("retry_after", 1.0)),
                seconds=float(data.get("seconds", 5.0)),
                err_code=int(data.get("err_code", 500069)),
                message=data.get("message"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad fault: {exc!r}") from None
        if count < 1:
            raise ValueError("count must be at least 1")
        if fault.message is not None and not isinstance(fault.message, str):
            raise ValueError("message must be a string")
        return route, fault, count

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Pending:
    fault: Fault
    remaining: int


class FaultBook:
    """The queued faults of every route."""

    def __init__(self) -> None:
        self._queues: dict[Route, deque[_Pending]] = {}

    def add(self, route: Route, fault: Fault, count: int = 1) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._queues.setdefault(Route(route), deque()).append(_Pending(fault, count))

    def take(self, route: Route) -> Fault | None:
        """The fault for this request to ``route``, if any, using one of its count."""
        queue = self._queues.get(route)
        if not queue:
            return None
        pending = queue[0]
        pending.remaining -= 1
        if pending.remaining == 0:
            queue.popleft()
        return pending.fault

    def clear(self, route: Route | None = None) -> None:
        if route is None:
            self._queues.clear()
        else:
            self._queues.pop(route, None)

    def pending(self) -> list[dict[str, Any]]:
        return [
            {"route": route.value, "count": item.remaining, **item.fault.to_json()}
            for route, queue in self._queues.items()
            for item in queue
        ]
