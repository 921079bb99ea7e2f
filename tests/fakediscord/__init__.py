"""A fake Discord (REST v10 + gateway) on 127.0.0.1 for driving the real discord.py in tests.

async with FakeDiscord() as fake:
    guild = fake.add_guild("test")
    channel = fake.add_channel(guild, "general")
    with fake.patch_discord():
        ...  # bot.login(fake.bot_token); bot.connect(); fake.invoke("video", ...)

`FakeDiscord(enforce_rate_limits=True)` enforces Discord's per-route and global rate limits
(`fake.limiter` holds them, `fake.rate_limited` the refused requests); `fake.inject_fault(...)`
answers a route with a 5xx or drops its connection; `fake.most_edits_in_window()` measures how
fast a bot edits messages on one channel.
"""

from __future__ import annotations

from . import permissions
from .errors import APIError, FakeDiscordError, FakeDiscordTimeout
from .faults import FaultRule
from .interactions import InteractionHandle
from .models import (
    EPHEMERAL,
    LOADING,
    Callback,
    Channel,
    Guild,
    Member,
    Message,
    MessageSnapshot,
    MiB,
    RequestRecord,
    Role,
    StoredFile,
    User,
)
from .process import child_env
from .ratelimits import Limit, RateLimiter
from .server import FakeDiscord, RateLimitRule

__all__ = [
    "EPHEMERAL",
    "LOADING",
    "APIError",
    "Callback",
    "Channel",
    "FakeDiscord",
    "FakeDiscordError",
    "FakeDiscordTimeout",
    "FaultRule",
    "Guild",
    "InteractionHandle",
    "Limit",
    "Member",
    "Message",
    "MessageSnapshot",
    "MiB",
    "RateLimitRule",
    "RateLimiter",
    "RequestRecord",
    "Role",
    "StoredFile",
    "User",
    "child_env",
    "permissions",
]
