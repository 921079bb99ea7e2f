"""The fake's world: users, guilds, roles, channels, members, messages, stored files.

Each model renders itself as the JSON Discord would send (`to_payload`). Tests read the models
directly for assertions; the ids are real-looking snowflakes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Literal

from .permissions import ALL_PERMISSIONS

EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15

MiB = 1024 * 1024

# Upload limit per boost tier (https://support.discord.com/hc/en-us/articles/360028038352).
TIER_UPLOAD_LIMITS = {0: 10 * MiB, 1: 10 * MiB, 2: 50 * MiB, 3: 100 * MiB}

# Where a message's state came from: the interaction callback (types 4/5/7), the interaction
# webhook (token routes), a followup that replaced a deferred "thinking" message, or the channel
# routes with the bot token.
Source = Literal["callback", "webhook", "followup", "channel"]


def iso(ts: datetime.datetime) -> str:
    return ts.isoformat()


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(eq=False)
class User:
    id: int
    name: str
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }

    def __repr__(self) -> str:
        return f"<User {self.name} id={self.id}>"


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    color: int = 0
    mentionable: bool = False
    hoist: bool = False
    managed: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    @property
    def is_everyone(self) -> bool:
        return self.id == self.guild_id

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {
                "primary_color": self.color,
                "secondary_color": None,
                "tertiary_color": None,
            },
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            payload["tags"] = {"bot_id": str(self.bot_id)}
        return payload

    def __repr__(self) -> str:
        return f"<Role {self.name} id={self.id}>"


@dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "allow": str(self.allow),
            "deny": str(self.deny),
        }


@dataclass(eq=False)
class Channel:
    id: int
    name: str
    guild: Guild | None
    type: int = 0  # 0 GUILD_TEXT, 1 DM
    position: int = 0
    topic: str | None = None
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    recipients: list[User] = field(default_factory=list)
    last_message_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def guild_id(self) -> int | None:
        return self.guild.id if self.guild is not None else None

    def to_payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        if self.guild is None:
            return {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": _opt_str(self.last_message_id),
                "recipients": [u.to_payload() for u in self.recipients],
                "flags": 0,
            }
        payload: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild.id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.to_payload() for o in self.overwrites.values()],
            "nsfw": False,
            "topic": self.topic,
            "parent_id": None,
            "rate_limit_per_user": 0,
            "last_message_id": _opt_str(self.last_message_id),
            "last_pin_timestamp": None,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload

    def __repr__(self) -> str:
        return f"<Channel #{self.name} id={self.id}>"


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: datetime.datetime = field(default_factory=utcnow)
    # When set, this is the member's permissions everywhere, whatever their roles say.
    permissions_override: int | None = None

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    def to_payload(
        self, *, with_user: bool = True, permissions: int | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            payload["user"] = self.user.to_payload()
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload

    def __repr__(self) -> str:
        return f"<Member {self.user.name} guild={self.guild_id}>"


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    attachment_size_limit: int = 10 * MiB
    locale: str = "en-US"
    roles: dict[int, Role] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    joined_at: datetime.datetime = field(default_factory=utcnow)

    @property
    def everyone_role(self) -> Role:
        return self.roles[self.id]

    def member(self, user: User | Member | int) -> Member | None:
        return self.members.get(_user_id(user))

    def to_payload(
        self, *, members: list[Member] | None = None, full: bool = True
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}.get(self.premium_tier, 0),
            "premium_progress_bar_enabled": False,
            "preferred_locale": self.locale,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "features": [],
            "roles": [r.to_payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
        }
        if full:
            payload.update(
                {
                    "joined_at": iso(self.joined_at),
                    "large": False,
                    "unavailable": False,
                    "member_count": len(self.members),
                    "channels": [c.to_payload() for c in self.channels.values()],
                    "members": [m.to_payload() for m in members or []],
                    "threads": [],
                    "presences": [],
                    "voice_states": [],
                    "stage_instances": [],
                    "guild_scheduled_events": [],
                    "soundboard_sounds": [],
                    "embedded_activities": [],
                }
            )
        return payload

    def __repr__(self) -> str:
        return f"<Guild {self.name} id={self.id}>"


@dataclass(eq=False)
class StoredFile:
    """Bytes the fake holds and serves at `url` (user uploads and files the bot sent)."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False
    expired: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.width is not None and self.height is not None:
            payload["width"] = self.width
            payload["height"] = self.height
        if self.description is not None:
            payload["description"] = self.description
        if self.ephemeral:
            payload["ephemeral"] = True
        return payload

    def __repr__(self) -> str:
        return f"<StoredFile {self.filename} {self.size} bytes id={self.id}>"


@dataclass(frozen=True)
class MessageSnapshot:
    """One state of a message: at creation and after each edit."""

    at: float  # time.monotonic()
    source: Source
    route: str
    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: list[StoredFile]
    flags: int
    allowed_mentions: dict[str, Any] | None
    mention_users: tuple[User, ...]
    mention_role_ids: frozenset[int]
    mention_everyone: bool

    @property
    def mention_user_ids(self) -> frozenset[int]:
        """Users this state pings (after `allowed_mentions`)."""
        return frozenset(u.id for u in self.mention_users)

    @property
    def pings_anyone(self) -> bool:
        return bool(self.mention_users or self.mention_role_ids or self.mention_everyone)

    @property
    def filenames(self) -> list[str]:
        return [a.filename for a in self.attachments]


