"""Errors that reach a member as one short ephemeral line."""

from __future__ import annotations

from discord import app_commands


class UserFacingError(app_commands.AppCommandError):
    """A refusal whose message tells the member what to change; nothing was charged."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
