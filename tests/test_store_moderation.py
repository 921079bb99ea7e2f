"""/mod in the store: allowed channels, prompt filters, pause, log channel, the job searches,
and migration 5 from every earlier version."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from store_fixtures import GUILD, MOD, OTHER_GUILD, FakeClock, create, open_store

from bot.store import ServerPaused, Store
from bot.store.db import Database
from bot.store.migrations import MIGRATIONS, migrate, schema_version
from bot.store.moderation import (
    MAX_FILTERS,
    RuleRefused,
    ServerRules,
    find_phrase,
    normalize_phrase,
)

USER = 42
CHANNEL = 7001
OTHER_CHANNEL = 7002


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 12, 15, 0, tzinfo=UTC))


async def audit(store: Store, guild_id: int = GUILD):
    return await store.admin.audit(guild_id, limit=50)


# --- migration 5 ------------------------------------------------------------------------------


@pytest.mark.parametrize("start", range(len(MIGRATIONS)))
async def test_migration_5_applies_from_every_earlier_version(tmp_path: Path, start: int) -> None:
    path = tmp_path / f"v{start}.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS, target=start) == start
    if start >= 1:  # settings written by the old version survive
        conn.execute(
            "INSERT INTO guild_settings (guild_id, paused, pause_reason, updated_at)"
            " VALUES (?, 1, 'old', 0)",
            (GUILD,),
        )
    conn.close()

    db = await Database.open(path)
    try:
        assert await db.read(schema_version) == len(MIGRATIONS) >= 5
        tables = {row[0] for row in await db.fetch_all("SELECT name FROM sqlite_master")}
        assert {"allowed_channels", "prompt_filters"} <= tables
        if start >= 1:
            row = await db.fetch_one("SELECT paused, pause_reason FROM guild_settings")
            assert tuple(row) == (1, "old")
    finally:
        await db.close()


async def test_a_migrated_store_takes_moderation_rules(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "data" / "bot.sqlite3"
    path.parent.mkdir()
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS, target=4)
    conn.close()
    async with open_store(tmp_path, clock) as store:
        await store.moderation.allow_channel(GUILD, MOD, CHANNEL)
        await store.moderation.add_filter(GUILD, MOD, "Gore")
        assert await store.moderation.rules(GUILD) == ServerRules(GUILD, (CHANNEL,), ("gore",))


# --- allowed channels -----------------------------------------------------------------------


async def test_allow_channel_lists_it_and_is_audited(store: Store, clock: FakeClock) -> None:
    change = await store.moderation.allow_channel(GUILD, MOD, CHANNEL)
    assert change.changed and change.items == (CHANNEL,)
    [row] = await audit(store)
    assert (row.actor_id, row.action, row.target_id) == (MOD, "mod.channel_allow", None)
    assert row.before == {"channel_id": CHANNEL, "allowed": False}
    assert row.after == {"channel_id": CHANNEL, "allowed": True}
    assert row.created_at == clock.now


async def test_allowing_a_listed_channel_changes_nothing(store: Store) -> None:
    await store.moderation.allow_channel(GUILD, MOD, CHANNEL)
    again = await store.moderation.allow_channel(GUILD, MOD, CHANNEL)
    assert not again.changed and again.items == (CHANNEL,)
    assert len(await audit(store)) == 1


async def test_deny_channel_takes_it_off_and_is_audited(store: Store) -> None:
    await store.moderation.allow_channel(GUILD, MOD, CHANNEL)
    await store.moderation.allow_channel(GUILD, MOD, OTHER_CHANNEL)
    change = await store.moderation.deny_channel(GUILD, MOD, CHANNEL)
    assert change.changed and change.items == (OTHER_CHANNEL,)
    newest = (await audit(store))[0]
    assert newest.action == "mod.channel_deny"
    assert (newest.before["allowed"], newest.after["allowed"]) == (True, False)


async def test_denying_an_unlisted_channel_changes_nothing(store: Store) -> None:
    change = await store.moderation.deny_channel(GUILD, MOD, CHANNEL)
    assert not change.changed and change.items == ()
    assert await audit(store) == []


async def test_allowed_channels_are_per_server(store: Store) -> None:
    await store.moderation.allow_channel(GUILD, MOD, CHANNEL)
    assert (await store.moderation.rules(OTHER_GUILD)).allowed_channels == ()


def test_no_allow_list_means_every_channel() -> None:
    assert ServerRules(GUILD).channel_allowed(CHANNEL)


def test_an_allow_list_admits_its_channels_and_their_threads_only() -> None:
    rules = ServerRules(GUILD, allowed_channels=(CHANNEL,))
    assert rules.channel_allowed(CHANNEL)
    assert rules.channel_allowed(9999, CHANNEL)  # a thread whose parent is listed
    assert not rules.channel_allowed(OTHER_CHANNEL)
    assert not rules.channel_allowed(OTHER_CHANNEL, None)


# --- prompt filters -------------------------------------------------------------------------


async def test_add_filter_stores_it_normalized_and_is_audited(store: Store) -> None:
    change = await store.moderation.add_filter(GUILD, MOD, "  Blood   Bath ")
    assert change.changed and change.items == ("blood bath",)
    [row] = await audit(store)
    assert row.action == "mod.filter_add"
    assert (row.before, row.after) == (
        {"phrase": "blood bath", "filtered": False},
        {"phrase": "blood bath", "filtered": True},
    )


async def test_adding_a_filtered_phrase_in_another_case_changes_nothing(store: Store) -> None:
    await store.moderation.add_filter(GUILD, MOD, "gore")
    again = await store.moderation.add_filter(GUILD, MOD, "GORE")
    assert not again.changed and again.items == ("gore",)
    assert len(await audit(store)) == 1


async def test_remove_filter_is_audited_and_unknown_ones_change_nothing(store: Store) -> None:
    await store.moderation.add_filter(GUILD, MOD, "gore")
    assert not (await store.moderation.remove_filter(GUILD, MOD, "blood")).changed
    change = await store.moderation.remove_filter(GUILD, MOD, "Gore")
    assert change.changed and change.items == ()
    assert [r.action for r in await audit(store)] == ["mod.filter_remove", "mod.filter_add"]


async def test_an_empty_phrase_is_refused(store: Store) -> None:
    with pytest.raises(RuleRefused, match="word or phrase"):
        await store.moderation.add_filter(GUILD, MOD, "   ")
    assert await audit(store) == []


async def test_filters_are_capped_per_server(store: Store) -> None:
    for n in range(MAX_FILTERS):
        await store.moderation.add_filter(GUILD, MOD, f"word{n}")
    with pytest.raises(RuleRefused, match="remove one first"):
        await store.moderation.add_filter(GUILD, MOD, "one more")
    assert (await store.moderation.add_filter(OTHER_GUILD, MOD, "one more")).changed


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("A GORE scene", "gore"),
        ("gore.", "gore"),
        ("(gore)", "gore"),
        ("gorey details", None),
        ("allegorest", None),
        ("a blood\n  bath at dawn", "blood bath"),
        ("bloodbath", None),
        ("a bath of blood", None),
    ],
)
def test_filters_match_whole_words_in_any_case(prompt: str, expected: str | None) -> None:
    assert find_phrase(prompt, ("blood bath", "gore")) == expected


def test_normalize_phrase_casefolds_and_collapses_spaces() -> None:
    assert normalize_phrase("  Straße\tNEIN ") == "strasse nein"


# --- pause / resume / log channel -----------------------------------------------------------


async def test_pause_refuses_new_jobs_with_the_reason_and_is_audited(store: Store) -> None:
    change = await store.moderation.pause(GUILD, MOD, "maintenance")
    assert change.changed
    assert (change.settings.paused, change.settings.pause_reason) == (True, "maintenance")
    [row] = await audit(store)
    assert (row.action, row.reason) == ("mod.pause", "maintenance")
    assert row.before == {"paused": False, "pause_reason": None}
    assert row.after == {"paused": True, "pause_reason": "maintenance"}
    rules = await store.moderation.rules(GUILD)
    assert (rules.paused, rules.pause_reason) == (True, "maintenance")
    with pytest.raises(ServerPaused, match="maintenance"):
        await create(store, USER)
    await create(store, USER, guild_id=OTHER_GUILD)  # other servers are not paused


async def test_resume_takes_jobs_again_and_is_audited(store: Store) -> None:
    await store.moderation.pause(GUILD, MOD, "maintenance")
    change = await store.moderation.resume(GUILD, MOD)
    assert change.changed and not change.settings.paused
    assert change.settings.pause_reason is None
    assert (await audit(store))[0].action == "mod.resume"
    assert not (await store.moderation.rules(GUILD)).paused
    await create(store, USER)


async def test_resume_when_not_paused_changes_nothing(store: Store) -> None:
    change = await store.moderation.resume(GUILD, MOD)
    assert not change.changed and not change.settings.paused
    assert await audit(store) == []


async def test_pausing_again_with_a_new_reason_updates_it(store: Store) -> None:
    await store.moderation.pause(GUILD, MOD, "first")
    assert not (await store.moderation.pause(GUILD, MOD, "first")).changed
    change = await store.moderation.pause(GUILD, MOD, "second")
    assert change.changed and change.settings.pause_reason == "second"
    assert len(await audit(store)) == 2


async def test_log_channel_is_set_and_cleared_with_audit_rows(store: Store) -> None:
    change = await store.moderation.set_log_channel(GUILD, MOD, CHANNEL)
    assert change.changed and change.settings.log_channel_id == CHANNEL
    assert (await store.admin.guild_settings(GUILD)).log_channel_id == CHANNEL
    cleared = await store.moderation.set_log_channel(GUILD, MOD, None)
    assert cleared.changed and cleared.settings.log_channel_id is None
    rows = await audit(store)
    assert [(r.action, r.before, r.after) for r in rows] == [
        ("mod.log_channel", {"log_channel_id": CHANNEL}, {"log_channel_id": None}),
        ("mod.log_channel", {"log_channel_id": None}, {"log_channel_id": CHANNEL}),
    ]


async def test_pause_keeps_the_server_cap(store: Store) -> None:
    await store.admin.set_server_cap(GUILD, MOD, 500)
    change = await store.moderation.pause(GUILD, MOD, None)
    assert change.settings.server_cap == 500


# --- finding a server's jobs --------------------------------------------------------------------


async def test_unfinished_and_finished_jobs_of_a_server_newest_first(store: Store) -> None:
    done = await create(store, USER, prompt="a red fox")
    await store.jobs.finish_done(done.id, "https://x.mp4")
    removed = await create(store, USER, prompt="a removed fox")
    await store.jobs.finish_done(removed.id, "https://y.mp4")
    await store.jobs.remove_result(removed.id, actor_id=MOD)
    failed = await create(store, USER)
    await store.jobs.finish_failed(failed.id, "nope")
    queued = await create(store, USER, prompt="a blue whale")
    newer = await create(store, USER + 1, prompt="a green frog")
    await create(store, USER, guild_id=OTHER_GUILD)

    unfinished = await store.moderation.unfinished_jobs(GUILD)
    assert [j.id for j in unfinished] == [newer.id, queued.id]
    assert [j.id for j in await store.moderation.finished_jobs(GUILD)] == [done.id]
    assert [j.id for j in await store.moderation.unfinished_jobs(GUILD, "whale")] == [queued.id]
    assert [j.id for j in await store.moderation.unfinished_jobs(GUILD, f"#{newer.id}")] == [
        newer.id
    ]
    assert await store.moderation.finished_jobs(GUILD, "whale") == []
