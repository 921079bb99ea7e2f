"""Start-up end to end: which commands reach Discord, where, how often; stop and restart."""

from __future__ import annotations

import time

import pytest
from fakediscord import permissions

from bot.store import Limits, Store
from bot.sync import SYNC_HASH_KEY

REQUIRED = {"video", "extend", "imagine", "transition", "jobs", "cancel", "quota", "quota-admin"}
# Every command the README's command table names; nothing else may be synced.
KNOWN = REQUIRED | {"mod", "status"}
ATTACHMENT, STRING, INTEGER, BOOLEAN, USER, ROLE, SUB_COMMAND = 11, 3, 4, 5, 6, 8, 1
GUILD_CONTEXT = 0


def by_name(definitions):
    return {definition["name"]: definition for definition in definitions}


def choice_values(option):
    return [choice["value"] for choice in option["choices"]]


async def test_dev_guild_gets_every_command_at_start_and_nothing_goes_global(world):
    bot = await world.start_bot()
    names = set(by_name(world.fake.synced_commands(world.guild)))
    assert names >= REQUIRED
    assert names <= KNOWN, f"commands not in the README: {sorted(names - KNOWN)}"
    assert world.fake.sync_count(world.guild) == 1
    assert world.fake.synced_commands() == []
    assert world.fake.sync_count() == 0
    assert bot.synced == [f"guild:{world.guild.id}"]


async def test_video_options_have_the_interface_names_types_and_choices(world):
    await world.start_bot()
    video = world.fake.command("video", world.guild)
    options = by_name(video["options"])
    assert [o["name"] for o in video["options"]] == [
        "image",
        "prompt",
        "negative_prompt",
        "model",
        "quality",
        "duration",
        "motion",
        "style",
        "seed",
        "effect",
        "audio",
    ]
    types = {name: option["type"] for name, option in options.items()}
    assert types == {
        "image": ATTACHMENT,
        "prompt": STRING,
        "negative_prompt": STRING,
        "model": STRING,
        "quality": STRING,
        "duration": INTEGER,
        "motion": STRING,
        "style": STRING,
        "seed": INTEGER,
        "effect": STRING,
        "audio": BOOLEAN,
    }
    required = {name for name, option in options.items() if option.get("required")}
    assert required == {"image", "prompt"}
    # From the shipped model catalogue: every model, and durations across all of them.
    assert choice_values(options["model"]) == [
        "v3.5",
        "v4",
        "v4.5",
        "v5",
        "v5.5",
        "v5.6",
        "v6",
        "c1",
    ]
    assert choice_values(options["quality"]) == ["360p", "540p", "720p", "1080p"]
    assert "choices" not in options["duration"] or not options["duration"]["choices"]
    assert (options["duration"]["min_value"], options["duration"]["max_value"]) == (1, 15)
    assert choice_values(options["motion"]) == ["normal", "fast"]
    assert choice_values(options["style"]) == [
        "anime",
        "3d_animation",
        "clay",
        "comic",
        "cyberpunk",
    ]
    # The longest prompt any model takes (v6, c1); each model's own limit is checked after.
    assert (options["prompt"]["min_length"], options["prompt"]["max_length"]) == (1, 5000)
    assert options["negative_prompt"]["max_length"] == 2048
    assert (options["seed"]["min_value"], options["seed"]["max_value"]) == (0, 2147483647)
    assert options["effect"].get("autocomplete") is True
    assert "choices" not in options["effect"] or not options["effect"]["choices"]


async def test_extend_takes_a_video_or_a_job_and_the_video_options(world):
    await world.start_bot()
    extend = by_name(world.fake.command("extend", world.guild)["options"])
    assert set(extend) == {
        "prompt",
        "video",
        "job",
        "negative_prompt",
        "model",
        "quality",
        "duration",
        "motion",
        "style",
        "seed",
        "effect",
        "audio",
    }
    assert extend["audio"]["type"] == BOOLEAN and not extend["audio"].get("required")
    assert extend["video"]["type"] == ATTACHMENT and not extend["video"].get("required")
    assert extend["job"]["type"] == INTEGER and not extend["job"].get("required")
    assert extend["job"].get("autocomplete") is True


