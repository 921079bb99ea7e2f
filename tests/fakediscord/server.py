"""`FakeDiscord`: the world model, the HTTP/websocket server, and the test-facing API.

One aiohttp server on 127.0.0.1 serves the REST API under `/api/v10`, the gateway at `/ws`, and
stored files under `/attachments/…`. Point an unmodified discord.py at it with
`fake.patch_discord()` (REST base, gateway URL and CDN base are class attributes in discord.py).
"""

# The waits take `timeout=` by design: the test API bounds every wait explicitly.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import interactions as ix
from .commands import CommandRegistry
from .errors import FakeDiscordError
from .faults import FAULT_KINDS, FaultKind, FaultRule
from .gateway import (
    GUILD_MEMBERS_INTENT,
    GUILD_MESSAGES_INTENT,
    GUILDS_INTENT,
    Gateway,
    GatewaySession,
    shard_of,
)
from .interactions import (
    InteractionHandle,
    Upload,
    build_options,
    modal_submit_components,
    wait_until,
)
from .measure import EDIT_KINDS, EditKind, group_edits, most_in_window
from .messages import MessageStore
from .models import (
    LOADING,
    TIER_UPLOAD_LIMITS,
    Channel,
    Guild,
    Member,
    Message,
    MiB,
    Overwrite,
    RequestRecord,
    Role,
    Source,
    StoredFile,
    UploadedFile,
    User,
)
from .permissions import DEFAULT_BOT, DEFAULT_EVERYONE, channel_permissions
from .ratelimits import Limit, RateLimiter
from .rest import RestAPI
from .snowflake import SnowflakeFactory

# Seconds a message nonce is remembered ("a few minutes" in Discord's docs).
NONCE_MEMORY = 300.0
# Discord recommends about one shard per 1,000 guilds (it requires one per 2,500).
GUILDS_PER_RECOMMENDED_SHARD = 1000
# CHAT_INPUT_COMMAND messages are what Discord creates for slash-command responses.
_CHAT_INPUT_MESSAGE = 20


@dataclass
class RateLimitRule:
    method: str
    pattern: re.Pattern[str]
    retry_after: float
    remaining: int
    is_global: bool = False
    hits: int = 0


