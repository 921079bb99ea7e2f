"""Discord's rate limits, enforced when `FakeDiscord(enforce_rate_limits=True)`.

Buckets are keyed as Discord keys them: a route (or a group of routes that share a limit) plus
its major parameter (the channel, the guild, or the webhook id and token). On top of the buckets,
every request authorized with the bot token counts against the global limit, except interaction
webhooks and callbacks, which Discord exempts.

Each bucket is a sliding log rather than Discord's fixed window: a bot that obeys the headers then
never has more than `requests` requests in any `per`-second span, which is the invariant benchmarks
measure with `FakeDiscord.most_edits_in_window`. discord.py treats `Reset-After` (and a 429's
`retry_after`) as the moment the bucket is full again: it then sends up to the limit at once, and
every request that waited on a global 429 retries together. So both are the time until the log
is empty, not until its oldest entry leaves: the earlier answer would be true for one request and
a 429 storm for the rest.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Scope = Literal["user", "global"]

CHANNEL_MESSAGES = "channel-messages"
INTERACTION_WEBHOOK = "interaction-webhook"

_CHANNEL_MESSAGE_ROUTES = {
    ("POST", "/channels/{channel_id}/messages"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
}
_INTERACTION_WEBHOOK_ROUTES = {
    ("POST", "/webhooks/{application_id}/{token}"),
    ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}"),
}
_UNLIMITED_ROUTES = {("POST", "/interactions/{interaction_id}/{token}/callback")}
# Discord exempts interaction traffic from the bot's global limit: it is bound to the token.
_GLOBAL_EXEMPT_PREFIXES = ("/webhooks/", "/interactions/")


class Limit(NamedTuple):
    """At most `requests` requests in any `per`-second span."""

    requests: int
    per: float


@dataclass(frozen=True)
class Verdict:
    """What enforcement decided for one request: allowed or not, and the headers to send."""

    allowed: bool
    headers: dict[str, str]
    scope: Scope | None = None
    retry_after: float = 0.0
    bucket: str | None = None


@dataclass
class _Log:
    times: deque[float] = field(default_factory=deque)

    def prune(self, now: float, per: float) -> None:
        # An entry exactly `per` old has left the span (now - per, now].
        while self.times and self.times[0] <= now - per:
            self.times.popleft()


def bucket_hash(name: str) -> str:
    """A stable, opaque hash per route template (or group of routes sharing a limit)."""
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:16]


def _ceil_ms(seconds: float) -> float:
    # Rounding down would let a client that sleeps exactly this long arrive a hair early.
    return math.ceil(max(seconds, 0.0) * 1000) / 1000


def _reset_at(wall: float, after: float) -> str:
    return f"{math.ceil((wall + after) * 1000) / 1000:.3f}"


class RateLimiter:
    """Per-bucket and global sliding logs; the limits are attributes so a test can change them
    while the fake runs."""

    def __init__(
        self,
        *,
        channel_messages: Limit,
        interaction_webhooks: Limit,
        routes: Limit,
        global_limit: Limit,
    ) -> None:
        self.channel_messages = Limit(*channel_messages)
        self.interaction_webhooks = Limit(*interaction_webhooks)
        self.routes = Limit(*routes)
        self.global_limit = Limit(*global_limit)
        self._buckets: dict[tuple[str, str], _Log] = {}
        self._global = _Log()

    def reset(self) -> None:
        """Forget every request seen so far (all buckets full again)."""
        self._buckets.clear()
        self._global = _Log()

    def classify(
        self, method: str, template: str, params: dict[str, str]
    ) -> tuple[str, str, Limit] | None:
        """(bucket name, major parameter, limit) of a route, or None when it is not limited."""
        key = (method, template)
        if key in _UNLIMITED_ROUTES:
            return None
        if key in _CHANNEL_MESSAGE_ROUTES:
            name, limit = CHANNEL_MESSAGES, self.channel_messages
        elif key in _INTERACTION_WEBHOOK_ROUTES:
            name, limit = INTERACTION_WEBHOOK, self.interaction_webhooks
        else:
            name, limit = f"{method} {template}", self.routes
        if "channel_id" in params:
            major = params["channel_id"]
        elif "token" in params:
            major = f"{params.get('application_id', '')}/{params['token']}"
        elif "guild_id" in params:
            major = params["guild_id"]
        else:
            major = ""
        return name, major, limit

    @staticmethod
    def under_global(path: str, *, bot_authorized: bool) -> bool:
        return bot_authorized and not path.startswith(_GLOBAL_EXEMPT_PREFIXES)

    def check(
        self,
        method: str,
        path: str,
        template: str | None,
        params: dict[str, str],
        *,
        bot_authorized: bool,
        now: float,
        wall: float,
    ) -> Verdict:
        """Count the request (`now` is monotonic, `wall` is unix time for `X-RateLimit-Reset`)
        and decide. A request refused by the global limit uses no slot of its route's bucket."""
        if self.under_global(path, bot_authorized=bot_authorized):
            limit = self.global_limit
            self._global.prune(now, limit.per)
            if len(self._global.times) >= limit.requests:
                retry = _ceil_ms(self._global.times[-1] + limit.per - now)
                return Verdict(
                    False,
                    {
                        "Retry-After": str(math.ceil(retry)),
                        "X-RateLimit-Global": "true",
                        "X-RateLimit-Scope": "global",
                    },
                    scope="global",
                    retry_after=retry,
                )
            self._global.times.append(now)
        classified = self.classify(method, template, params) if template is not None else None
        if classified is None:
            return Verdict(True, {})
        name, major, limit = classified
        bucket = bucket_hash(name)
        log = self._buckets.setdefault((name, major), _Log())
        log.prune(now, limit.per)
        if len(log.times) >= limit.requests:
            retry = _ceil_ms(log.times[-1] + limit.per - now)
            return Verdict(
                False,
                {
                    "Retry-After": str(math.ceil(retry)),
                    "X-RateLimit-Limit": str(limit.requests),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": _reset_at(wall, retry),
                    "X-RateLimit-Reset-After": f"{retry:.3f}",
                    "X-RateLimit-Bucket": bucket,
                    "X-RateLimit-Scope": "user",
                },
                scope="user",
                retry_after=retry,
                bucket=bucket,
            )
        log.times.append(now)
        reset_after = _ceil_ms(limit.per)  # until this request, the newest, leaves the log
        return Verdict(
            True,
            {
                "X-RateLimit-Limit": str(limit.requests),
                "X-RateLimit-Remaining": str(limit.requests - len(log.times)),
                "X-RateLimit-Reset": _reset_at(wall, reset_after),
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": bucket,
            },
            bucket=bucket,
        )
