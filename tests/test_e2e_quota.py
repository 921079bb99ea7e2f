"""/quota and /quota-admin end to end: the real discord.py client, the fake Discord, the
embedded simulator. Replies are read as a member reads them: the embed's text and fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakediscord import permissions
from store_fixtures import server

from bot.simulator import SimulatorConfig

PIXVERSE_WORK = {"image_upload", "media_upload", "img_generate", "text_generate", "extend_generate"}


# -- helpers -------------------------------------------------------------------------------


def reply_text(response) -> str:
    data = response.data or {}
    parts = [data.get("content") or ""]
    for embed in data.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
        parts.append((embed.get("footer") or {}).get("text", ""))
    return "\n".join(parts)


def fields(response) -> dict[str, str]:
    [embed] = response.data["embeds"]
    return {f["name"]: f["value"] for f in embed.get("fields", [])}


def assert_quiet(handle, response) -> None:
    """In time, ephemeral, and pings nobody whatever the text mentions."""
    assert response.accepted, response
    assert response.delay < 3
    assert response.ephemeral, reply_text(response)
    assert (response.data or {}).get("allowed_mentions", {}).get("parse") == []
    for message in handle.messages:
        assert not message.current.pings_anyone


async def run(world, command, invoker, options=None):
    handle = await world.fake.invoke(
        command, user=invoker, channel=world.channel, options=options or {}
    )
    response = await handle.response(timeout=5)
    assert_quiet(handle, response)
    return response


async def admin(world, sub, **options):
    return await run(world, f"quota-admin {sub}", world.admin, options)


async def quota(world, user=None):
    return await run(world, "quota", user or world.member)


async def audit_rows(world, user=None):
    return await world.bot.store.admin.audit(world.guild.id, user.id if user else None)


async def finished_video(world, user=None):
    handle = await world.video(user)
    assert not (await handle.response(timeout=5)).ephemeral
    job = await world.latest_job(user)
    job = await world.job_final(job.id)
    assert job.state == "done"
    return job


def pixverse_work(world) -> list:
    return [r for r in world.bot.simulator.requests if r.route in PIXVERSE_WORK]


async def assert_video_refused(world, *expected: str) -> None:
    """The member's /video is refused ephemerally; nothing is stored, charged or sent."""
    handle = await world.video()
    response = await handle.response(timeout=5)
    assert_quiet(handle, response)
    for text in expected:
        assert text in reply_text(response)
    jobs = await world.bot.store.jobs.list_for_user(world.guild.id, world.member.id, limit=5)
    assert jobs == []
    view = await world.bot.store.ledger.quota(world.guild.id, world.member.id)
    assert (view.used_today, view.reserved) == (0, 0)
    assert world.bot.simulator.generate_requests == []
    assert pixverse_work(world) == []


def next_midnight(now: datetime) -> int:
    return int(datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86400)


# -- /quota --------------------------------------------------------------------------------


async def test_quota_is_ephemeral_and_shows_each_part_of_a_fresh_allowance(world):
    await world.start_bot()
    before = next_midnight(datetime.now(UTC))
    response = await quota(world)
    after = next_midnight(datetime.now(UTC))
    shown = fields(response)
    assert shown["Daily allowance"].startswith("150")
    assert shown["Bonus"] == "0"
    assert shown["Used today"] == "0"
    assert shown["Reserved by running jobs"] == "0"
    assert "**150** credits left" in reply_text(response)
    stamps = {int(s) for s in re.findall(r"<t:(\d+):[tTdDfFR]>", shown["Resets"])}
    assert stamps and stamps <= {before, after}
    assert "Server cap" not in reply_text(response)


async def test_quota_after_a_finished_video_shows_45_used_and_105_left(world):
    await world.start_bot()
    await finished_video(world)
    response = await quota(world)
    assert fields(response)["Used today"] == "45"
    assert fields(response)["Reserved by running jobs"] == "0"
    assert "**105** credits left" in reply_text(response)


