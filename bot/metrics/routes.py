"""Discord's HTTP requests as metric labels: the method and a route template.

A request's path carries snowflake ids (channels, messages, interactions) and, on the
interaction and webhook routes, a token that lets anyone edit the bot's messages for 15
minutes (docs/discord.md). Neither may reach a label: ids would make a series per message,
and a label is read by whoever reads the metrics. So every path is reduced to a template
before it is counted: ids become ``{id}``, the segment after ``webhooks/{id}`` or
``interactions/{id}`` becomes ``{token}``, and any other segment that is not a plain
lowercase word (a file name, an emoji, a code) becomes ``{param}``. The query string is
dropped. What is left is Discord's own route vocabulary: a few dozen labels at most.
"""

from __future__ import annotations

import re

_API_PREFIX = re.compile(r"^/api(?:/v\d+)?(?=/|$)")
_SNOWFLAKE = re.compile(r"^\d+$")
# Discord's literal route segments: "channels", "messages", "@original", "bulk-delete".
_WORD = re.compile(r"^@?[a-z][a-z0-9_-]{0,39}$")
_TOKEN_AFTER = frozenset({"webhooks", "interactions"})
MAX_SEGMENTS = 8  # deeper paths are cut: no Discord route the bot uses is that deep

GATEWAY = "gateway"
RATE_LIMIT_SCOPES = frozenset({"user", "global", "shared"})


def route_template(path: str) -> str:
    """``/api/v10/webhooks/123/aW50…/messages/@original`` →
    ``/webhooks/{id}/{token}/messages/@original``."""
    path = _API_PREFIX.sub("", path, count=1) or "/"
    parts = path.split("/")
    cut = len(parts) > MAX_SEGMENTS + 1
    template: list[str] = []
    for index, part in enumerate(parts[: MAX_SEGMENTS + 1]):
        if not part:
            template.append(part)
        elif _SNOWFLAKE.match(part):
            template.append("{id}")
        elif index >= 2 and parts[index - 2] in _TOKEN_AFTER and _SNOWFLAKE.match(parts[index - 1]):
            template.append("{token}")
        elif _WORD.match(part):
            template.append(part)
        else:
            template.append("{param}")
    if cut:
        template.append("…")
    return "/".join(template)


def rate_limit_scope(value: str | None) -> str:
    """Discord's ``X-RateLimit-Scope`` (user, global, shared), or "unknown": a 429 from
    Cloudflare has none, and a label never takes a value the bot did not expect."""
    value = (value or "").strip().lower()
    return value if value in RATE_LIMIT_SCOPES else "unknown"
