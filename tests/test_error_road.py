"""One road for errors: every refusal, from any room, reaches the member in its own words
through one type check; a bug gets a generic line and a logged traceback; an autocomplete
that fails offers no choices instead of leaving the member's picker broken."""

from __future__ import annotations

import logging

import pytest

from bot.errors import UserFacingError
from bot.jobs.media import MediaRejected
from bot.jobs.options import OptionRejected
from bot.refusal import Refusal
from bot.store.errors import TooManyJobs
from bot.store.moderation import RuleRefused
from bot.tree import user_message


@pytest.mark.parametrize(
    "refusal",
    [
        UserFacingError("from a cog"),
        MediaRejected("from the media checks"),
        OptionRejected("from the option checks"),
        RuleRefused("from the moderation rules"),
        TooManyJobs(active=2, limit=2),
    ],
)
def test_every_rooms_refusal_is_a_refusal_shown_in_its_own_words(refusal):
    assert isinstance(refusal, Refusal)
    assert user_message(refusal) == refusal.message


def test_anything_else_is_a_bug():
    assert user_message(ValueError("internal detail")) is None
    assert user_message(KeyError("x")) is None


async def test_a_failing_autocomplete_offers_no_choices_and_logs_the_bug(world, caplog):
    bot = await world.start_bot()

    async def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    bot.store.jobs.list_for_user = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="bot.tree"):
        choices = await world.fake.autocomplete(
            "cancel", focused="job", user=world.member, channel=world.channel
        )
    assert choices == []
    assert any("Autocomplete" in r.message and r.exc_info for r in caplog.records)