async def test_quota_counts_a_running_job_as_reserved(world):
    await world.start_bot(simulator=SimulatorConfig(gen_time=60, seed=7))
    assert not (await (await world.video()).response(timeout=5)).ephemeral
    response = await quota(world)
    assert fields(response)["Reserved by running jobs"] == "45"
    assert fields(response)["Used today"] == "0"
    assert "**105** credits left" in reply_text(response)


async def test_quota_is_per_member(world):
    await world.start_bot()
    await finished_video(world)
    response = await quota(world, world.other)
    assert fields(response)["Used today"] == "0"
    assert "**150** credits left" in reply_text(response)


# -- /quota-admin, each subcommand by a moderator ------------------------------------------


async def test_admin_show_reports_a_members_state_without_an_audit_row(world):
    await world.start_bot()
    await finished_video(world)
    response = await admin(world, "show", user=world.member)
    shown = fields(response)
    assert shown["Daily allowance"].startswith("150")
    assert (shown["Bonus"], shown["Used today"], shown["Reserved by running jobs"]) == (
        "0",
        "45",
        "0",
    )
    assert "**105** credits left" in reply_text(response)
    assert "Blocked" not in shown
    # Looking is not a change: only changes write an audit row (README, "Commands").
    assert await audit_rows(world) == []


async def test_admin_set_changes_the_members_allowance_and_is_audited(world):
    await world.start_bot()
    response = await admin(world, "set", user=world.member, daily=300)
    assert fields(response)["Daily allowance"].startswith("300")
    assert "**300** credits left" in reply_text(response)
    [row] = await audit_rows(world)
    assert (row.actor_id, row.target_id, row.action) == (
        world.admin.id,
        world.member.id,
        "quota.set_daily",
    )
    assert (row.before, row.after) == ({"daily_override": None}, {"daily_override": 300})
    mine = await quota(world)
    assert fields(mine)["Daily allowance"] == "300 (set for you)"
    assert "**300** credits left" in reply_text(mine)


async def test_admin_grant_adds_bonus_credits_and_is_audited(world):
    await world.start_bot()
    response = await admin(world, "grant", user=world.member, credits=20)
    assert fields(response)["Bonus"] == "20"
    assert "**170** credits left" in reply_text(response)
    [row] = await audit_rows(world)
    assert row.action == "quota.grant" and row.target_id == world.member.id
    assert row.after["granted"] == 20
    assert "**170** credits left" in reply_text(await quota(world))


async def test_admin_grant_negative_takes_credits_back_and_is_audited(world):
    await world.start_bot()
    await admin(world, "grant", user=world.member, credits=20)
    response = await admin(world, "grant", user=world.member, credits=-30)
    shown = fields(response)
    # The bonus goes first; what it cannot cover is gone for today.
    assert (shown["Bonus"], shown["Used today"]) == ("0", "10")
    assert "**140** credits left" in reply_text(response)
    newest = (await audit_rows(world))[0]
    assert newest.action == "quota.grant" and newest.after["granted"] == -30
    assert "**140** credits left" in reply_text(await quota(world))


async def test_admin_grant_of_zero_is_refused_and_changes_nothing(world):
    await world.start_bot()
    response = await admin(world, "grant", user=world.member, credits=0)
    assert "0 credits" in reply_text(response)
    assert "embeds" not in response.data or not response.data["embeds"]
    assert await audit_rows(world) == []
    assert fields(await quota(world))["Bonus"] == "0"


async def test_admin_reset_clears_todays_usage_and_is_audited(world):
    await world.start_bot()
    await finished_video(world)
    response = await admin(world, "reset", user=world.member)
    assert fields(response)["Used today"] == "0"
    assert "**150** credits left" in reply_text(response)
    [row] = await audit_rows(world)
    assert row.action == "quota.reset"
    assert (row.before, row.after) == ({"used_today": 45}, {"used_today": 0})
    assert "**150** credits left" in reply_text(await quota(world))