class FakeDiscord:
    """A local Discord (REST v10 + gateway) for driving the real discord.py client in tests."""

    def __init__(
        self,
        *,
        heartbeat_interval: int = 41250,
        callback_deadline: float = 3.0,
        token_lifetime: float = 900.0,
        bot_name: str = "pixbot",
        ratelimit_headers: bool = True,
        host: str = "127.0.0.1",
        enforce_rate_limits: bool = False,
        channel_message_limit: tuple[int, float] = Limit(5, 5.0),
        interaction_webhook_limit: tuple[int, float] = Limit(5, 2.0),
        route_limit: tuple[int, float] = Limit(50, 1.0),
        global_limit: tuple[int, float] = Limit(50, 1.0),
        shards: int | None = None,
        max_guilds_per_shard: int = 2500,
    ) -> None:
        """`enforce_rate_limits` turns on Discord's limits (see `ratelimits`), each a
        `(count, per_seconds)`: channel message create/edit/delete per channel, interaction
        webhook edits and followups per token, any other route per route and major parameter,
        and the global limit on requests with the bot token (interaction routes exempt).
        Without it, responses carry generous headers and only injected 429s happen.
        `shards` is the shard count `GET /gateway/bot` recommends (default: one per 1,000
        guilds); a session whose shard would serve more than `max_guilds_per_shard` guilds is
        closed with 4011 "Sharding required", as Discord does past 2,500."""
        self.shards = shards
        self.max_guilds_per_shard = max_guilds_per_shard
        self.heartbeat_interval = heartbeat_interval  # milliseconds, as in HELLO
        self.callback_deadline = callback_deadline  # seconds to the first callback
        self.token_lifetime = token_lifetime  # seconds an interaction token works for webhooks
        self.ratelimit_headers = ratelimit_headers
        self.enforce_rate_limits = enforce_rate_limits
        self.limiter = RateLimiter(
            channel_messages=Limit(*channel_message_limit),
            interaction_webhooks=Limit(*interaction_webhook_limit),
            routes=Limit(*route_limit),
            global_limit=Limit(*global_limit),
        )
        self.host = host
        self.snowflakes = SnowflakeFactory()
        # Modern applications share their id with their bot user.
        self.application_id = self.snowflakes.next()
        self.application_flags = (1 << 23) | (1 << 19) | (1 << 15)
        self.bot_user = User(self.application_id, bot_name, bot=True)
        self.app_owner = User(self.snowflakes.next(), f"{bot_name}-owner")
        encoded = base64.urlsafe_b64encode(str(self.application_id).encode()).decode().rstrip("=")
        self.bot_token = f"{encoded}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(27)}"
        self.users: dict[int, User] = {u.id: u for u in (self.bot_user, self.app_owner)}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.commands = CommandRegistry(self.application_id, self.snowflakes)
        self.store = MessageStore(self.snowflakes, "http://127.0.0.1:0")
        self.interactions: dict[int, InteractionHandle] = {}
        self.interactions_by_token: dict[str, InteractionHandle] = {}
        self.modals: dict[str, tuple[dict[str, Any], InteractionHandle]] = {}
        self.request_log: list[RequestRecord] = []
        self.gateway_log: list[tuple[float, str, dict[str, Any]]] = []
        self.file_downloads: list[StoredFile] = []
        # Seconds an attachment download waits before its answer (`hang_attachments`), and
        # how many requests were held so.
        self.attachment_hang = 0.0
        self.attachments_hung = 0
        self.rate_limits: list[RateLimitRule] = []
        self._nonces: dict[tuple[int, str], tuple[Message, float]] = {}
        self.rate_limited: list[RequestRecord] = []  # answered 429, enforced or injected
        self.faults: list[FaultRule] = []
        self.gateway = Gateway(self)
        self.rest = RestAPI(self)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=1024 * MiB)
        app.router.add_route("*", "/api/v{version}/{tail:.*}", self.rest.handle)
        app.router.add_get("/ws", self.gateway.handle)
        app.router.add_get("/ws/", self.gateway.handle)
        app.router.add_get("/attachments/{file_id}/{filename}", self._serve_file)
        app.router.add_route("*", "/cdn/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.store.base_url = self.base_url
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        await self.gateway.close_all(1001, "Fake Discord stopping")
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[FakeDiscord]:
        """Point discord.py's REST base, default gateway and CDN base at this fake (restored on
        exit). discord.py 2.7's `Client.connect` never asks `/gateway/bot`: it dials
        `DiscordWebSocket.DEFAULT_GATEWAY`, so that must be patched too."""
        # Imported here so the fake's models and server work without discord.py loaded.
        import discord.asset
        import discord.gateway
        import discord.http
        import yarl

        if self._runner is None:
            raise FakeDiscordError("start the fake before patching discord.py")
        route, gateway = discord.http.Route, discord.gateway.DiscordWebSocket
        saved = (route.BASE, gateway.DEFAULT_GATEWAY, discord.asset.Asset.BASE)
        route.BASE = self.api_base
        gateway.DEFAULT_GATEWAY = yarl.URL(self.ws_url)
        discord.asset.Asset.BASE = f"{self.base_url}/cdn"
        try:
            yield self
        finally:
            route.BASE, gateway.DEFAULT_GATEWAY, discord.asset.Asset.BASE = saved

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        try:
            stored = self.store.files.get(int(request.match_info["file_id"]))
        except ValueError:
            stored = None
        if stored is None or stored.expired or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="This content is no longer available.")
        if self.attachment_hang > 0:
            self.attachments_hung += 1
            self.notify()
            # Bounded; the server's shutdown ends a sleep still running.
            await asyncio.sleep(self.attachment_hang)
        self.file_downloads.append(stored)
        self.notify()
        return web.Response(
            body=stored.data, content_type=stored.content_type or "application/octet-stream"
        )

    def hang_attachments(self, seconds: float) -> None:
        """Make every attachment download wait ``seconds`` before it is answered, as a
        stalled CDN would (0: answer at once again)."""
        self.attachment_hang = seconds

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="Not Found")

    # -- change notification and waiting -----------------------------------------------------
    def notify(self) -> None:
        """Wake every waiter; called on each state change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, *, what: str = "condition"
    ) -> None:
        """Wait (bounded) until `predicate()` is truthy; raises FakeDiscordTimeout."""
        await wait_until(lambda: self._changed, lambda: bool(predicate()), timeout, what)

    async def wait_until_ready(self, timeout: float = 5.0) -> None:
        """Until a bot has identified and been sent READY (its GUILD_CREATEs follow in order)."""
        await self.wait_for(
            lambda: self.gateway.connected_sessions(), timeout, what="a bot to identify"
        )

    async def wait_for_message(
        self,
        channel: Channel,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 5.0,
    ) -> Message:
        """The first live message in `channel` that matches `predicate`."""
        found: list[Message] = []

        def check() -> bool:
            for message in self.messages_in(channel):
                if predicate is None or predicate(message):
                    found.append(message)
                    return True
            return False

        await self.wait_for(check, timeout, what=f"a message in {channel!r}")
        return found[0]

    # -- world model -------------------------------------------------------------------------
    @staticmethod
    def shard_of(guild_id: int, shard_count: int) -> int:
        """The shard Discord sends a guild's events and interactions to."""
        return shard_of(guild_id, shard_count)

    @property
    def recommended_shards(self) -> int:
        """What `GET /gateway/bot` recommends: `shards` if set, else one per 1,000 guilds."""
        if self.shards is not None:
            return self.shards
        return max(1, -(-len(self.guilds) // GUILDS_PER_RECOMMENDED_SHARD))

    def add_user(self, name: str, *, bot: bool = False, global_name: str | None = None) -> User:
        user = User(self.snowflakes.next(), name, global_name=global_name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner: User | None = None,
        premium_tier: int = 0,
        filesize_limit_mib: float | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE,
        bot_permissions: int = DEFAULT_BOT,
        locale: str = "en-US",
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A guild with @everyone, the bot's managed role and member, and its owner as a member.
        `filesize_limit_mib` overrides the upload limit the boost tier gives. `shard`
        `(shard_id, shard_count)` picks an id that this shard serves (`shard_of`)."""
        guild_id = self.snowflakes.on_shard(*shard) if shard else self.snowflakes.next()
        owner = owner or self.add_user(f"{name}-owner")
        limit = (
            int(filesize_limit_mib * MiB)
            if filesize_limit_mib is not None
            else TIER_UPLOAD_LIMITS[premium_tier]
        )
        guild = Guild(
            id=guild_id,
            name=name,
            owner_id=owner.id,
            premium_tier=premium_tier,
            attachment_size_limit=limit,
            locale=locale,
        )
        guild.roles[guild.id] = Role(
            guild.id, guild.id, "@everyone", everyone_permissions, position=0
        )
        bot_role = Role(
            self.snowflakes.next(),
            guild.id,
            self.bot_user.name,
            bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[self.bot_user.id] = Member(self.bot_user, guild.id, [bot_role.id])
        guild.members[owner.id] = Member(owner, guild.id, [])
        self.guilds[guild.id] = guild
        for session in self.gateway.live_sessions():
            if session.covers(guild.id):
                session.dispatch(
                    "GUILD_CREATE", self.guild_create_payload(guild, session, available=False)
                )
        self.notify()
        return guild

    def add_channel(self, guild: Guild, name: str, *, topic: str | None = None) -> Channel:
        channel = Channel(
            self.snowflakes.next(), name, guild, type=0, position=len(guild.channels), topic=topic
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self._broadcast("CHANNEL_CREATE", channel.to_payload(), guild.id, GUILDS_INTENT)
        return channel

    def add_role(
        self,
        guild: Guild,
        name: str,
        permissions: int = 0,
        *,
        mentionable: bool = False,
        color: int = 0,
    ) -> Role:
        role = Role(
            self.snowflakes.next(),
            guild.id,
            name,
            permissions,
            position=len(guild.roles),
            mentionable=mentionable,
            color=color,
        )
        guild.roles[role.id] = role
        self._broadcast(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(guild.id), "role": role.to_payload()},
            guild.id,
            GUILDS_INTENT,
        )
        return role

    def add_member(
        self,
        guild: Guild,
        user: User,
        roles: list[Role] | tuple[Role, ...] = (),
        *,
        permissions: int | None = None,
        nick: str | None = None,
    ) -> Member:
        """Make `user` a member; `permissions` (optional) overrides what the roles give."""
        for role in roles:
            if role.guild_id != guild.id:
                raise FakeDiscordError(f"{role!r} is not in {guild!r}")
        member = Member(user, guild.id, [r.id for r in roles if not r.is_everyone], nick=nick)
        member.permissions_override = permissions
        existed = user.id in guild.members
        guild.members[user.id] = member
        self.users.setdefault(user.id, user)
        event = "GUILD_MEMBER_UPDATE" if existed else "GUILD_MEMBER_ADD"
        self._broadcast(
            event,
            {**member.to_payload(), "guild_id": str(guild.id)},
            guild.id,
            GUILD_MEMBERS_INTENT,
        )
        return member

    def set_roles(self, guild: Guild, user: User, roles: list[Role]) -> Member:
        member = self._member(guild, user)
        return self.add_member(
            guild, user, roles, permissions=member.permissions_override, nick=member.nick
        )

    def set_overwrite(
        self, channel: Channel, target: Role | User | Member, *, allow: int = 0, deny: int = 0
    ) -> None:
        """A channel permission overwrite for a role or a member (Discord's algorithm applies)."""
        if channel.guild is None:
            raise FakeDiscordError("DM channels have no overwrites")
        if isinstance(target, Role):
            overwrite = Overwrite(target.id, 0, allow, deny)
        else:
            user = target.user if isinstance(target, Member) else target
            overwrite = Overwrite(user.id, 1, allow, deny)
        channel.overwrites[overwrite.id] = overwrite
        self._broadcast("CHANNEL_UPDATE", channel.to_payload(), channel.guild.id, GUILDS_INTENT)

    def delete_channel(self, channel: Channel) -> None:
        """Delete a server channel as an admin would. Its messages go with it: later edits get
        404 (Unknown Message through an interaction webhook, Unknown Channel on the channel
        routes), and bots hear CHANNEL_DELETE."""
        if channel.guild is None:
            raise FakeDiscordError("only server channels can be deleted")
        channel.guild.channels.pop(channel.id, None)
        self.channels.pop(channel.id, None)
        for message in self.store.by_channel.get(channel.id, []):
            if not message.deleted:
                self.store.delete(message, "channel")
        self._broadcast("CHANNEL_DELETE", channel.to_payload(), channel.guild.id, GUILDS_INTENT)

    def set_bot_permissions(self, channel: Channel, permissions: int) -> None:
        """Give the bot exactly `permissions` in `channel` (via a member overwrite), e.g. to take
        Send Messages away. This is also the `app_permissions` of interactions there."""
        if channel.guild is None:
            raise FakeDiscordError("DM channels have no overwrites")
        member = self._member(channel.guild, self.bot_user)
        channel.overwrites.pop(self.bot_user.id, None)
        current = channel_permissions(channel.guild, member, channel)
        self.set_overwrite(
            channel, self.bot_user, allow=permissions & ~current, deny=current & ~permissions
        )

    def permissions_for(
        self, who: User | Member, channel: Channel | None, guild: Guild | None = None
    ) -> int:
        guild = guild or (channel.guild if channel else None)
        if guild is None:
            raise FakeDiscordError("permissions need a guild")
        member = who if isinstance(who, Member) else self._member(guild, who)
        return channel_permissions(guild, member, channel)

    def bot_permissions(self, channel: Channel) -> int:
        if channel.guild is None:
            return DEFAULT_BOT
        return self.permissions_for(self.bot_user, channel)

    def dm_channel(self, user: User) -> Channel:
        for channel in self.channels.values():
            if channel.guild is None and channel.recipients == [user]:
                return channel
        channel = Channel(self.snowflakes.next(), "", None, type=1, recipients=[user])
        self.channels[channel.id] = channel
        return channel

    def guild_create_payload(
        self, guild: Guild, session: GatewaySession, *, available: bool
    ) -> dict[str, Any]:
        """GUILD_CREATE as a session gets it: members only with the GUILD_MEMBERS intent."""
        if session.has_intent(GUILD_MEMBERS_INTENT):
            members = list(guild.members.values())
        else:
            members = [guild.members[self.bot_user.id]]
        payload = guild.to_payload(members=members)
        if not available:
            del payload["unavailable"]  # a newly joined guild, not one coming back
        return payload

    def _member(self, guild: Guild, user: User | Member) -> Member:
        member = guild.member(user)
        if member is None:
            raise FakeDiscordError(f"{user!r} is not a member of {guild!r}")
        return member

    def _broadcast(self, event: str, data: Any, guild_id: int | None, intent: int | None) -> None:
        self.gateway.broadcast(event, data, guild_id=guild_id, intent=intent)
        self.notify()

    # -- messages ----------------------------------------------------------------------------
    def messages_in(
        self, channel: Channel, *, include_deleted: bool = False, include_ephemeral: bool = True
    ) -> list[Message]:
        """Messages in `channel`, oldest first."""
        return [
            m
            for m in self.store.by_channel.get(channel.id, [])
            if (include_deleted or not m.deleted) and (include_ephemeral or not m.ephemeral)
        ]

    def get_message(self, message_id: int) -> Message:
        try:
            return self.store.by_id[message_id]
        except KeyError:
            raise FakeDiscordError(f"no message {message_id}") from None

    def delete_message(self, channel: Channel | int, message: Message | int) -> None:
        """Delete a message as a user would: later edits of it get 404 / 10008."""
        message = message if isinstance(message, Message) else self.get_message(message)
        channel_id = channel if isinstance(channel, int) else channel.id
        if message.channel.id != channel_id:
            raise FakeDiscordError(f"{message!r} is not in channel {channel_id}")
        self.remove_message(message, by="user")

    def expire_attachment_urls(self) -> None:
        """Every stored file's URL stops working, as Discord's signed CDN links do."""
        for stored in self.store.files.values():
            stored.expired = True

    def upload_limit(self, channel: Channel) -> int:
        return channel.guild.attachment_size_limit if channel.guild else 10 * MiB

    def create_interaction_message(
        self,
        handle: InteractionHandle,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        source: Source,
        route: str,
        flags: int = 0,
        followup: bool = False,
    ) -> Message:
        metadata: dict[str, Any] = {
            "id": str(handle.id),
            "type": handle.type,
            "user": handle.user.to_payload(),
            "authorizing_integration_owners": {"0": str(handle.guild_id)}
            if handle.guild_id
            else {"1": str(handle.user.id)},
        }
        if handle.type == ix.APPLICATION_COMMAND and handle.name:
            metadata["name"] = handle.name
        if handle.message is not None:
            metadata["interacted_message_id"] = str(handle.message.id)
        if followup and handle.original is not None:
            metadata["original_response_message_id"] = str(handle.original.id)
        message = self.store.create(
            handle.channel,
            self.bot_user,
            payload,
            files,
            source=source,
            route=route,
            users=self.users,
            upload_limit=self.upload_limit(handle.channel),
            extra_flags=flags,
            allow_empty=bool(flags & LOADING),
            message_type=_CHAT_INPUT_MESSAGE if handle.type == ix.APPLICATION_COMMAND else 0,
            webhook_id=self.application_id,
            application_id=self.application_id,
            interaction_id=handle.id,
            interaction_metadata=metadata,
        )
        self._message_event("MESSAGE_CREATE", message)
        return message

    def create_channel_message(
        self, channel: Channel, payload: dict[str, Any], files: list[UploadedFile], *, route: str
    ) -> Message:
        # Discord: with `enforce_nonce`, a nonce the same author used in this channel in the
        # last few minutes returns that message instead of creating a second one.
        nonce = payload.get("nonce") if payload.get("enforce_nonce") else None
        key = (channel.id, str(nonce))
        if nonce is not None:
            earlier = self._nonces.get(key)
            if earlier is not None and time.monotonic() - earlier[1] < NONCE_MEMORY:
                return earlier[0]
        message = self.store.create(
            channel,
            self.bot_user,
            payload,
            files,
            source="channel",
            route=route,
            users=self.users,
            upload_limit=self.upload_limit(channel),
        )
        self._message_event("MESSAGE_CREATE", message)
        if nonce is not None:
            self._nonces[key] = (message, time.monotonic())
        return message

    def edit_message(
        self,
        message: Message,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        source: Source,
        route: str,
    ) -> Message:
        self.store.edit(
            message,
            payload,
            files,
            source=source,
            route=route,
            users=self.users,
            upload_limit=self.upload_limit(message.channel),
        )
        self._message_event("MESSAGE_UPDATE", message)
        return message

    def remove_message(self, message: Message, *, by: str) -> None:
        self.store.delete(message, by)
        if not message.ephemeral:
            data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel.id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            self._broadcast("MESSAGE_DELETE", data, message.guild_id, GUILD_MESSAGES_INTENT)
        self.notify()

    def _message_event(self, event: str, message: Message) -> None:
        if message.ephemeral:
            return  # ephemeral messages are never dispatched
        data = message.to_payload(with_guild_id=True)
        guild = message.channel.guild
        if guild is not None and message.author.id in guild.members:
            data["member"] = guild.members[message.author.id].to_payload(with_user=False)
        self._broadcast(event, data, message.guild_id, GUILD_MESSAGES_INTENT)

    # -- application commands ----------------------------------------------------------------
    def synced_commands(self, guild: Guild | None = None) -> list[dict[str, Any]]:
        return self.commands.in_scope(guild.id if guild else None)

    def command(self, name: str, guild: Guild | None = None) -> dict[str, Any]:
        for definition in self.synced_commands(guild):
            if definition["name"] == name:
                return definition
        raise FakeDiscordError(
            f"no command {name!r} synced in {'guild ' + guild.name if guild else 'global'} scope"
        )

    def sync_count(self, guild: Guild | None = None) -> int:
        """How many bulk overwrites (`tree.sync`) this scope got."""
        return self.commands.sync_counts[guild.id if guild else None]

    # -- interactions ------------------------------------------------------------------------
    async def invoke(
        self,
        command: str,
        *,
        user: User | Member,
        channel: Channel,
        guild: Guild | None = None,
        options: dict[str, Any] | None = None,
        attachments: dict[str, Upload] | None = None,
        locale: str = "en-US",
        strict: bool = True,
        backdate: float = 0.0,
        timeout: float = 5.0,
    ) -> InteractionHandle:
        """Run a slash command as `user`, e.g. `invoke("quota-admin set", options={...})`.

        Options are checked against the synced definition (names, types, required; with
        `strict`, also choices and ranges, which Discord's client enforces). Attachment options
        take `(filename, bytes[, content_type])`, in `options` or `attachments`.
        `backdate` makes the interaction that many seconds old at dispatch (its snowflake too,
        so discord.py's `Interaction.is_expired()` agrees with the fake's token lifetime)."""
        merged = dict(options or {})
        for name, upload in (attachments or {}).items():
            if name in merged:
                raise FakeDiscordError(f"option {name!r} given twice")
            merged[name] = upload
        handle = self._command_interaction(
            ix.APPLICATION_COMMAND,
            command,
            user,
            channel,
            guild,
            merged,
            locale,
            strict=strict,
            backdate=backdate,
        )
        await self._dispatch(handle, timeout)
        return handle

    async def autocomplete(
        self,
        command: str,
        *,
        focused: str,
        user: User | Member,
        channel: Channel,
        guild: Guild | None = None,
        options: dict[str, Any] | None = None,
        locale: str = "en-US",
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Type into option `focused` (its text is `options[focused]`, default "") and return the
        choices the bot answered with (callback type 8)."""
        merged = dict(options or {})
        merged.setdefault(focused, "")
        handle = self._command_interaction(
            ix.APPLICATION_COMMAND_AUTOCOMPLETE,
            command,
            user,
            channel,
            guild,
            merged,
            locale,
            strict=False,
            focused=focused,
        )
        await self._dispatch(handle, timeout)
        callback = await handle.response(timeout)
        if not callback.accepted or callback.type != ix.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
            raise FakeDiscordError(f"autocomplete of {command!r} got {callback!r}")
        return list(handle.autocomplete_choices or [])

    def _command_interaction(
        self,
        kind: int,
        command: str,
        user: User | Member,
        channel: Channel,
        guild: Guild | None,
        options: dict[str, Any],
        locale: str,
        *,
        strict: bool,
        focused: str | None = None,
        backdate: float = 0.0,
    ) -> InteractionHandle:
        guild = self._guild_of(channel, guild)
        guild_id = guild.id if guild else None
        path = self.commands.resolve(command, guild_id)
        opts, resolved = build_options(
            self,
            path,
            guild_id=guild_id,
            channel=channel,
            invoker=self._invoker(guild, user),
            options=options,
            strict=strict,
            focused=focused,
        )
        data: dict[str, Any] = {
            "id": path.definition["id"],
            "name": path.definition["name"],
            "type": path.definition["type"],
            "options": opts,
        }
        if resolved:
            data["resolved"] = resolved
        if path.scope is not None:
            data["guild_id"] = str(path.scope)
        return self._new_interaction(
            kind,
            data,
            user,
            guild,
            channel,
            locale=locale,
            name=path.qualified_name,
            backdate=backdate,
        )

    async def click(
        self,
        message: Message,
        custom_id: str,
        *,
        user: User | Member,
        values: list[str] | None = None,
        locale: str = "en-US",
        backdate: float = 0.0,
        timeout: float = 5.0,
    ) -> InteractionHandle:
        """Press a button (or pick `values` in a select) on `message` as `user`."""
        if message.deleted:
            raise FakeDiscordError(f"{message!r} was deleted")
        component = message.find_component(custom_id)
        if component is None:
            raise FakeDiscordError(
                f"{message!r} has no component {custom_id!r}; it has {message.custom_ids()}"
            )
        if component.get("disabled"):
            raise FakeDiscordError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = list(values or [])
        handle = self._new_interaction(
            ix.MESSAGE_COMPONENT,
            data,
            user,
            message.channel.guild,
            message.channel,
            message=message,
            locale=locale,
            name=custom_id,
            backdate=backdate,
        )
        await self._dispatch(handle, timeout)
        return handle

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, Any],
        *,
        user: User | Member,
        channel: Channel | None = None,
        guild: Guild | None = None,
        message: Message | None = None,
        locale: str = "en-US",
        timeout: float = 5.0,
        forged: bool = False,
    ) -> InteractionHandle:
        """Submit the modal the bot opened with `custom_id`, filling its inputs with `values`
        (custom_id → text, or list of values for selects). With `forged`, submit a form the
        bot never opened (a stale or forged client): one action row per text input, in
        `channel`."""
        opened = self.modals.get(custom_id)
        if forged:
            if channel is None:
                raise FakeDiscordError("a forged modal submit needs its channel")
            modal: dict[str, Any] | None = None
        elif opened is None:
            raise FakeDiscordError(
                f"the bot never opened a modal {custom_id!r}; opened: {sorted(self.modals)}"
            )
        else:
            modal, origin = opened
            channel = channel or origin.channel
            message = message or origin.message
        guild = self._guild_of(channel, guild)
        data = {
            "custom_id": custom_id,
            "components": modal_submit_components(modal, values, custom_id),
        }
        handle = self._new_interaction(
            ix.MODAL_SUBMIT,
            data,
            user,
            guild,
            channel,
            message=message,
            locale=locale,
            name=custom_id,
        )
        await self._dispatch(handle, timeout)
        return handle

    def expire_token(self, handle: InteractionHandle) -> None:
        """End the interaction's token now: callbacks get 10062, webhook routes 401 / 50027."""
        handle.expired = True
        self.notify()

    def _guild_of(self, channel: Channel, guild: Guild | None) -> Guild | None:
        if guild is not None and channel.guild is not guild:
            raise FakeDiscordError(f"{channel!r} is not in {guild!r}")
        return channel.guild

    def _invoker(self, guild: Guild | None, user: User | Member) -> Member | None:
        if guild is None:
            return None
        return self._member(guild, user)

    def _new_interaction(
        self,
        kind: int,
        data: dict[str, Any],
        user: User | Member,
        guild: Guild | None,
        channel: Channel,
        *,
        message: Message | None = None,
        locale: str,
        name: str,
        backdate: float = 0.0,
    ) -> InteractionHandle:
        user = user.user if isinstance(user, Member) else user
        interaction_id = self.snowflakes.past(backdate) if backdate else self.snowflakes.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "channel_id": str(channel.id),
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
        }
        if guild is not None:
            member = self._member(guild, user)
            perms = channel_permissions(guild, member, channel)
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
                    "guild_locale": guild.locale,
                    "channel": channel.to_payload(permissions=perms),
                    "member": member.to_payload(permissions=perms),
                    "app_permissions": str(self.bot_permissions(channel)),
                    "authorizing_integration_owners": {"0": str(guild.id)},
                    "context": 0,
                    "attachment_size_limit": guild.attachment_size_limit,
                }
            )
        else:
            payload.update(
                {
                    "channel": channel.to_payload(),
                    "user": user.to_payload(),
                    "app_permissions": str(DEFAULT_BOT),
                    "authorizing_integration_owners": {"1": str(user.id)},
                    "context": 1,
                    "attachment_size_limit": 10 * MiB,
                }
            )
        if message is not None:
            payload["message"] = message.to_payload(with_guild_id=True)
        handle = InteractionHandle(
            self,
            id=interaction_id,
            token=token,
            type=kind,
            payload=payload,
            user=user,
            guild_id=guild.id if guild else None,
            channel=channel,
            message=message,
            name=name,
        )
        handle.backdate = backdate
        self.interactions[interaction_id] = handle
        self.interactions_by_token[token] = handle
        return handle

    async def _dispatch(self, handle: InteractionHandle, timeout: float) -> None:
        def target() -> GatewaySession | None:
            sessions = [s for s in self.gateway.connected_sessions() if s.covers(handle.guild_id)]
            return max(sessions, key=lambda s: s.ready_at or 0.0) if sessions else None

        await self.wait_for(
            lambda: target() is not None, timeout, what="a connected bot to dispatch to"
        )
        session = target()
        assert session is not None
        future = session.dispatch("INTERACTION_CREATE", handle.payload)
        if future is None:
            raise FakeDiscordError("the bot disconnected before the interaction was sent")
        sent_at = await asyncio.wait_for(future, timeout)
        if sent_at is None:
            raise FakeDiscordError("the bot disconnected before the interaction was sent")
        handle.dispatched_at = sent_at
        self.notify()

    def record_modal(self, handle: InteractionHandle, modal: dict[str, Any]) -> None:
        handle.modal = modal
        self.modals[modal["custom_id"]] = (modal, handle)

    # -- rate limits and request log ---------------------------------------------------------
    def rate_limit(
        self,
        method: str,
        path_regex: str,
        retry_after: float,
        count: int = 1,
        *,
        is_global: bool = False,
    ) -> RateLimitRule:
        """Answer the next `count` requests matching `method` ("*" for any) and `path_regex`
        (searched in the path after /api/v10) with 429 and `retry_after`."""
        rule = RateLimitRule(method.upper(), re.compile(path_regex), retry_after, count, is_global)
        self.rate_limits.append(rule)
        return rule

    def take_rate_limit(self, method: str, path: str) -> RateLimitRule | None:
        for rule in self.rate_limits:
            if rule.remaining > 0 and rule.method in ("*", method) and rule.pattern.search(path):
                rule.remaining -= 1
                rule.hits += 1
                return rule
        return None

    def inject_fault(
        self,
        method: str,
        path_regex: str,
        kind: FaultKind,
        count: int = 1,
        *,
        status: int = 503,
        after_apply: bool = False,
    ) -> FaultRule:
        """Break the next `count` requests matching `method` ("*" for any) and `path_regex`
        (searched in the path after /api/v10), before rate limits are checked.

        kind "status": answer `status` (a 5xx) with {"message", "code": 0}; "drop": abort the
        connection without an answer. With `after_apply` the request is served first (e.g. the
        message really is edited) and only its answer is replaced or lost."""
        if kind not in FAULT_KINDS:
            raise FakeDiscordError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
        if kind == "status" and not 500 <= status <= 599:
            raise FakeDiscordError(f"a status fault is a server error (5xx), not {status}")
        rule = FaultRule(method.upper(), re.compile(path_regex), kind, count, status, after_apply)
        self.faults.append(rule)
        return rule

    def take_fault(self, method: str, path: str) -> FaultRule | None:
        for rule in self.faults:
            if rule.matches(method, path):
                rule.remaining -= 1
                rule.hits += 1
                return rule
        return None

    # -- measurements ------------------------------------------------------------------------
    def _channel_of_token(self, token: str) -> int | None:
        handle = self.interactions_by_token.get(token)
        return handle.channel.id if handle is not None else None

    def edits_by_channel(
        self, *, successful_only: bool = False
    ) -> dict[int, dict[EditKind, list[RequestRecord]]]:
        """Message edit requests per channel id and kind ("webhook": PATCH through an
        interaction token; "channel": PATCH /channels/{c}/messages/{m}), in time order. Every
        attempt counts (429s, faults) unless `successful_only`."""
        return group_edits(
            self.request_log, self._channel_of_token, successful_only=successful_only
        )

    def most_edits_in_window(
        self, window: float = 5.0, *, successful_only: bool = False
    ) -> dict[str, int]:
        """For each edit kind, the most edits on one channel within any `window`-second span
        (half-open, so a bot that keeps to N per `window` scores at most N)."""
        best: dict[str, int] = dict.fromkeys(EDIT_KINDS, 0)
        for kinds in self.edits_by_channel(successful_only=successful_only).values():
            for kind, edits in kinds.items():
                best[kind] = max(best[kind], most_in_window([r.at for r in edits], window))
        return best

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Logged requests, filtered by method and a regex searched in the path."""
        pattern = re.compile(path) if path else None
        return [
            r
            for r in self.request_log
            if (method is None or r.method == method.upper())
            and (pattern is None or pattern.search(r.path))
        ]

    @property
    def unhandled_requests(self) -> list[RequestRecord]:
        """Requests to routes the fake does not implement (answered 404)."""
        return [r for r in self.request_log if not r.handled]

    # -- gateway control ---------------------------------------------------------------------
    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway connection with `code`; discord.py reconnects and RESUMEs."""
        await self.gateway.close_all(code, "dropped by the test")

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT to every connection."""
        for connection in list(self.gateway.connections):
            if not connection.closed:
                connection.send({"op": 7, "d": None, "s": None, "t": None})

    @property
    def resume_count(self) -> int:
        return self.gateway.resumes

    def __repr__(self) -> str:
        return f"<FakeDiscord {self.base_url} guilds={len(self.guilds)}>"