async def test_imagine_takes_the_video_options_but_image_and_effect_plus_an_aspect_ratio(world):
    await world.start_bot()
    imagine = world.fake.command("imagine", world.guild)
    options = by_name(imagine["options"])
    assert [o["name"] for o in imagine["options"]] == [
        "prompt",
        "aspect_ratio",
        "negative_prompt",
        "model",
        "quality",
        "duration",
        "motion",
        "style",
        "seed",
        "audio",
    ]
    required = {name for name, option in options.items() if option.get("required")}
    assert required == {"prompt"}
    assert options["audio"]["type"] == BOOLEAN
    assert options["aspect_ratio"]["type"] == STRING
    # Every ratio of the shipped catalogue, 16:9 first (the default); each model's own are
    # checked after the member chose.
    assert choice_values(options["aspect_ratio"]) == [
        "16:9",
        "4:3",
        "1:1",
        "3:4",
        "9:16",
        "2:3",
        "3:2",
        "21:9",
    ]
    video = by_name(world.fake.command("video", world.guild)["options"])
    for name in ("model", "quality", "motion", "style"):
        assert choice_values(options[name]) == choice_values(video[name]), name
    for name in ("duration", "seed"):
        assert (options[name]["min_value"], options[name]["max_value"]) == (
            video[name]["min_value"],
            video[name]["max_value"],
        ), name
    assert options["prompt"]["max_length"] == video["prompt"]["max_length"]


async def test_transition_takes_two_pictures_a_prompt_and_the_video_options(world):
    await world.start_bot()
    transition = world.fake.command("transition", world.guild)
    options = by_name(transition["options"])
    assert [o["name"] for o in transition["options"]] == [
        "first",
        "last",
        "prompt",
        "negative_prompt",
        "model",
        "quality",
        "duration",
        "motion",
        "style",
        "seed",
        "audio",
    ]
    required = {name for name, option in options.items() if option.get("required")}
    assert required == {"first", "last", "prompt"}
    assert options["audio"]["type"] == BOOLEAN
    assert options["first"]["type"] == options["last"]["type"] == ATTACHMENT
    video = by_name(world.fake.command("video", world.guild)["options"])
    for name in ("model", "quality", "motion", "style"):
        assert choice_values(options[name]) == choice_values(video[name]), name


async def test_quota_admin_has_every_subcommand_with_its_options(world):
    await world.start_bot()
    group = world.fake.command("quota-admin", world.guild)
    subs = by_name(group["options"])
    assert list(subs) == [
        "show",
        "set",
        "grant",
        "reset",
        "block",
        "unblock",
        "server-cap",
        "role-daily",
        "top",
        "audit",
    ]
    assert all(sub["type"] == SUB_COMMAND for sub in subs.values())
    options = {
        name: {o["name"]: (o["type"], bool(o.get("required"))) for o in sub.get("options", [])}
        for name, sub in subs.items()
    }
    assert options == {
        "show": {"user": (USER, True)},
        "set": {"user": (USER, True), "daily": (INTEGER, True)},
        "grant": {"user": (USER, True), "credits": (INTEGER, True)},
        "reset": {"user": (USER, True)},
        "block": {"user": (USER, True), "reason": (STRING, False)},
        "unblock": {"user": (USER, True)},
        "server-cap": {"credits": (INTEGER, True)},
        "role-daily": {"role": (ROLE, True), "credits": (INTEGER, True)},
        "top": {"period": (STRING, False)},
        "audit": {"user": (USER, False)},
    }
    assert choice_values(by_name(subs["top"]["options"])["period"]) == ["day", "week"]
    grant_credits = by_name(subs["grant"]["options"])["credits"]
    assert grant_credits["min_value"] < 0 < grant_credits["max_value"]