async def test_blocked_member_is_refused_with_the_reason_and_nothing_is_charged(world):
    await world.start_bot()
    response = await admin(world, "block", user=world.member, reason="spamming the channel")
    assert "spamming the channel" in fields(response)["Blocked"]
    [row] = await audit_rows(world)
    assert row.action == "quota.block" and row.reason == "spamming the channel"
    assert row.after == {"blocked": True, "block_reason": "spamming the channel"}
    await assert_video_refused(world, "blocked", "spamming the channel")
    assert "spamming the channel" in reply_text(await quota(world))


async def test_unblocked_member_can_start_videos_again(world):
    await world.start_bot()
    await admin(world, "block", user=world.member)
    await assert_video_refused(world, "blocked")
    response = await admin(world, "unblock", user=world.member)
    assert "Blocked" not in fields(response)
    rows = await audit_rows(world)
    assert [r.action for r in rows] == ["quota.unblock", "quota.block"]
    await finished_video(world)
    assert len(world.bot.simulator.generate_requests) == 1


async def test_admin_server_cap_is_shown_in_quota_and_audited(world):
    await world.start_bot()
    response = await admin(world, "server-cap", credits=100)
    assert "100" in fields(response)["Server cap"]
    [row] = await audit_rows(world)
    assert (row.action, row.before, row.after) == (
        "quota.server_cap",
        {"server_cap": 0},
        {"server_cap": 100},
    )
    await finished_video(world)
    shown = fields(await quota(world, world.other))
    assert shown["Server cap today"] == "55 of 100 left for the whole server"


async def test_video_over_the_server_cap_is_refused_with_the_numbers(world):
    await world.start_bot()
    await admin(world, "server-cap", credits=40)
    await assert_video_refused(world, "costs 45 credits", "40 left", "cap of 40")


async def test_admin_server_cap_zero_removes_the_cap(world):
    await world.start_bot()
    await admin(world, "server-cap", credits=40)
    response = await admin(world, "server-cap", credits=0)
    assert fields(response)["Server cap"] == "none"
    assert "Server cap" not in reply_text(await quota(world))
    await finished_video(world)


async def test_role_daily_raises_the_allowance_of_members_with_that_role(world):
    await world.start_bot()
    patron = world.fake.add_role(world.guild, "Patron")
    world.fake.set_roles(world.guild, world.member, [patron])
    response = await admin(world, "role-daily", role=patron, credits=300)
    assert f"<@&{patron.id}>: 300" in fields(response)["Role allowances"]
    [row] = await audit_rows(world)
    assert (row.action, row.target_id, row.after) == (
        "quota.role_daily",
        patron.id,
        {"role_daily": 300},
    )
    mine = await quota(world)
    assert fields(mine)["Daily allowance"] == "300 (from your roles)"
    assert "**300** credits left" in reply_text(mine)
    # Someone without the role keeps the default.
    assert fields(await quota(world, world.other))["Daily allowance"].startswith("150")
    shown = await admin(world, "show", user=world.member)
    assert fields(shown)["Daily allowance"].startswith("300")


async def test_allowance_is_the_highest_of_default_and_roles(world):
    await world.start_bot()
    low = world.fake.add_role(world.guild, "Newcomer")
    high = world.fake.add_role(world.guild, "Patron")
    await admin(world, "role-daily", role=low, credits=100)
    world.fake.set_roles(world.guild, world.member, [low])
    assert fields(await quota(world))["Daily allowance"].startswith("150")
    await admin(world, "role-daily", role=high, credits=250)
    world.fake.set_roles(world.guild, world.member, [low, high])
    assert fields(await quota(world))["Daily allowance"] == "250 (from your roles)"


