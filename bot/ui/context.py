"""What the Discord adapters need, handed to them rather than reached through the Bot.

Result and log buttons are rebuilt by discord.py from their ``custom_id`` with only the
interaction at hand, so they find these services on the client (``services``); everything
else gets them passed in. Nothing under ``bot/ui`` imports ``bot.app``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.jobs.runner import JobRunner
from bot.service import JobService
from bot.store import Store

if TYPE_CHECKING:
    from bot.ui.intake import Intake


@dataclass(frozen=True, slots=True)
class UiServices:
    client: discord.Client
    store: Store
    runner: JobRunner
    jobs: JobService
    intake: Intake


def services(interaction: discord.Interaction[Any]) -> UiServices:
    """The services of the bot that received ``interaction`` (set up in ``setup_hook``)."""
    found = getattr(interaction.client, "ui", None)
    if not isinstance(found, UiServices):
        raise RuntimeError("the bot's services are not set up yet")
    return found
