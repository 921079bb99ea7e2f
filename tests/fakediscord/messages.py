"""Messages and files: creating and editing messages from REST bodies the way Discord does
(partial edits, attachment keep-lists, allowed_mentions), with Discord's size limits."""

from __future__ import annotations

import io
import mimetypes
import re
import time
from typing import TYPE_CHECKING, Any

from PIL import Image

from .errors import EMPTY_MESSAGE, REQUEST_TOO_LARGE, APIError, form_error
from .models import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
    Channel,
    Message,
    MessageSnapshot,
    Source,
    StoredFile,
    UploadedFile,
    User,
    utcnow,
)

if TYPE_CHECKING:
    from .snowflake import SnowflakeFactory

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)\b")

_SETTABLE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
_EDITABLE_FLAGS = SUPPRESS_EMBEDS | IS_COMPONENTS_V2


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height for images, as Discord reports them on attachments."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # not an image Pillow can read: Discord reports no size either


class MessageStore:
    def __init__(self, snowflakes: SnowflakeFactory, base_url: str) -> None:
        self._snowflakes = snowflakes
        self.base_url = base_url
        self.by_id: dict[int, Message] = {}
        self.by_channel: dict[int, list[Message]] = {}
        self.files: dict[int, StoredFile] = {}

    # -- files -------------------------------------------------------------------------------
    def store_file(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> StoredFile:
        file_id = self._snowflakes.next()
        if content_type is None or content_type == "application/octet-stream":
            # Discord derives the type from the name, whatever the upload's header said.
            content_type = mimetypes.guess_type(filename)[0] or content_type
        size = image_size(data) if (content_type or "").startswith("image/") else None
        stored = StoredFile(
            id=file_id,
            filename=filename,
            data=data,
            content_type=content_type,
            url=f"{self.base_url}/attachments/{file_id}/{filename}?ex={int(time.time()) + 86400:x}",
            width=size[0] if size else None,
            height=size[1] if size else None,
            description=description,
            ephemeral=ephemeral,
        )
        self.files[file_id] = stored
        return stored

    # -- messages ----------------------------------------------------------------------------
    def create(
        self,
        channel: Channel,
        author: User,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        source: Source,
        route: str,
        users: dict[int, User],
        upload_limit: int,
        extra_flags: int = 0,
        allow_empty: bool = False,
        message_type: int = 0,
        webhook_id: int | None = None,
        application_id: int | None = None,
        interaction_id: int | None = None,
        interaction_metadata: dict[str, Any] | None = None,
    ) -> Message:
        flags = (int(payload.get("flags") or 0) & _SETTABLE_FLAGS) | extra_flags
        snapshot = self._snapshot(
            None,
            channel,
            payload,
            files,
            flags=flags,
            source=source,
            route=route,
            users=users,
            upload_limit=upload_limit,
            allow_empty=allow_empty,
        )
        message = Message(
            id=self._snowflakes.next(),
            channel=channel,
            author=author,
            created_at=snapshot.at,
            timestamp=utcnow(),
            type=message_type,
            webhook_id=webhook_id,
            application_id=application_id,
            interaction_id=interaction_id,
            interaction_metadata=interaction_metadata,
            message_reference=_reference(payload, channel),
            tts=bool(payload.get("tts", False)),
            history=[snapshot],
        )
        self.by_id[message.id] = message
        self.by_channel.setdefault(channel.id, []).append(message)
        if not message.ephemeral:
            channel.last_message_id = message.id
        return message

    def edit(
        self,
        message: Message,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        source: Source,
        route: str,
        users: dict[int, User],
        upload_limit: int,
        clear_loading: bool = True,
    ) -> Message:
        previous = message.current
        flags = previous.flags
        if "flags" in payload and payload["flags"] is not None:
            flags = (flags & ~_EDITABLE_FLAGS) | (int(payload["flags"]) & _EDITABLE_FLAGS)
        if clear_loading:
            flags &= ~LOADING
        snapshot = self._snapshot(
            previous,
            message.channel,
            payload,
            files,
            flags=flags,
            source=source,
            route=route,
            users=users,
            upload_limit=upload_limit,
            allow_empty=False,
        )
        message.history.append(snapshot)
        message.edited_timestamp = utcnow()
        return message

    def delete(self, message: Message, by: str) -> None:
        message.deleted = True
        message.deleted_by = by

    def _snapshot(
        self,
        previous: MessageSnapshot | None,
        channel: Channel,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        flags: int,
        source: Source,
        route: str,
        users: dict[int, User],
        upload_limit: int,
        allow_empty: bool,
    ) -> MessageSnapshot:
        for upload in files:
            if len(upload.data) > upload_limit:
                raise APIError(413, REQUEST_TOO_LARGE, "Request entity too large")
        content = _pick(payload, "content", previous.content if previous else "") or ""
        embeds = [
            _normalize_embed(e)
            for e in _pick(payload, "embeds", previous.embeds if previous else []) or []
        ]
        components = _pick(payload, "components", previous.components if previous else []) or []
        attachments = self._attachments(previous, payload, files, ephemeral=bool(flags & EPHEMERAL))
        allowed = payload.get("allowed_mentions")
        _validate(content, embeds, components, flags)
        if not (
            allow_empty
            or content
            or embeds
            or components
            or attachments
            or payload.get("sticker_ids")
        ):
            raise APIError(400, EMPTY_MESSAGE, "Cannot send an empty message")
        mention_users, mention_roles, everyone = _mentions(
            content, allowed, channel, users, payload
        )
        return MessageSnapshot(
            at=time.monotonic(),
            source=source,
            route=route,
            content=content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            flags=flags,
            allowed_mentions=allowed,
            mention_users=mention_users,
            mention_role_ids=mention_roles,
            mention_everyone=everyone,
        )

    def _attachments(
        self,
        previous: MessageSnapshot | None,
        payload: dict[str, Any],
        files: list[UploadedFile],
        *,
        ephemeral: bool,
    ) -> list[StoredFile]:
        uploads = {_file_index(u.field): u for u in files}
        used: set[int] = set()
        kept = list(previous.attachments) if previous else []
        if "attachments" in payload and payload["attachments"] is not None:
            existing = {a.id: a for a in kept}
            result: list[StoredFile] = []
            for index, item in enumerate(payload["attachments"]):
                ref = int(item["id"])
                if ref in existing:
                    result.append(existing[ref])
                elif ref in uploads:
                    used.add(ref)
                    upload = uploads[ref]
                    result.append(
                        self.store_file(
                            item.get("filename") or upload.filename,
                            upload.data,
                            upload.content_type,
                            description=item.get("description"),
                            ephemeral=ephemeral,
                        )
                    )
                else:
                    raise form_error({f"attachments.{index}.id": f"Unknown attachment {ref}"})
        else:
            result = kept
        for ref, upload in sorted(uploads.items()):
            if ref not in used:
                result.append(
                    self.store_file(
                        upload.filename, upload.data, upload.content_type, ephemeral=ephemeral
                    )
                )
        if len(result) > 10:
            raise form_error({"attachments": "Must be 10 or fewer in length."})
        return result


def _pick(payload: dict[str, Any], key: str, default: Any) -> Any:
    return payload[key] if key in payload else default


def _file_index(field: str) -> int:
    match = re.fullmatch(r"files\[(\d+)\]|file(\d*)", field)
    if match is None:
        return -1
    return int(match.group(1) or match.group(2) or 0)


def _normalize_embed(embed: dict[str, Any]) -> dict[str, Any]:
    out = dict(embed)
    out.setdefault("type", "rich")
    return out


def _reference(payload: dict[str, Any], channel: Channel) -> dict[str, Any] | None:
    ref = payload.get("message_reference")
    if not ref:
        return None
    out = dict(ref)
    out.setdefault("channel_id", str(channel.id))
    if channel.guild is not None:
        out.setdefault("guild_id", str(channel.guild.id))
    return out


def _validate(
    content: str, embeds: list[dict[str, Any]], components: list[dict[str, Any]], flags: int
) -> None:
    errors: dict[str, str] = {}
    if len(content) > 2000:
        errors["content"] = "Must be 2000 or fewer in length."
    if len(embeds) > 10:
        errors["embeds"] = "Must be 10 or fewer in length."
    total = 0
    limits = {"title": 256, "description": 4096}
    for index, embed in enumerate(embeds):
        for key, limit in limits.items():
            value = embed.get(key) or ""
            total += len(value)
            if len(value) > limit:
                errors[f"embeds.{index}.{key}"] = f"Must be {limit} or fewer in length."
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors[f"embeds.{index}.fields"] = "Must be 25 or fewer in length."
        for f_index, item in enumerate(fields):
            name, value = str(item.get("name", "")), str(item.get("value", ""))
            total += len(name) + len(value)
            if not 1 <= len(name) <= 256:
                errors[f"embeds.{index}.fields.{f_index}.name"] = (
                    "Must be between 1 and 256 in length."
                )
            if not 1 <= len(value) <= 1024:
                errors[f"embeds.{index}.fields.{f_index}.value"] = (
                    "Must be between 1 and 1024 in length."
                )
        footer = str((embed.get("footer") or {}).get("text", ""))
        author = str((embed.get("author") or {}).get("name", ""))
        total += len(footer) + len(author)
        if len(footer) > 2048:
            errors[f"embeds.{index}.footer.text"] = "Must be 2048 or fewer in length."
        if len(author) > 256:
            errors[f"embeds.{index}.author.name"] = "Must be 256 or fewer in length."
    if total > 6000:
        errors["embeds"] = "Embed size exceeds maximum size of 6000"
    if not flags & IS_COMPONENTS_V2:
        if len(components) > 5:
            errors["components"] = "Must be 5 or fewer in length."
        for index, row in enumerate(components):
            if row.get("type") != 1:
                errors[f"components.{index}.type"] = "Top-level components must be action rows"
                continue
            children = row.get("components") or []
            if not 1 <= len(children) <= 5:
                errors[f"components.{index}.components"] = "Must be between 1 and 5 in length."
    _check_custom_ids(components, "components", errors)
    if errors:
        raise form_error(errors)


def _check_custom_ids(components: list[dict[str, Any]], path: str, errors: dict[str, str]) -> None:
    for index, component in enumerate(components):
        at = f"{path}.{index}"
        custom_id = component.get("custom_id")
        if custom_id is not None and not 1 <= len(custom_id) <= 100:
            errors[f"{at}.custom_id"] = "Must be between 1 and 100 in length."
        label = component.get("label")
        if label is not None and len(label) > 80:
            errors[f"{at}.label"] = "Must be 80 or fewer in length."
        children = component.get("components")
        if isinstance(children, list):
            _check_custom_ids(children, f"{at}.components", errors)
        for key in ("accessory", "component"):
            child = component.get(key)
            if isinstance(child, dict):
                _check_custom_ids([child], f"{at}.{key}", errors)


def _mentions(
    content: str,
    allowed: dict[str, Any] | None,
    channel: Channel,
    users: dict[int, User],
    payload: dict[str, Any],
) -> tuple[tuple[User, ...], frozenset[int], bool]:
    """Who this content pings, after `allowed_mentions` (absent = parse everything)."""
    if allowed is None:
        parse = {"users", "roles", "everyone"}
        allowed_users: set[int] = set()
        allowed_roles: set[int] = set()
    else:
        parse = set(allowed.get("parse") or [])
        allowed_users = {int(u) for u in allowed.get("users") or []}
        allowed_roles = {int(r) for r in allowed.get("roles") or []}
        if "users" in parse and allowed_users:
            raise form_error({"allowed_mentions": "parse:users and users are mutually exclusive"})
        if "roles" in parse and allowed_roles:
            raise form_error({"allowed_mentions": "parse:roles and roles are mutually exclusive"})
    mentioned: list[User] = []
    for raw in _USER_MENTION.findall(content):
        user_id = int(raw)
        user = users.get(user_id)
        if user is None or user in mentioned:
            continue
        if "users" in parse or user_id in allowed_users:
            mentioned.append(user)
    roles: set[int] = set()
    guild = channel.guild
    for raw in _ROLE_MENTION.findall(content):
        role_id = int(raw)
        if (
            guild is not None
            and role_id in guild.roles
            and ("roles" in parse or role_id in allowed_roles)
        ):
            roles.add(role_id)
    everyone = "everyone" in parse and bool(_EVERYONE.search(content))
    return tuple(mentioned), frozenset(roles), everyone


__all__ = ["MessageStore", "image_size"]