async def test_role_daily_zero_removes_the_role_allowance(world):
    await world.start_bot()
    patron = world.fake.add_role(world.guild, "Patron")
    world.fake.set_roles(world.guild, world.member, [patron])
    await admin(world, "role-daily", role=patron, credits=300)
    response = await admin(world, "role-daily", role=patron, credits=0)
    assert "Role allowances" not in fields(response)
    assert fields(await quota(world))["Daily allowance"] == "150 (server default)"
    assert (await audit_rows(world))[0].after == {"role_daily": None}


async def test_a_members_own_value_wins_over_their_roles(world):
    await world.start_bot()
    patron = world.fake.add_role(world.guild, "Patron")
    world.fake.set_roles(world.guild, world.member, [patron])
    await admin(world, "role-daily", role=patron, credits=300)
    await admin(world, "set", user=world.member, daily=60)
    assert fields(await quota(world))["Daily allowance"] == "60 (set for you)"


async def test_admin_top_lists_who_used_most_today_and_this_week(world):
    await world.start_bot()
    await finished_video(world)
    for period in ("day", "week"):
        response = await admin(world, "top", period=period)
        text = reply_text(response)
        assert f"1. <@{world.member.id}> · 45 credits · 1 job(s)" in text, period
        assert str(world.other.id) not in text
    assert "today" in reply_text(await admin(world, "top"))
    assert await audit_rows(world) == []


async def test_admin_top_says_when_nobody_used_credits(world):
    await world.start_bot()
    assert "Nobody has used credits today" in reply_text(await admin(world, "top"))


async def test_admin_audit_lists_actions_newest_first_and_filters_by_member(world):
    await world.start_bot()
    await admin(world, "set", user=world.member, daily=200)
    await admin(world, "grant", user=world.other, credits=5)
    await admin(world, "block", user=world.member, reason="testing")
    text = reply_text(await admin(world, "audit"))
    lines = [line for line in text.splitlines() if "**quota." in line]
    assert [re.search(r"\*\*(quota\.\w+)\*\*", line)[1] for line in lines] == [
        "quota.block",
        "quota.grant",
        "quota.set_daily",
    ]
    assert f"<@{world.admin.id}>" in lines[0] and f"<@{world.member.id}>" in lines[0]
    mine = reply_text(await admin(world, "audit", user=world.member))
    assert "quota.block" in mine and "quota.set_daily" in mine
    assert "quota.grant" not in mine
    # Reading the audit log is not itself audited.
    assert len(await audit_rows(world)) == 3


async def test_admin_audit_shows_every_change_with_roles_named_as_roles(world):
    await world.start_bot()
    patron = world.fake.add_role(world.guild, "Patron")
    await admin(world, "reset", user=world.member)
    await admin(world, "unblock", user=world.member)
    await admin(world, "server-cap", credits=500)
    await admin(world, "role-daily", role=patron, credits=300)
    text = reply_text(await admin(world, "audit"))
    for action in ("quota.reset", "quota.unblock", "quota.server_cap", "quota.role_daily"):
        assert f"**{action}**" in text, action
    [line] = [line for line in text.splitlines() if "quota.role_daily" in line]
    assert f"<@&{patron.id}>" in line
    assert f"<@{patron.id}>" not in line
    assert [r.action for r in await audit_rows(world)] == [
        "quota.role_daily",
        "quota.server_cap",
        "quota.unblock",
        "quota.reset",
    ]


# -- /quota-admin by a member without Manage Server ----------------------------------------

SUBCOMMANDS = {
    "show": lambda w, role: {"user": w.member},
    "set": lambda w, role: {"user": w.member, "daily": 999},
    "grant": lambda w, role: {"user": w.member, "credits": 50},
    "reset": lambda w, role: {"user": w.member},
    "block": lambda w, role: {"user": w.other, "reason": "no"},
    "unblock": lambda w, role: {"user": w.member},
    "server-cap": lambda w, role: {"credits": 10},
    "role-daily": lambda w, role: {"role": role, "credits": 500},
    "top": lambda w, role: {"period": "week"},
    "audit": lambda w, role: {},
}


