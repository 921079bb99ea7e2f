"""The environment of a ``python -m bot`` child process that talks to a running fake.

The child imports ``tests/process_shim`` first (on its PYTHONPATH), which reads
FAKE_DISCORD_API / FAKE_DISCORD_WS and points discord.py at the fake; production code is
untouched. Only PATH is inherited, so a developer's own settings never leak in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import FakeDiscord

SHIM = Path(__file__).resolve().parents[1] / "process_shim"


def child_env(fake: FakeDiscord, workdir: Path, *, code: Path, **settings: str) -> dict[str, str]:
    """``code`` is the repository whose ``bot`` runs; ``settings`` are the bot's own
    variables (upper-case names), e.g. ``DATABASE_PATH=...``."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "PYTHONPATH": os.pathsep.join([str(SHIM), str(code)]),
        "FAKE_DISCORD_API": fake.api_base,
        "FAKE_DISCORD_WS": fake.ws_url,
        "DISCORD_TOKEN": fake.bot_token,
        **settings,
    }
