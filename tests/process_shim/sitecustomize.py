"""Test-only: points a ``python -m bot`` child process at the fake Discord.

Put this folder on the child's PYTHONPATH with FAKE_DISCORD_API / FAKE_DISCORD_WS set; the
interpreter imports it at start, before the bot runs. Production code is untouched.
"""

from __future__ import annotations

import os

_api = os.environ.get("FAKE_DISCORD_API")
_ws = os.environ.get("FAKE_DISCORD_WS")
if _api and _ws:
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = _api
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(_ws)