@dataclass(eq=False)
class Message:
    id: int
    channel: Channel
    author: User
    created_at: float  # time.monotonic()
    timestamp: datetime.datetime
    type: int = 0
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    tts: bool = False
    history: list[MessageSnapshot] = field(default_factory=list)
    edited_timestamp: datetime.datetime | None = None
    deleted: bool = False
    deleted_by: str | None = None

    # -- current state, from the latest snapshot --------------------------------------------
    @property
    def current(self) -> MessageSnapshot:
        return self.history[-1]

    @property
    def content(self) -> str:
        return self.current.content

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.current.embeds

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.current.components

    @property
    def attachments(self) -> list[StoredFile]:
        return self.current.attachments

    @property
    def flags(self) -> int:
        return self.current.flags

    @property
    def allowed_mentions(self) -> dict[str, Any] | None:
        return self.current.allowed_mentions

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Still the "Bot is thinking…" placeholder of a deferred interaction."""
        return bool(self.flags & LOADING)

    @property
    def edits(self) -> list[MessageSnapshot]:
        return self.history[1:]

    @property
    def edit_sources(self) -> list[Source]:
        return [s.source for s in self.edits]

    @property
    def files(self) -> dict[str, bytes]:
        return {a.filename: a.data for a in self.attachments}

    @property
    def guild_id(self) -> int | None:
        return self.channel.guild_id

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        for component in walk_components(self.components):
            if component.get("custom_id") == custom_id:
                return component
        return None

    def to_payload(self, *, with_guild_id: bool = False) -> dict[str, Any]:
        snap = self.current
        payload: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel.id),
            "type": self.type,
            "author": self.author.to_payload(),
            "content": snap.content,
            "timestamp": iso(self.timestamp),
            "edited_timestamp": iso(self.edited_timestamp) if self.edited_timestamp else None,
            "tts": self.tts,
            "mention_everyone": snap.mention_everyone,
            "mentions": [u.to_payload() for u in snap.mention_users],
            "mention_roles": [str(r) for r in sorted(snap.mention_role_ids)],
            "mention_channels": [],
            "attachments": [a.to_payload() for a in snap.attachments],
            "embeds": snap.embeds,
            "reactions": [],
            "pinned": False,
            "flags": snap.flags,
            "components": snap.components,
        }
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            payload["interaction_metadata"] = self.interaction_metadata
        if self.message_reference is not None:
            payload["message_reference"] = self.message_reference
        if with_guild_id and self.channel.guild is not None:
            payload["guild_id"] = str(self.channel.guild.id)
        return payload

    def __repr__(self) -> str:
        flags = " ephemeral" if self.ephemeral else ""
        gone = " deleted" if self.deleted else ""
        text = self.content[:40]
        return f"<Message id={self.id}{flags}{gone} content={text!r} edits={len(self.edits)}>"


@dataclass(frozen=True)
class Callback:
    """An interaction callback the bot sent (accepted or refused)."""

    type: int
    data: dict[str, Any] | None
    at: float  # time.monotonic()
    delay: float  # seconds since the interaction was dispatched
    accepted: bool
    error_code: int | None = None

    @property
    def ephemeral(self) -> bool:
        return bool((self.data or {}).get("flags", 0) & EPHEMERAL)

    @property
    def content(self) -> str | None:
        return (self.data or {}).get("content")


@dataclass(frozen=True)
class UploadedFile:
    field: str
    filename: str
    data: bytes
    content_type: str | None


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    at: float
    authorized: bool
    status: int = 0
    error_code: int | None = None
    handled: bool = True
    # Why it got a 429: "user" or "global" (enforced limits) or "injected" (a test's rule).
    rate_limit_scope: str | None = None
    fault: str | None = None  # the injected fault kind, if one hit this request
    dropped: bool = False  # the connection was aborted: the client got no answer

    def __repr__(self) -> str:
        dropped = " (dropped)" if self.dropped else ""
        return f"<{self.method} {self.path} -> {self.status}{dropped}>"


def walk_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every component in a (v1 or v2) component tree, depth first."""
    found: list[dict[str, Any]] = []
    for component in components:
        found.append(component)
        for key in ("components",):
            children = component.get(key)
            if isinstance(children, list):
                found.extend(walk_components(children))
        for key in ("accessory", "component"):
            child = component.get(key)
            if isinstance(child, dict):
                found.extend(walk_components([child]))
    return found


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


def _user_id(user: User | Member | int) -> int:
    if isinstance(user, int):
        return user
    return user.user.id if isinstance(user, Member) else user.id


__all__ = [
    "ALL_PERMISSIONS",
    "EPHEMERAL",
    "LOADING",
    "Callback",
    "Channel",
    "Guild",
    "Member",
    "Message",
    "MessageSnapshot",
    "MiB",
    "Overwrite",
    "RequestRecord",
    "Role",
    "StoredFile",
    "UploadedFile",
    "User",
    "walk_components",
]
