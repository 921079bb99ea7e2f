"""The one kind of error a member is shown as it is: a refusal that says what to change.

Every room raises its own subclasses (the store's credit and limit refusals, a rejected file,
an option PixVerse would refuse, a moderation rule); none of them knows Discord. The Discord
side maps errors to messages with one type check (``bot.tree.user_message``); anything else
is a bug, logged, and answered with a generic line.
"""

from __future__ import annotations


class Refusal(Exception):
    """Nothing was charged or written; ``message`` is the line the member reads."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
