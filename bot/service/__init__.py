"""The bot's use cases, knowing nothing of Discord: what may be done with a job, and doing it.

Cogs and ``bot/ui`` are adapters: they parse an interaction, call a use case here, and
render its outcome. Use cases raise ``bot.refusal.Refusal`` subclasses for what a member may
not do, and take the store and the runner explicitly.
"""

from __future__ import annotations

from bot.service.jobs import JobService, NotUsable, usable_source

__all__ = ["JobService", "NotUsable", "usable_source"]
