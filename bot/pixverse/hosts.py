"""Where the bot may download from: an allowlist checked before every download.

The bot fetches two kinds of URL that come from outside: a member's attachment (Discord's
CDN) and a finished video (PixVerse's CDN). Both URLs arrive in data other parties control
(a gateway payload, a PixVerse answer), so each is checked against the hosts it should be
on before anything is fetched: a URL elsewhere could make the bot fetch from the operator's
own network, or spend its bandwidth and memory on someone else's file.

Each allowlist is the service's documented hosts plus the host (and port) of the base URL
actually in use, so a simulator or a fake Discord on loopback works without a test-only
exception; plain http is accepted only when that base URL is itself plain http.

Discord-free (the Discord side passes in ``discord.http.Route.BASE``), so it lives with the
PixVerse client, the lowest room that downloads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from bot.pixverse.errors import PixVerseError

log = logging.getLogger(__name__)

# Discord serves attachments from these (discord-notes.md, "Messages and files").
DISCORD_ATTACHMENT_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
# PixVerse's result and upload URLs are on its CDN (docs/pixverse.md, "Output").
PIXVERSE_RESULT_HOSTS = frozenset({"media.pixverse.ai"})

_DEFAULT_PORTS = {"http": 80, "https": 443}


class DownloadRefused(PixVerseError):
    """The URL is not on an allowed host (or scheme); nothing was fetched.

    A PixVerseError so the runner treats it as any failed download of a result.
    """

    def __init__(self, host: str) -> None:
        super().__init__(f"download refused: {host or 'no host'} is not an allowed host")
        self.host = host


class DownloadFailed(Exception):
    """A download from an allowed host did not complete (status, size cap, timeout)."""


@dataclass(frozen=True, slots=True)
class HostAllowlist:
    """(host, port) pairs a URL may point at, and whether plain http is accepted."""

    origins: frozenset[tuple[str, int]]
    allow_http: bool = False

    @classmethod
    def for_base(cls, base_url: str, hosts: Iterable[str]) -> HostAllowlist:
        """``hosts`` on their default ports, plus the host and port of ``base_url``; http
        only when ``base_url`` is http (the simulator, a fake Discord)."""
        base = urlsplit(base_url)
        allow_http = base.scheme.lower() == "http"
        schemes = ("http", "https") if allow_http else ("https",)
        origins = {(host.lower(), _DEFAULT_PORTS[scheme]) for host in hosts for scheme in schemes}
        origin = _origin(base_url)
        if origin is not None:
            origins.add(origin)
        return cls(frozenset(origins), allow_http)

    def permits(self, url: str) -> bool:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            return False
        # user:password@ in a URL hides the real host from a careless reader; never needed.
        if parts.username is not None or parts.password is not None:
            return False
        origin = _origin(url)
        return origin is not None and origin in self.origins

    def check(self, url: str, what: str) -> None:
        """Raise DownloadRefused, logging the host only (a URL may carry a signature)."""
        if self.permits(url):
            return
        host = _host_of(url)
        log.warning("Refused to download %s from %s: not an allowed host", what, host or "?")
        raise DownloadRefused(host)


def pixverse_results(base_url: str) -> HostAllowlist:
    """Where finished videos may come from, for a client talking to ``base_url``."""
    return HostAllowlist.for_base(base_url, PIXVERSE_RESULT_HOSTS)


def discord_attachments(api_base: str) -> HostAllowlist:
    """Where members' attachments may come from, for discord.py's REST base ``api_base``
    (``discord.http.Route.BASE``)."""
    return HostAllowlist.for_base(api_base, DISCORD_ATTACHMENT_HOSTS)


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allowed: HostAllowlist,
    what: str,
    max_bytes: int,
    time_limit: float,
) -> bytes:
    """GET ``url`` if ``allowed`` permits it, reading at most ``max_bytes`` within
    ``time_limit`` seconds. Redirects are not followed: a redirect could leave the allowlist.

    Raises DownloadRefused (nothing fetched) or DownloadFailed.
    """
    allowed.check(url, what)
    try:
        async with session.get(
            url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=time_limit)
        ) as response:
            if response.status != 200:
                raise DownloadFailed(f"HTTP {response.status}")
            declared = response.content_length
            if declared is not None and declared > max_bytes:
                raise DownloadFailed(f"larger than {max_bytes} bytes")
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadFailed(f"larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except (TimeoutError, aiohttp.ClientError) as exc:
        # The type only: aiohttp's messages carry the URL, and an attachment URL is signed.
        raise DownloadFailed(type(exc).__name__) from None


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def _origin(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a malformed port or host
        return None
    if not host or port is None:
        return None
    return host, port
