"""The use cases' rules, without Discord."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from store_fixtures import GUILD, OTHER_GUILD, FakeClock, create, open_store

from bot.service import NotUsable, usable_source
from bot.store.models import JobState


async def test_only_a_finished_kept_result_of_this_server_is_a_usable_source(tmp_path):
    async with open_store(tmp_path, FakeClock()) as store:
        job = await create(store, 1)
    done = replace(job, state=JobState.DONE, pixverse_video_id=42)
    assert usable_source(done, GUILD) is None
    assert usable_source(None, GUILD) is NotUsable.MISSING
    assert usable_source(done, OTHER_GUILD) is NotUsable.MISSING
    assert usable_source(done, None) is NotUsable.MISSING
    assert usable_source(job, GUILD) is NotUsable.UNFINISHED  # still queued
    assert usable_source(replace(done, pixverse_video_id=None), GUILD) is NotUsable.UNFINISHED
    removed = replace(done, removed_at=datetime.now(UTC))
    assert usable_source(removed, GUILD) is NotUsable.REMOVED
