"""A fake Discord (REST v10 + gateway) on 127.0.0.1 for driving the real discord.py in tests.

async with FakeDiscord() as fake:
    guild = fake.add_guild("test")
    channel = fake.add_channel(guild, "general")
    with fake.patch_discord():
        ...  # bot.login(fake.bot_token); bot.connect(); fake.invoke("video", ...)
"""

from __future__ import annotations

from . import permissions
from .errors import APIError, FakeDiscordError, FakeDiscordTimeout
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
    "Guild",
    "InteractionHandle",
    "Member",
    "Message",
    "MessageSnapshot",
    "MiB",
    "RateLimitRule",
    "RequestRecord",
    "Role",
    "StoredFile",
    "User",
    "permissions",
]
