"""PixVerse's webhook signature (docs/pixverse.md, "Webhooks"), shared by the bot's receiver
and the simulator's sender.

``Webhook-Signature`` = Base64(HMAC-SHA256(secret, "<ts>\\n<nonce>\\n<body as k=v&…>")).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode


def canonical(items: Iterable[tuple[str, Any]]) -> str:
    """The body's "url-encoded k=v&…" form, in the order given."""
    return urlencode([(key, _scalar(value)) for key, value in items])


def canonical_forms(body: dict[str, Any]) -> Iterable[str]:
    """The forms a receiver accepts: the docs do not say in which key order PixVerse encodes
    the body, so both the body's own order and sorted order are taken."""
    yield canonical(body.items())
    yield canonical(sorted(body.items()))


def sign(secret: str, timestamp: str, nonce: str, canonical_body: str) -> str:
    message = f"{timestamp}\n{nonce}\n{canonical_body}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(secret: str, timestamp: str, nonce: str, body: dict[str, Any], signature: str) -> bool:
    """Whether ``signature`` signs ``body`` with this timestamp and nonce, in any accepted
    canonical form. Constant-time per form; a header that is not ASCII never matches (and
    never raises: ``compare_digest`` refuses non-ASCII text)."""
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:
        return False
    matched = False
    for form in canonical_forms(body):
        # Every form is checked, matched or not, so timing does not tell which one matched.
        matched |= hmac.compare_digest(sign(secret, timestamp, nonce, form).encode(), given)
    return matched


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)
