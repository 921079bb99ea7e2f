"""Why a job was refused, with the numbers; ``str(refusal)`` is the line a member sees."""

from __future__ import annotations

from datetime import datetime

from bot.refusal import Refusal

# ``resets_at`` is kept on the exceptions so the Discord side can add a relative timestamp
# (``<t:…:R>``), which each client renders in its own time zone.
_RESET_HINT = "wait for the reset at 00:00 UTC"
# Every model's price grows with duration and quality (the model catalogue's tables).
_CHEAPER = "a shorter video or a lower quality"


__all__ = ["Refusal"]  # the store's refusals below share the bot-wide base


class MemberBlocked(Refusal):
    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        why = f" (reason: {reason})" if reason else ""
        super().__init__(
            f"You are blocked from starting videos in this server{why}. "
            "Ask a moderator if you think this is a mistake."
        )


class ServerPaused(Refusal):
    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        why = f": {reason}" if reason else ""
        super().__init__(f"Moderators have paused new videos in this server{why}. Try again later.")


class TooManyJobs(Refusal):
    def __init__(self, active: int, limit: int) -> None:
        self.active = active
        self.limit = limit
        super().__init__(
            f"You already have {active} job{'s' if active != 1 else ''} queued or running "
            f"(the limit is {limit}): wait for one to finish, or /cancel one that is queued."
        )


class InsufficientCredits(Refusal):
    def __init__(
        self,
        needed: int,
        left: int,
        allowance: int,
        bonus: int,
        used: int,
        reserved: int,
        resets_at: datetime | None = None,
        cheapest: int | None = None,
    ) -> None:
        self.needed = needed
        self.left = left
        self.allowance = allowance
        self.bonus = bonus
        self.used = used
        self.reserved = reserved
        self.resets_at = resets_at
        self.shortfall = needed - left
        held = f" ({reserved} are held by your running jobs)" if reserved else ""
        # Suggest a cheaper video only when one would fit.
        cheaper = left > 0 if cheapest is None else left >= cheapest
        change = f"choose {_CHEAPER}, or {_RESET_HINT}" if cheaper else _RESET_HINT
        super().__init__(
            f"This video costs {needed} credits but you have {left} left today{held}: {change}."
        )


class ServerCapReached(Refusal):
    def __init__(self, needed: int, left: int, cap: int, resets_at: datetime | None = None) -> None:
        self.needed = needed
        self.left = left
        self.cap = cap
        self.resets_at = resets_at
        self.shortfall = needed - left
        change = f"choose {_CHEAPER}, or {_RESET_HINT}" if left > 0 else _RESET_HINT
        super().__init__(
            f"This video costs {needed} credits but this server has {left} left of its daily "
            f"cap of {cap}: {change}."
        )