@pytest.mark.parametrize("sub", list(SUBCOMMANDS))
async def test_quota_admin_without_manage_server_is_refused_and_changes_nothing(world, sub):
    bot = await world.start_bot()
    role = world.fake.add_role(world.guild, "Patron")
    world.fake.set_roles(world.guild, world.member, [role])
    await finished_video(world)
    before = [
        await bot.store.ledger.quota(world.guild.id, u.id, role_ids=[role.id])
        for u in (world.member, world.other)
    ]
    server_before = await server(bot.store, world.guild.id)

    options = SUBCOMMANDS[sub](world, role)
    response = await run(world, f"quota-admin {sub}", world.member, options)
    assert "Manage Server" in reply_text(response)
    assert not response.data.get("embeds")

    assert await audit_rows(world) == []
    after = [
        await bot.store.ledger.quota(world.guild.id, u.id, role_ids=[role.id])
        for u in (world.member, world.other)
    ]
    assert after == before
    assert await server(bot.store, world.guild.id) == server_before


async def test_manage_server_from_any_role_is_enough(world):
    await world.start_bot()
    helper = world.fake.add_role(world.guild, "Helper", permissions=permissions.MANAGE_GUILD)
    world.fake.set_roles(world.guild, world.other, [helper])
    options = {"user": world.member, "daily": 80}
    response = await run(world, "quota-admin set", world.other, options)
    assert "**80** credits left" in reply_text(response)
    [row] = await audit_rows(world)
    assert row.actor_id == world.other.id


@pytest.mark.parametrize("who", ["administrator", "owner"])
async def test_administrators_and_the_owner_may_use_quota_admin(world, who):
    await world.start_bot()
    if who == "owner":
        invoker = world.fake.users[world.guild.owner_id]
    else:
        boss = world.fake.add_role(world.guild, "Boss", permissions=permissions.ADMINISTRATOR)
        world.fake.set_roles(world.guild, world.other, [boss])
        invoker = world.other
    response = await run(world, "quota-admin grant", invoker, {"user": world.member, "credits": 5})
    assert fields(response)["Bonus"] == "5"
    [row] = await audit_rows(world)
    assert row.actor_id == invoker.id


# -- credits at /video ---------------------------------------------------------------------


async def test_video_without_enough_credits_is_refused_with_the_numbers(world):
    await world.start_bot()
    await admin(world, "set", user=world.member, daily=40)
    await assert_video_refused(world, "costs 45 credits", "you have 40 left")
    assert "**40** credits left" in reply_text(await quota(world))


SHIPPED_CATALOGUE = Path(__file__).resolve().parents[1] / "bot" / "pixverse" / "catalogue.toml"


def dearer_catalogue(folder: Path) -> Path:
    """The shipped catalogue with v6 dearer at 360p and 540p: the cheapest second is then
    v6's at 720p (9)."""
    text = SHIPPED_CATALOGUE.read_text(encoding="utf-8")
    for old, new in [('"540p" = 7\n', '"540p" = 70\n'), ('"360p" = 5\n', '"360p" = 50\n')]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = folder / "dearer.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_quota_shows_what_a_video_costs_from_the_catalogue(world, tmp_path):
    await world.start_bot()
    shown = fields(await quota(world))
    assert shown["A video costs"] == (
        "45 with the defaults (v4.5 · 540p · 5 s); from 5 for the shortest, lowest-quality video"
    )
    await world.stop_bot()
    # Another catalogue, other prices: the same text follows it.
    dearer = dearer_catalogue(tmp_path)
    await world.start_bot(pixverse_catalogue=dearer, default_model="v6", default_duration=2)
    shown = fields(await quota(world))
    assert shown["A video costs"].startswith("140 with the defaults (v6 · 540p · 2 s); from 9 ")
