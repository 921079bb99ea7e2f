"""The fake Discord drives the real, unmodified discord.py: login, gateway, command sync,
interactions, components, modals, autocomplete, files, rate limits (injected and enforced),
faults, edit-rate measurements and token expiry."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from fakediscord import (
    Channel,
    FakeDiscord,
    FakeDiscordError,
    FakeDiscordTimeout,
    Guild,
    Limit,
    MiB,
    Role,
    User,
    permissions,
)
from PIL import Image

pytestmark = pytest.mark.timeout(20)

EFFECTS = ["spin", "sparkle", "zoom", "melt"]


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png(2, 3)


# -- a test-only bot ----------------------------------------------------------------------------


@dataclass
class Seen:
    """What the bot's commands observed, for assertions."""

    interactions: list[discord.Interaction] = field(default_factory=list)
    uploads: list[tuple[str, bytes, str | None, int]] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"job:(?P<id>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Re-roll", custom_id=f"job:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any
    ) -> JobButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"reroll {self.job_id}")


class PromptModal(discord.ui.Modal, title="Extend"):
    prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(label="Prompt", custom_id="prompt")

    def __init__(self) -> None:
        super().__init__(custom_id="extend-modal", timeout=None)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"extend: {self.prompt.value}")


class PanelView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.add_item(JobButton(42))

    @discord.ui.button(label="Extend", custom_id="panel:extend")
    async def extend(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.send_modal(PromptModal())

    @discord.ui.button(label="Bump", custom_id="panel:bump")
    async def bump(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        button.disabled = True
        await interaction.response.edit_message(content="bumped", view=self)


def build_bot(seen: Seen, *, intents: discord.Intents | None = None) -> commands.Bot:
    bot = commands.Bot(
        command_prefix=commands.when_mentioned,
        intents=intents or discord.Intents.default(),
        guild_ready_timeout=0.05,
    )

    @bot.tree.command(description="Pick a flavour")
    @app_commands.choices(  # type: ignore[misc]  # str and int choices in one call
        flavour=[app_commands.Choice(name=n, value=n) for n in ("vanilla", "chocolate")],
        count=[app_commands.Choice(name=str(n), value=n) for n in (1, 2, 3)],
    )
    async def pick(interaction: discord.Interaction, flavour: str, count: int) -> None:
        await interaction.response.send_message(f"{flavour} x{count}")

    @bot.tree.command(description="Echo an uploaded image back")
    async def upload(interaction: discord.Interaction, image: discord.Attachment) -> None:
        data = await image.read()
        seen.uploads.append((image.filename, data, image.content_type, interaction.filesize_limit))
        try:
            await interaction.response.send_message(
                f"got {len(data)} bytes", file=discord.File(io.BytesIO(data), filename="echo.png")
            )
        except discord.HTTPException as exc:
            seen.errors.append(exc)

    @bot.tree.command(description="A status message the test edits")
    async def status(interaction: discord.Interaction) -> None:
        seen.interactions.append(interaction)
        await interaction.response.send_message("queued")

    @bot.tree.command(description="Echo text without pinging anyone")
    async def echo(interaction: discord.Interaction, text: str) -> None:
        seen.interactions.append(interaction)
        await interaction.response.send_message(
            text, allowed_mentions=discord.AllowedMentions.none()
        )

    @bot.tree.command(description="Defer, edit, then follow up")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="half way")
        await interaction.followup.send("done", ephemeral=True)

    @bot.tree.command(name="quick-defer", description="Defer then follow up once")
    async def quick_defer(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("replaced", ephemeral=True)

    @bot.tree.command(description="Answer after a delay")
    async def late(interaction: discord.Interaction, seconds: float) -> None:
        await asyncio.sleep(seconds)
        try:
            await interaction.response.send_message("too late?")
        except discord.HTTPException as exc:
            seen.errors.append(exc)

    @bot.tree.command(description="Buttons")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("panel", view=PanelView())

    @bot.tree.command(description="Pick an effect")
    async def effect(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(f"effect {name}")

    @effect.autocomplete("name")
    async def effect_autocomplete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in EFFECTS if current in n]

    admin = app_commands.Group(
        name="quota-admin",
        description="Quota moderation",
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
    role_group = app_commands.Group(name="role", description="Role allowances", parent=admin)

    @admin.command(name="set", description="Set a member's daily credits")
    async def admin_set(
        interaction: discord.Interaction,
        user: discord.Member,
        daily: app_commands.Range[int, 0, 10000],
    ) -> None:
        if not interaction.permissions.manage_guild:
            await interaction.response.send_message("Manage Server needed", ephemeral=True)
            return
        seen.values["set"] = (user.id, user.display_name, daily)
        await interaction.response.send_message(f"{user.id} daily={daily}", ephemeral=True)

    @role_group.command(name="daily", description="Daily credits for a role")
    async def role_daily(
        interaction: discord.Interaction,
        role: discord.Role,
        credits: int,
        where: discord.TextChannel,
    ) -> None:
        seen.values["role"] = (role.id, role.name, credits, where.id)
        await interaction.response.send_message(f"{role.name}={credits}", ephemeral=True)

    bot.tree.add_command(admin)

    async def setup_hook() -> None:
        bot.add_view(PanelView())
        bot.add_dynamic_items(JobButton)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


# -- fixtures -----------------------------------------------------------------------------------


@dataclass
class World:
    guild: Guild
    channel: Channel
    admin: User
    alice: User
    bob: User
    moderator: Role


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def world(fake: FakeDiscord) -> World:
    return populate(fake)


def populate(fake: FakeDiscord) -> World:
    guild = fake.add_guild("pixbot-test")
    channel = fake.add_channel(guild, "general")
    moderator = fake.add_role(guild, "moderator", permissions.MANAGE_GUILD)
    admin, alice, bob = fake.add_user("admin"), fake.add_user("alice"), fake.add_user("bob")
    fake.add_member(guild, admin, [moderator])
    fake.add_member(guild, alice)
    fake.add_member(guild, bob)
    return World(guild, channel, admin, alice, bob, moderator)


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, seen: Seen, *, intents: discord.Intents | None = None
) -> AsyncIterator[commands.Bot]:
    with fake.patch_discord():
        bot = build_bot(seen, intents=intents)
        await bot.login(fake.bot_token)
        task = asyncio.create_task(bot.connect())
        try:
            await fake.wait_until_ready(timeout=5)
            await asyncio.wait_for(bot.wait_until_ready(), timeout=5)
            yield bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, timeout=5)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def bot(fake: FakeDiscord, world: World, seen: Seen) -> AsyncIterator[commands.Bot]:
    async with running_bot(fake, seen) as bot:
        bot.tree.copy_global_to(guild=discord.Object(world.guild.id))
        await bot.tree.sync(guild=discord.Object(world.guild.id))
        yield bot


@contextlib.asynccontextmanager
async def strict_bot(
    seen: Seen, **limits: Any
) -> AsyncIterator[tuple[FakeDiscord, World, commands.Bot]]:
    """A synced bot against a fake that enforces Discord's rate limits (`limits` override)."""
    async with FakeDiscord(enforce_rate_limits=True, **limits) as fake:
        world = populate(fake)
        async with running_bot(fake, seen) as bot:
            bot.tree.copy_global_to(guild=discord.Object(world.guild.id))
            await bot.tree.sync(guild=discord.Object(world.guild.id))
            yield fake, world, bot


# -- login, gateway, sync -----------------------------------------------------------------------


async def test_bot_logs_in_and_caches_the_guild(fake: FakeDiscord, world: World, bot: commands.Bot):
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "pixbot-test"
    assert guild.get_channel(world.channel.id) is not None
    assert guild.me is not None and guild.me.id == fake.bot_user.id
    assert bot.application_id == fake.application_id
    paths = [r.path for r in fake.request_log]
    assert paths[:2] == ["/users/@me", "/oauth2/applications/@me"]
    assert fake.unhandled_requests == []


async def test_guild_sync_records_definitions_and_keeps_ids(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    first = {c["name"]: c["id"] for c in fake.synced_commands(world.guild)}
    assert {"pick", "upload", "quota-admin", "effect"} <= set(first)
    assert fake.sync_count(world.guild) == 1
    assert fake.command("quota-admin", world.guild)["default_member_permissions"] == "32"

    await bot.tree.sync(guild=discord.Object(world.guild.id))
    assert fake.sync_count(world.guild) == 2
    assert {c["name"]: c["id"] for c in fake.synced_commands(world.guild)} == first

    await bot.tree.sync()
    assert fake.sync_count() == 1
    assert "pick" in {c["name"] for c in fake.synced_commands()}


async def test_guild_added_after_connect_reaches_the_cache(fake: FakeDiscord, bot: commands.Bot):
    later = fake.add_guild("later", premium_tier=2)
    await fake.wait_for(lambda: bot.get_guild(later.id) is not None, timeout=5)
    cached = bot.get_guild(later.id)
    assert cached is not None and cached.premium_tier == 2


async def test_members_intent_chunks_members_over_op_8(fake: FakeDiscord, world: World, seen: Seen):
    intents = discord.Intents.default()
    intents.members = True
    async with running_bot(fake, seen, intents=intents) as bot:
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.chunked  # GUILD_CREATE carried every member
        assert guild.get_member(world.alice.id) is not None
        found = await asyncio.wait_for(guild.query_members(query="al"), timeout=5)
    assert [m.id for m in found] == [world.alice.id]
    assert any(frame.get("op") == 8 for _, _, frame in fake.gateway_log)


async def test_bot_resumes_after_the_gateway_drops(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    await fake.drop_connections(4000)
    await fake.wait_for(lambda: fake.resume_count == 1, timeout=5)
    handle = await fake.invoke(
        "pick", user=world.alice, channel=world.channel, options={"flavour": "vanilla", "count": 1}
    )
    assert (await handle.wait_original()).content == "vanilla x1"


# -- slash commands -----------------------------------------------------------------------------


async def test_command_with_choices_gets_a_public_reply_within_3s(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    handle = await fake.invoke(
        "pick",
        user=world.alice,
        channel=world.channel,
        options={"flavour": "chocolate", "count": 2},
    )
    callback = await handle.response(timeout=5)
    assert callback.accepted and callback.type == 4 and not callback.ephemeral
    assert handle.response_delay is not None and handle.response_delay < 3
    message = await handle.wait_original()
    assert message.content == "chocolate x2"
    assert message.author is fake.bot_user and message.webhook_id == fake.application_id
    assert fake.messages_in(world.channel) == [message]


async def test_invoke_refuses_what_discords_client_would_not_send(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    base: dict[str, Any] = {"user": world.alice, "channel": world.channel}
    with pytest.raises(FakeDiscordError, match="no command"):
        await fake.invoke("nope", **base)
    with pytest.raises(FakeDiscordError, match="wrong value type"):
        await fake.invoke("pick", **base, options={"flavour": "vanilla", "count": "2"})
    with pytest.raises(FakeDiscordError, match="not one of the choices"):
        await fake.invoke("pick", **base, options={"flavour": "mint", "count": 1})
    with pytest.raises(FakeDiscordError, match="has no option"):
        await fake.invoke("pick", **base, options={"flavour": "vanilla", "count": 1, "x": 1})
    with pytest.raises(FakeDiscordError, match="required"):
        await fake.invoke("pick", **base, options={"flavour": "vanilla"})
    with pytest.raises(FakeDiscordError, match="needs a subcommand"):
        await fake.invoke("quota-admin", **base)
    with pytest.raises(FakeDiscordError, match="outside"):
        await fake.invoke("quota-admin set", **base, options={"user": world.bob, "daily": -1})


async def test_attachment_option_is_downloadable_and_file_replies_are_stored(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke(
        "upload",
        user=world.alice,
        channel=world.channel,
        attachments={"image": ("cat.png", PNG, "image/png")},
    )
    message = await handle.wait_original()
    assert seen.uploads == [("cat.png", PNG, "image/png", 10 * MiB)]
    assert message.content == f"got {len(PNG)} bytes"
    assert message.files == {"echo.png": PNG}
    stored = message.attachments[0]
    assert stored.content_type == "image/png" and (stored.width, stored.height) == (2, 3)
    async with aiohttp.ClientSession() as session, session.get(stored.url) as response:
        assert response.status == 200 and await response.read() == PNG


async def test_file_over_the_upload_limit_gets_413(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    world.guild.attachment_size_limit = len(PNG) - 1
    handle = await fake.invoke(
        "upload", user=world.alice, channel=world.channel, attachments={"image": ("a.png", PNG)}
    )
    callback = await handle.response()
    assert not callback.accepted and callback.error_code == 40005
    assert seen.uploads[0][3] == len(PNG) - 1
    assert isinstance(seen.errors[0], discord.HTTPException) and seen.errors[0].code == 40005


async def test_subcommands_resolve_members_roles_and_channels(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke(
        "quota-admin set",
        user=world.admin,
        channel=world.channel,
        options={"user": world.bob, "daily": 300},
    )
    reply = await handle.wait_original()
    assert reply.ephemeral and reply.content == f"{world.bob.id} daily=300"
    assert seen.values["set"] == (world.bob.id, "bob", 300)

    handle = await fake.invoke(
        "quota-admin role daily",
        user=world.admin,
        channel=world.channel,
        options={"role": world.moderator, "credits": 500, "where": world.channel},
    )
    assert (await handle.wait_original()).content == "moderator=500"
    assert seen.values["role"] == (world.moderator.id, "moderator", 500, world.channel.id)


async def test_bot_sees_the_invokers_permissions(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    handle = await fake.invoke(
        "quota-admin set",
        user=world.alice,
        channel=world.channel,
        options={"user": world.bob, "daily": 1},
    )
    reply = await handle.wait_original()
    assert reply.ephemeral and reply.content == "Manage Server needed"


async def test_defer_edit_then_followup(fake: FakeDiscord, world: World, bot: commands.Bot):
    handle = await fake.invoke("slow", user=world.alice, channel=world.channel)
    assert (await handle.response()).type == 5
    original = await handle.wait_original(lambda m: not m.loading)
    [followup] = await handle.wait_followups(1)
    assert [s.content for s in original.history] == ["", "half way"]
    assert original.history[0].flags & 128 and not original.ephemeral
    assert original.edit_sources == ["webhook"]
    assert followup.ephemeral and followup.content == "done"


async def test_first_followup_replaces_the_thinking_message(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    handle = await fake.invoke("quick-defer", user=world.alice, channel=world.channel)
    original = await handle.wait_original(lambda m: m.content == "replaced")
    assert not original.ephemeral  # keeps the public defer's visibility
    assert original.edit_sources == ["followup"]
    assert handle.followups == []


async def test_allowed_mentions_are_recorded(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke(
        "echo", user=world.alice, channel=world.channel, options={"text": f"hi {world.bob.mention}"}
    )
    quiet = await handle.wait_original()
    assert quiet.allowed_mentions is not None and quiet.allowed_mentions["parse"] == []
    assert not quiet.current.pings_anyone

    channel = seen.interactions[0].channel
    assert isinstance(channel, discord.TextChannel)
    loud = await channel.send(f"hey {world.bob.mention}")
    assert fake.get_message(loud.id).current.mention_user_ids == {world.bob.id}


# -- components, modals, autocomplete -----------------------------------------------------------


async def test_button_edits_its_message_and_dynamic_item_replies(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    panel = await (
        await fake.invoke("panel", user=world.alice, channel=world.channel)
    ).wait_original()
    assert sorted(panel.custom_ids()) == ["job:42", "panel:bump", "panel:extend"]

    bump = await fake.click(panel, "panel:bump", user=world.bob)
    assert (await bump.response()).type == 7
    assert panel.content == "bumped" and panel.edit_sources == ["callback"]
    bump_button = panel.find_component("panel:bump")
    assert bump_button is not None and bump_button["disabled"] is True

    reroll = await fake.click(panel, "job:42", user=world.bob)
    assert (await reroll.wait_original()).content == "reroll 42"


async def test_button_opens_a_modal_and_its_submit_reaches_the_bot(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    panel = await (
        await fake.invoke("panel", user=world.alice, channel=world.channel)
    ).wait_original()
    click = await fake.click(panel, "panel:extend", user=world.bob)
    modal = await click.wait_modal()
    assert modal["custom_id"] == "extend-modal" and modal["title"] == "Extend"

    with pytest.raises(FakeDiscordError, match="no input"):
        await fake.submit_modal("extend-modal", {"nope": "x"}, user=world.bob)
    submitted = await fake.submit_modal("extend-modal", {"prompt": "a cat dancing"}, user=world.bob)
    assert (await submitted.wait_original()).content == "extend: a cat dancing"
    assert submitted.payload["message"]["id"] == str(panel.id)


async def test_autocomplete_returns_the_bots_choices(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    choices = await fake.autocomplete(
        "effect", focused="name", options={"name": "sp"}, user=world.alice, channel=world.channel
    )
    assert choices == [{"name": "spin", "value": "spin"}, {"name": "sparkle", "value": "sparkle"}]


# -- Discord's rules: rate limits, deadlines, token expiry, deletion, permissions ----------------


async def test_429_on_a_webhook_edit_is_retried(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    await handle.wait_original()
    rule = fake.rate_limit("PATCH", r"/messages/@original$", retry_after=0.2)
    started = time.monotonic()
    await seen.interactions[0].edit_original_response(content="generating")
    assert time.monotonic() - started >= 0.2
    assert rule.hits == 1
    assert [r.status for r in fake.requests("PATCH", "@original")] == [429, 200]
    assert handle.original is not None and handle.original.content == "generating"


async def test_429_on_a_channel_send_is_retried(fake: FakeDiscord, world: World, bot: commands.Bot):
    channel = bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel)
    fake.rate_limit("POST", rf"^/channels/{world.channel.id}/messages$", retry_after=0.1, count=2)
    sent = await channel.send("hello")
    assert [r.status for r in fake.requests("POST", "/messages$")] == [429, 429, 200]
    assert fake.get_message(sent.id).current.source == "channel"


async def test_expired_token_fails_webhook_edits_but_channel_edit_works(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    original = await handle.wait_original()
    interaction = seen.interactions[0]
    fake.expire_token(handle)

    with pytest.raises(discord.HTTPException) as caught:
        await interaction.edit_original_response(content="done")
    assert caught.value.status == 401 and caught.value.code == 50027

    channel = interaction.channel
    assert isinstance(channel, discord.TextChannel)
    await channel.get_partial_message(original.id).edit(content="done (via channel)")
    assert original.content == "done (via channel)"
    assert original.edit_sources == ["channel"]


async def test_token_lifetime_is_configurable(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    await handle.wait_original()
    fake.token_lifetime = 0.0
    with pytest.raises(discord.HTTPException) as caught:
        await seen.interactions[0].followup.send("late followup")
    assert caught.value.code == 50027


async def test_backdated_interaction_expires_for_discordpy_and_the_fake(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke(
        "status", user=world.alice, channel=world.channel, backdate=fake.token_lifetime - 0.3
    )
    await handle.wait_original()  # the callback deadline counts from dispatch
    interaction = seen.interactions[0]
    assert not interaction.is_expired() and handle.token_valid
    await asyncio.sleep(0.4)
    assert interaction.is_expired() and not handle.token_valid
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.edit_original_response(content="late")
    assert caught.value.code == 50027


async def test_callback_after_the_deadline_is_unknown_interaction(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    fake.callback_deadline = 0.2
    handle = await fake.invoke(
        "late", user=world.alice, channel=world.channel, options={"seconds": 0.3}
    )
    callback = await handle.response(timeout=5)
    assert not callback.accepted and callback.error_code == 10062 and callback.delay > 0.2
    assert isinstance(seen.errors[0], discord.NotFound) and seen.errors[0].code == 10062
    assert handle.original is None


async def test_second_callback_is_already_acknowledged(
    fake: FakeDiscord, world: World, bot: commands.Bot
):
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    await handle.wait_original()
    url = f"{fake.api_base}/interactions/{handle.id}/{handle.token}/callback"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as response:
            body = await response.json()
    assert response.status == 400 and body["code"] == 40060
    assert [cb.accepted for cb in handle.callbacks] == [True, False]


async def test_edit_after_user_deleted_the_message_is_404(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    original = await handle.wait_original()
    fake.delete_message(world.channel, original)
    with pytest.raises(discord.NotFound) as caught:
        await seen.interactions[0].edit_original_response(content="x")
    assert caught.value.code == 10008
    assert original.deleted and fake.messages_in(world.channel) == []


async def test_bot_without_send_messages_is_refused_in_the_channel(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    quiet = fake.add_channel(world.guild, "read-only")
    fake.set_bot_permissions(quiet, permissions.VIEW_CHANNEL | permissions.READ_MESSAGE_HISTORY)
    handle = await fake.invoke("status", user=world.alice, channel=quiet)
    await handle.wait_original()  # interaction responses need no channel permission
    interaction = seen.interactions[0]
    assert not interaction.app_permissions.send_messages
    assert interaction.app_permissions.view_channel
    channel = interaction.channel
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as caught:
        await channel.send("hello")
    assert caught.value.code == 50013


async def test_followups_can_be_fetched_edited_and_deleted_by_id(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    await handle.wait_original()
    interaction = seen.interactions[0]
    fetched = await interaction.original_response()
    assert fetched.content == "queued"

    sent = await interaction.followup.send("step 1", wait=True)
    await sent.edit(content="step 2")
    [followup] = handle.followups
    assert [s.content for s in followup.history] == ["step 1", "step 2"]
    assert (
        followup.current.route == "PATCH /webhooks/{application_id}/{token}/messages/{message_id}"
    )
    await sent.delete()
    assert followup.deleted and followup.deleted_by == "webhook"


async def test_edits_attach_keep_and_drop_files(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    original = await handle.wait_original()
    interaction = seen.interactions[0]
    video = discord.File(io.BytesIO(b"\x00mp4" * 10), filename="result.mp4")
    await interaction.edit_original_response(content="done", attachments=[video])
    assert original.files == {"result.mp4": b"\x00mp4" * 10}
    assert original.attachments[0].content_type == "video/mp4"

    message = await interaction.original_response()
    await interaction.edit_original_response(content="done!", attachments=message.attachments)
    assert original.files == {"result.mp4": b"\x00mp4" * 10}  # kept by id
    await interaction.edit_original_response(attachments=[])
    assert original.files == {} and original.content == "done!"
    assert [s.filenames for s in original.history] == [[], ["result.mp4"], ["result.mp4"], []]

    world.guild.attachment_size_limit = 10
    too_big = discord.File(io.BytesIO(b"x" * 11), filename="big.mp4")
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.edit_original_response(attachments=[too_big])
    assert caught.value.status == 413 and caught.value.code == 40005


# -- the fake on its own ------------------------------------------------------------------------


async def test_heartbeats_are_acknowledged_at_the_configured_interval(seen: Seen):
    async with FakeDiscord(heartbeat_interval=50) as quick:
        quick.add_guild("beats")
        async with running_bot(quick, seen) as bot:
            await quick.wait_for(
                lambda: any(c.heartbeats >= 3 for c in quick.gateway.connections), timeout=5
            )
            assert bot.latency < 1


async def test_wrong_token_fails_login_and_patch_is_restored(fake: FakeDiscord):
    original = discord.http.Route.BASE
    with fake.patch_discord():
        assert discord.http.Route.BASE == fake.api_base
        client = discord.Client(intents=discord.Intents.default())
        try:
            with pytest.raises(discord.LoginFailure):
                await client.login("not-the-token")
        finally:
            await client.close()
    assert discord.http.Route.BASE == original


def test_permissions_follow_discords_algorithm(fake: FakeDiscord, world: World):
    everyone = permissions.DEFAULT_EVERYONE
    assert fake.permissions_for(world.alice, world.channel) == everyone
    assert fake.permissions_for(world.admin, None, world.guild) & permissions.MANAGE_GUILD
    owner = fake.users[world.guild.owner_id]
    assert fake.permissions_for(owner, world.channel) == permissions.ALL_PERMISSIONS

    boss = fake.add_role(world.guild, "boss", permissions.ADMINISTRATOR)
    fake.add_member(world.guild, world.bob, [boss])
    fake.set_overwrite(world.channel, world.guild.everyone_role, deny=permissions.VIEW_CHANNEL)
    assert fake.permissions_for(world.alice, world.channel) == 0  # no View Channel, nothing
    assert fake.permissions_for(world.bob, world.channel) == permissions.ALL_PERMISSIONS
    fake.set_overwrite(world.channel, world.alice, allow=permissions.VIEW_CHANNEL)
    assert fake.permissions_for(world.alice, world.channel) == everyone


# -- enforced rate limits -----------------------------------------------------------------------


async def _raw(
    session: aiohttp.ClientSession,
    fake: FakeDiscord,
    method: str,
    path: str,
    *,
    json: Any = None,
    bot_token: bool = True,
) -> tuple[int, Any, dict[str, str]]:
    """One request that ignores every rate-limit header, as a careless client would."""
    headers = {"Authorization": f"Bot {fake.bot_token}"} if bot_token else {}
    async with session.request(method, fake.api_base + path, json=json, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body, dict(resp.headers)


def _bucket_requests(fake: FakeDiscord, channel: Channel) -> list[float]:
    return [r.at for r in fake.requests(path=rf"^/channels/{channel.id}/messages")]


async def test_exhausted_channel_bucket_makes_discordpy_wait_instead_of_429(seen: Seen):
    async with strict_bot(seen, channel_message_limit=(3, 1.0)) as (fake, world, bot):
        channel = bot.get_channel(world.channel.id)
        assert isinstance(channel, discord.TextChannel)
        started = time.monotonic()
        async with asyncio.timeout(10):
            sent = [await channel.send(f"n{i}") for i in range(3)]
            for message in sent:  # edits share the channel's bucket with the sends
                await message.edit(content=f"{message.content}!")
        elapsed = time.monotonic() - started
        assert fake.rate_limited == []
        # Remaining hit 0 twice (after the 3rd send and the 3rd edit): discord.py slept 1 s each.
        assert elapsed >= 1.9
        assert [fake.get_message(m.id).content for m in sent] == ["n0!", "n1!", "n2!"]
        times = _bucket_requests(fake, world.channel)
        assert len(times) == 6
        assert max(b - a for a, b in itertools.pairwise(times)) >= 0.99


async def test_exhausted_interaction_webhook_bucket_makes_discordpy_wait(seen: Seen):
    async with strict_bot(seen, interaction_webhook_limit=(2, 0.5)) as (fake, world, _):
        handle = await fake.invoke("status", user=world.alice, channel=world.channel)
        original = await handle.wait_original()
        interaction = seen.interactions[0]
        started = time.monotonic()
        async with asyncio.timeout(10):
            for step in range(4):
                await interaction.edit_original_response(content=f"step {step}")
        assert time.monotonic() - started >= 0.9  # two exhaustions, 0.5 s each
        assert fake.rate_limited == []
        assert original.content == "step 3"
        assert fake.most_edits_in_window(0.5)["webhook"] <= 2

        # Someone else empties the token's bucket: discord.py's webhook adapter gets a real 429,
        # which it only retries because the answer carries a Via header.
        await asyncio.sleep(0.6)
        path = f"/webhooks/{fake.application_id}/{handle.token}/messages/@original"
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            for text in ("raw 1", "raw 2"):
                assert (await _raw(session, fake, "PATCH", path, json={"content": text}))[0] == 200
            await interaction.edit_original_response(content="after the wait")
        assert original.content == "after the wait"
        assert [r.status for r in fake.requests("PATCH", "@original")][-2:] == [429, 200]
        assert [r.rate_limit_scope for r in fake.rate_limited] == ["user"]


async def test_raw_burst_gets_429_with_retry_after_and_is_not_applied(
    fake: FakeDiscord, world: World
):
    fake.enforce_rate_limits = True
    other = fake.add_channel(world.guild, "other")
    path = f"/channels/{world.channel.id}/messages"
    async with aiohttp.ClientSession() as session, asyncio.timeout(10):
        answers = await asyncio.gather(
            *(_raw(session, fake, "POST", path, json={"content": f"m{i}"}) for i in range(7))
        )
        ok = [a for a in answers if a[0] == 200]
        limited = [a for a in answers if a[0] == 429]
        assert len(ok) == 5 and len(limited) == 2  # the default: 5 per 5 s per channel
        assert sorted(int(h["X-RateLimit-Remaining"]) for _, _, h in ok) == [0, 1, 2, 3, 4]
        assert {h["X-RateLimit-Limit"] for _, _, h in ok} == {"5"}
        assert len({h["X-RateLimit-Bucket"] for _, _, h in ok + limited}) == 1
        for _, body, headers in limited:
            assert body["message"] == "You are being rate limited."
            assert body["global"] is False and 4.0 < body["retry_after"] <= 5.0
            assert set(body) == {"message", "retry_after", "global"}
            assert headers["Retry-After"] == "5" and headers["X-RateLimit-Scope"] == "user"
            assert headers["Via"] == "1.1 google"  # discord.py only retries a 429 with Via
            assert "X-RateLimit-Global" not in headers
        assert len(fake.messages_in(world.channel)) == 5  # the refused sends were not applied

        # Edits and deletes share the bucket; another channel has its own.
        first = fake.messages_in(world.channel)[0]
        status, _, _ = await _raw(
            session, fake, "PATCH", f"{path}/{first.id}", json={"content": "edited"}
        )
        assert status == 429 and first.edit_sources == []
        status, _, headers = await _raw(
            session, fake, "POST", f"/channels/{other.id}/messages", json={"content": "hi"}
        )
        assert status == 200 and headers["X-RateLimit-Remaining"] == "4"

        # A test's injected rule takes precedence over the real limits.
        rule = fake.rate_limit("POST", rf"^/channels/{other.id}/messages$", retry_after=0.25)
        status, body, _ = await _raw(
            session, fake, "POST", f"/channels/{other.id}/messages", json={"content": "x"}
        )
        assert status == 429 and body["retry_after"] == 0.25 and rule.hits == 1
    assert [r.rate_limit_scope for r in fake.rate_limited] == ["user"] * 3 + ["injected"]
    assert all(r.status == 429 for r in fake.rate_limited)


async def test_global_limit_is_retried_by_discordpy(seen: Seen):
    async with strict_bot(seen) as (fake, world, bot):
        fake.limiter.global_limit = Limit(4, 0.5)
        channels = [fake.add_channel(world.guild, f"c{i}") for i in range(8)]
        async with asyncio.timeout(10):
            # One channel each, so every request has its own route bucket: only the global
            # limit can refuse them.
            fetched = await asyncio.gather(*(bot.fetch_channel(c.id) for c in channels))
        assert [c.id for c in fetched] == [c.id for c in channels]
        refused = fake.rate_limited
        assert refused and {r.rate_limit_scope for r in refused} == {"global"}
        for channel in channels:
            assert fake.requests("GET", rf"^/channels/{channel.id}$")[-1].status == 200


async def test_global_limit_answer_and_interaction_routes_are_exempt(seen: Seen):
    async with strict_bot(seen) as (fake, world, _):
        fake.limiter.global_limit = Limit(3, 60.0)  # stays exhausted for the whole test
        fake.limiter.reset()
        path = f"/channels/{world.channel.id}"
        async with aiohttp.ClientSession() as session, asyncio.timeout(10):
            answers = [await _raw(session, fake, "GET", path) for _ in range(4)]
            assert [a[0] for a in answers] == [200, 200, 200, 429]
            _, body, headers = answers[-1]
            assert body["global"] is True and 59.0 < body["retry_after"] <= 60.0
            assert headers["X-RateLimit-Global"] == "true"
            assert headers["X-RateLimit-Scope"] == "global"
            assert headers["Retry-After"] == "60"
            # Requests without the bot token are not the bot's: no global limit for them.
            status, _, _ = await _raw(session, fake, "GET", "/gateway", bot_token=False)
            assert status == 200

            # The interaction callback and webhook edits still go through at once.
            handle = await fake.invoke("status", user=world.alice, channel=world.channel)
            original = await handle.wait_original()
            await seen.interactions[0].edit_original_response(content="generating")
            assert original.content == "generating"
            status, _, _ = await _raw(
                session,
                fake,
                "PATCH",
                f"/webhooks/{fake.application_id}/{handle.token}/messages/@original",
                json={"content": "raw"},
            )
            assert status == 200 and original.content == "raw"
            assert (await _raw(session, fake, "GET", path))[0] == 429  # still exhausted
        assert [r.path for r in fake.rate_limited] == [path, path]


# -- injected faults ----------------------------------------------------------------------------


async def _status_message(
    fake: FakeDiscord, world: World, seen: Seen
) -> tuple[discord.Interaction, discord.PartialMessage, Any]:
    handle = await fake.invoke("status", user=world.alice, channel=world.channel)
    original = await handle.wait_original()
    interaction = seen.interactions[-1]
    channel = interaction.channel
    assert isinstance(channel, discord.TextChannel)
    return interaction, channel.get_partial_message(original.id), original


async def test_status_fault_on_a_channel_edit(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    _, partial, original = await _status_message(fake, world, seen)
    edit_path = rf"^/channels/{world.channel.id}/messages/{original.id}$"
    rule = fake.inject_fault("PATCH", edit_path, "status", status=503)
    async with asyncio.timeout(5):
        with pytest.raises(discord.DiscordServerError) as caught:
            await partial.edit(content="done")
    assert caught.value.status == 503 and caught.value.code == 0
    assert rule.hits == 1 and original.content == "queued"
    [record] = fake.requests("PATCH", edit_path)
    assert record.fault == "status" and record.status == 503

    # After the answer: applied, yet the bot is told it failed.
    fake.inject_fault("PATCH", edit_path, "status", status=503, after_apply=True)
    async with asyncio.timeout(5):
        with pytest.raises(discord.DiscordServerError):
            await partial.edit(content="done")
        assert original.content == "done"
        await partial.edit(content="done again")  # the rule is used up
    assert original.content == "done again"


async def test_status_fault_on_a_webhook_edit_is_retried_by_discordpy(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    interaction, _, original = await _status_message(fake, world, seen)
    rule = fake.inject_fault("PATCH", r"/messages/@original$", "status", status=502)
    async with asyncio.timeout(5):
        await interaction.edit_original_response(content="generating")
    assert rule.hits == 1 and original.content == "generating"
    assert [r.status for r in fake.requests("PATCH", "@original")] == [502, 200]


async def test_drop_before_and_after_apply(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    interaction, partial, original = await _status_message(fake, world, seen)
    edit_path = rf"^/channels/{world.channel.id}/messages/{original.id}$"
    fake.inject_fault("PATCH", edit_path, "drop")
    async with asyncio.timeout(5):
        with pytest.raises(aiohttp.ClientConnectionError):
            await partial.edit(content="lost")
    assert original.content == "queued"  # never applied
    [record] = fake.requests("PATCH", edit_path)
    assert record.dropped and record.status == 0

    rule = fake.inject_fault("PATCH", r"/messages/@original$", "drop", after_apply=True)
    async with asyncio.timeout(5):
        with pytest.raises(aiohttp.ClientConnectionError):
            await interaction.edit_original_response(content="applied")
    assert rule.hits == 1 and original.content == "applied"  # applied, answer lost
    [record] = fake.requests("PATCH", "@original")
    assert record.dropped and record.status == 200

    async with asyncio.timeout(5):  # the bot's session recovers on a new connection
        await partial.edit(content="final")
    assert original.content == "final"
    assert fake.rate_limited == []


def test_inject_fault_refuses_what_it_cannot_do(fake: FakeDiscord):
    with pytest.raises(FakeDiscordError, match="unknown fault kind"):
        fake.inject_fault("PATCH", "/x", "hang")  # type: ignore[arg-type]
    with pytest.raises(FakeDiscordError, match="5xx"):
        fake.inject_fault("PATCH", "/x", "status", status=404)


# -- measurements -------------------------------------------------------------------------------


async def test_most_edits_in_window_per_channel_and_kind(
    fake: FakeDiscord, world: World, bot: commands.Bot, seen: Seen
):
    interaction, partial, _ = await _status_message(fake, world, seen)
    other = fake.add_channel(world.guild, "other")
    async with asyncio.timeout(5):
        for step in range(3):
            await interaction.edit_original_response(content=f"step {step}")
        followup = await interaction.followup.send("extra", wait=True)
        await followup.edit(content="extra!")  # a webhook edit by message id
        for step in range(2):
            await partial.edit(content=f"channel {step}")
        elsewhere = await bot.get_partial_messageable(other.id).send("elsewhere")
        await elsewhere.edit(content="elsewhere!")
        fake.rate_limit("PATCH", r"@original$", retry_after=0.01)
        await interaction.edit_original_response(content="after a 429")

    # Every attempt counts (the 429 too); channels are never summed.
    assert fake.most_edits_in_window(5.0) == {"webhook": 6, "channel": 2}
    assert fake.most_edits_in_window(5.0, successful_only=True) == {"webhook": 5, "channel": 2}
    by_channel = fake.edits_by_channel()
    assert set(by_channel) == {world.channel.id, other.id}
    assert len(by_channel[other.id]["channel"]) == 1 and "webhook" not in by_channel[other.id]

    # Spread the webhook edits out in time: the window is half-open, [t, t + window).
    webhook_edits = by_channel[world.channel.id]["webhook"]
    for record, at in zip(webhook_edits, [0, 1, 5, 6, 20, 20.5], strict=True):
        record.at = at
    assert fake.most_edits_in_window(5.0)["webhook"] == 2
    assert fake.most_edits_in_window(5.5)["webhook"] == 3
    assert fake.most_edits_in_window(6.5)["webhook"] == 4


# -- shards -------------------------------------------------------------------------------------


class QuickShardedBot(commands.AutoShardedBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s between shards' IDENTIFYs: the fake does not limit them."""


def build_sharded_bot(shard_count: int, shard_ids: list[int] | None = None) -> commands.Bot:
    """discord.py's own AutoShardedBot with one command that says which shard answered."""
    bot = QuickShardedBot(
        command_prefix=commands.when_mentioned,
        intents=discord.Intents.default(),
        shard_count=shard_count,
        shard_ids=shard_ids,
        guild_ready_timeout=0.05,
    )

    @bot.tree.command(description="Say which shard answers")
    async def where(interaction: discord.Interaction) -> None:
        guild = interaction.guild
        await interaction.response.send_message(f"shard {guild.shard_id if guild else '-'}")

    return bot


@contextlib.asynccontextmanager
async def running_sharded_bot(
    fake: FakeDiscord, shard_count: int, shard_ids: list[int] | None = None
) -> AsyncIterator[commands.Bot]:
    with fake.patch_discord():
        bot = build_sharded_bot(shard_count, shard_ids)
        await bot.login(fake.bot_token)
        task = asyncio.create_task(bot.connect(reconnect=False))
        try:
            await asyncio.wait_for(bot.wait_until_ready(), timeout=10)
            await bot.tree.sync()
            yield bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, timeout=5)


def guild_creates(session: Any) -> set[int]:
    return {int(f["d"]["id"]) for f in session.frames if f["t"] == "GUILD_CREATE"}


def sessions_by_shard(fake: FakeDiscord) -> dict[int, Any]:
    return {s.shard[0]: s for s in fake.gateway.connected_sessions()}


def test_a_guild_added_on_a_shard_gets_an_id_that_shard_serves(fake: FakeDiscord):
    made = []
    for count in (1, 2, 3, 16):
        for shard_id in reversed(range(count)):
            guild = fake.add_guild(f"g{count}-{shard_id}", shard=(shard_id, count))
            assert fake.shard_of(guild.id, count) == shard_id == (guild.id >> 22) % count
            made.append(guild.id)
    assert made == sorted(made) and len(set(made)) == len(made)
    with pytest.raises(ValueError, match="no shard 2 of 2"):
        fake.add_guild("nowhere", shard=(2, 2))


async def test_gateway_bot_recommends_one_shard_per_thousand_guilds():
    async def recommended(fake: FakeDiscord) -> int:
        headers = {"Authorization": f"Bot {fake.bot_token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{fake.api_base}/gateway/bot", headers=headers) as response,
        ):
            body = await response.json()
        assert body["url"] == fake.ws_url
        return int(body["shards"])

    async with FakeDiscord() as fake:
        fake.add_guild("one")
        assert await recommended(fake) == 1
        for n in range(1000):
            fake.add_guild(f"g{n}")
        assert await recommended(fake) == 2
    async with FakeDiscord(shards=4) as fake:
        assert await recommended(fake) == 4


async def test_an_auto_sharded_bot_asks_gateway_bot_for_its_shard_count():
    async with FakeDiscord(shards=3) as fake:
        with fake.patch_discord():
            bot = build_sharded_bot(shard_count=0)
            bot.shard_count = None  # discord.py then asks GET /gateway/bot
            await bot.login(fake.bot_token)
            task = asyncio.create_task(bot.connect(reconnect=False))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout=10)
                assert fake.gateway.connected_shards() == [(0, 3), (1, 3), (2, 3)]
            finally:
                await bot.close()
                await asyncio.wait_for(task, timeout=5)


async def test_each_shard_gets_its_own_guilds_and_their_interactions(fake: FakeDiscord):
    first = fake.add_guild("on shard 0", shard=(0, 2))
    second = fake.add_guild("on shard 1", shard=(1, 2))
    channels = {g.id: fake.add_channel(g, "general") for g in (first, second)}
    alice = fake.add_user("alice")
    for guild in (first, second):
        fake.add_member(guild, alice)

    async with running_sharded_bot(fake, 2) as bot:
        assert fake.gateway.connected_shards() == [(0, 2), (1, 2)]
        sessions = sessions_by_shard(fake)
        assert guild_creates(sessions[0]) == {first.id}
        assert guild_creates(sessions[1]) == {second.id}
        for guild in (first, second):
            cached = bot.get_guild(guild.id)
            assert cached is not None and cached.shard_id == fake.shard_of(guild.id, 2)
            handle = await fake.invoke("where", user=alice, channel=channels[guild.id])
            message = await handle.wait_original()
            assert message.content == f"shard {fake.shard_of(guild.id, 2)}"
            [carrier] = [
                shard
                for shard, session in sessions.items()
                if any(
                    f["t"] == "INTERACTION_CREATE" and int(f["d"]["id"]) == handle.id
                    for f in session.frames
                )
            ]
            assert carrier == fake.shard_of(guild.id, 2)

        # A guild joined later, and its channel events, reach only the shard that serves it.
        later = fake.add_guild("later on shard 1", shard=(1, 2))
        fake.add_channel(later, "news")
        await fake.wait_for(lambda: bot.get_guild(later.id) is not None, timeout=5)
        assert later.id in guild_creates(sessions[1])
        assert not any(
            int((f["d"] or {}).get("guild_id") or (f["d"] or {}).get("id") or 0) == later.id
            for f in sessions[0].frames
            if isinstance(f["d"], dict)
        )


async def test_a_bot_running_some_shards_gets_nothing_of_the_others(fake: FakeDiscord):
    mine = fake.add_guild("mine", shard=(1, 2))
    theirs = fake.add_guild("theirs", shard=(0, 2))
    alice = fake.add_user("alice")
    for guild in (mine, theirs):
        fake.add_member(guild, alice)
    their_channel = fake.add_channel(theirs, "general")

    async with running_sharded_bot(fake, 2, shard_ids=[1]) as bot:
        assert fake.gateway.connected_shards() == [(1, 2)]
        assert [g.id for g in bot.guilds] == [mine.id]
        # No connected session serves shard 0: Discord delivers the interaction nowhere.
        with pytest.raises(FakeDiscordTimeout):
            await fake.invoke("where", user=alice, channel=their_channel, timeout=0.5)
        later_theirs = fake.add_guild("later theirs", shard=(0, 2))
        later_mine = fake.add_guild("later mine", shard=(1, 2))
        await fake.wait_for(lambda: bot.get_guild(later_mine.id) is not None, timeout=5)
        assert bot.get_guild(later_theirs.id) is None


def test_what_belongs_to_no_guild_goes_to_shard_zero_only():
    from fakediscord.gateway import GatewaySession

    assert GatewaySession("a", 0, (0, 2)).covers(None)
    assert not GatewaySession("b", 0, (1, 2)).covers(None)
    assert GatewaySession("c", 0, (0, 1)).covers(None)


async def _identify(fake: FakeDiscord, shard: list[int]) -> int | str | None:
    """IDENTIFY on a raw websocket: the close code, or the first dispatch's name."""
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.ws_url) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == 10
        identify = {"token": fake.bot_token, "intents": 1, "properties": {}, "shard": shard}
        await ws.send_json({"op": 2, "d": identify})
        async with asyncio.timeout(5):
            async for msg in ws:
                frame = msg.json()
                if frame["op"] == 0:
                    return str(frame["t"])
        return ws.close_code


async def test_identify_with_a_shard_outside_the_count_is_closed_4010(fake: FakeDiscord):
    assert await _identify(fake, [2, 2]) == 4010
    assert fake.gateway.identifies == 0


async def test_a_shard_over_the_guild_limit_is_closed_4011_sharding_required():
    async with FakeDiscord(max_guilds_per_shard=1) as fake:
        fake.add_guild("a", shard=(0, 2))
        fake.add_guild("b", shard=(0, 2))
        fake.add_guild("c", shard=(1, 2))
        assert await _identify(fake, [0, 1]) == 4011
        assert await _identify(fake, [0, 2]) == 4011
        assert await _identify(fake, [1, 2]) == "READY"