async def test_quota_admin_defaults_to_manage_server_and_member_commands_to_everyone(world):
    await world.start_bot()
    commands = by_name(world.fake.synced_commands(world.guild))
    assert commands["quota-admin"]["default_member_permissions"] == str(permissions.MANAGE_GUILD)
    assert permissions.MANAGE_GUILD == 32
    for name in ("video", "extend", "imagine", "transition", "jobs", "cancel", "quota"):
        assert commands[name]["default_member_permissions"] is None, name


async def test_every_command_is_guild_only(world):
    await world.start_bot()
    for definition in world.fake.synced_commands(world.guild):
        contexts = definition.get("contexts")
        assert contexts == [GUILD_CONTEXT] or (
            contexts is None and definition.get("dm_permission") is False
        ), definition["name"]


async def test_dev_guild_is_synced_again_at_each_start(world):
    await world.start_bot()
    await world.stop_bot()
    await world.start_bot()
    assert world.fake.sync_count(world.guild) == 2
    assert world.fake.sync_count() == 0


async def test_without_dev_guild_the_commands_are_synced_globally(world):
    bot = await world.start_bot(dev_guild_id=None)
    names = set(by_name(world.fake.synced_commands()))
    assert REQUIRED <= names <= KNOWN
    assert world.fake.sync_count() == 1
    assert world.fake.synced_commands(world.guild) == []
    assert bot.synced == ["global"]
    handle = await world.fake.invoke("quota", user=world.member, channel=world.channel)
    assert (await handle.response(timeout=5)).ephemeral


async def test_global_commands_are_not_synced_again_when_unchanged(world):
    await world.start_bot(dev_guild_id=None)
    await world.stop_bot()
    bot = await world.start_bot(dev_guild_id=None)
    assert world.fake.sync_count() == 1
    assert bot.synced == []
    # The commands Discord already has keep working.
    handle = await world.fake.invoke("quota", user=world.member, channel=world.channel)
    assert (await handle.response(timeout=5)).ephemeral


async def test_global_commands_are_synced_again_when_their_definitions_changed(world):
    await world.start_bot(dev_guild_id=None)
    await world.stop_bot()
    # What an older version of the bot would have left: the hash of other definitions.
    store = await Store.open(world.tmp_path / "data" / "bot.sqlite3", limits=Limits(150, 2))
    try:
        assert await store.db.get_meta(SYNC_HASH_KEY)
        await store.db.set_meta(SYNC_HASH_KEY, "an older set of commands")
    finally:
        await store.close()
    bot = await world.start_bot(dev_guild_id=None)
    assert world.fake.sync_count() == 2
    assert bot.synced == ["global"]


async def test_force_global_sync_syncs_even_when_unchanged(world):
    await world.start_bot(dev_guild_id=None)
    await world.stop_bot()
    bot = await world.start_bot(dev_guild_id=None, force_global_sync=True)
    assert world.fake.sync_count() == 2
    assert bot.synced == ["global"]


async def test_stop_is_clean_and_quick_and_a_restart_on_the_same_database_works(world):
    await world.start_bot()
    handle = await world.fake.invoke(
        "quota-admin set",
        user=world.admin,
        channel=world.channel,
        options={"user": world.member, "daily": 300},
    )
    assert (await handle.response(timeout=5)).ephemeral
    started = time.monotonic()
    await world.stop_bot()
    assert time.monotonic() - started < 10
    assert world.fake.gateway.connected_sessions() == []

    await world.start_bot()
    handle = await world.fake.invoke("quota", user=world.member, channel=world.channel)
    response = await handle.response(timeout=5)
    assert "**300** credits left" in str(response.data)
    handle = await world.video()
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.latest_job()
    assert (await world.job_final(job.id)).state == "done"


@pytest.mark.parametrize("stops", [1, 2])
async def test_stop_start_cycles_leave_one_connected_bot(world, stops):
    for _ in range(stops):
        await world.start_bot()
        await world.stop_bot()
    await world.start_bot()
    assert len(world.fake.gateway.connected_sessions()) == 1
    handle = await world.fake.invoke("quota", user=world.member, channel=world.channel)
    assert (await handle.response(timeout=5)).accepted
