"""Interactions the fake sends to the bot and what the bot answered.

`InteractionHandle` is what `FakeDiscord.invoke/click/submit_modal` return: it records the
callbacks (accepted or refused, with their delay after dispatch), the original response message,
followups and any modal the bot opened. `build_options` turns a test's `options={...}` into
Discord's nested option list and `resolved` data, checked against the synced definition.
"""

# The waits take `timeout=` by design: the test API bounds every wait explicitly.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import commands as c
from .errors import FakeDiscordError, FakeDiscordTimeout
from .models import Callback, Channel, Member, Message, Role, StoredFile, User, walk_components

if TYPE_CHECKING:
    from .server import FakeDiscord

APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
APPLICATION_COMMAND_AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Callback types (https://discord.com/developers/docs/interactions/receiving-and-responding)
PONG = 1
CHANNEL_MESSAGE_WITH_SOURCE = 4
DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
MODAL = 9

Upload = tuple[str, bytes] | tuple[str, bytes, str]


class InteractionHandle:
    """One interaction dispatched to the bot, and everything the bot did with its token."""

    def __init__(
        self,
        fake: FakeDiscord,
        *,
        id: int,
        token: str,
        type: int,
        payload: dict[str, Any],
        user: User,
        guild_id: int | None,
        channel: Channel,
        message: Message | None = None,
        name: str | None = None,
    ) -> None:
        self._fake = fake
        self.id = id
        self.token = token
        self.type = type
        self.payload = payload
        self.user = user
        self.guild_id = guild_id
        self.channel = channel
        self.message = message  # the message a component/modal interaction came from
        self.name = name  # command path or custom_id
        self.created_at = time.monotonic()
        self.dispatched_at: float | None = None
        self.callbacks: list[Callback] = []  # every callback attempt, accepted or refused
        self.original: Message | None = None
        self.followups: list[Message] = []
        self.modal: dict[str, Any] | None = None
        self.autocomplete_choices: list[dict[str, Any]] | None = None
        self.expired = False  # set by FakeDiscord.expire_token
        self.backdate = 0.0  # seconds the interaction was created before its dispatch

    def __repr__(self) -> str:
        return (
            f"<InteractionHandle {self.name!r} type={self.type} id={self.id} "
            f"callbacks={len(self.callbacks)}>"
        )

    @property
    def accepted(self) -> Callback | None:
        """The callback Discord accepted (at most one), or None."""
        return next((cb for cb in self.callbacks if cb.accepted), None)

    @property
    def responded(self) -> bool:
        return self.accepted is not None

    @property
    def response_delay(self) -> float | None:
        """Seconds between dispatch and the accepted callback."""
        accepted = self.accepted
        return accepted.delay if accepted else None

    @property
    def age(self) -> float:
        """Seconds since Discord created the interaction (its token's age)."""
        start = self.dispatched_at if self.dispatched_at is not None else self.created_at
        return time.monotonic() - start + self.backdate

    @property
    def token_valid(self) -> bool:
        return not self.expired and self.age <= self._fake.token_lifetime

    @property
    def messages(self) -> list[Message]:
        """The original response (if any) and the followups, oldest first."""
        return ([self.original] if self.original else []) + self.followups

    async def response(self, timeout: float = 5.0) -> Callback:
        """The first callback the bot sent (check `.accepted` — a late one is refused)."""
        await self._fake.wait_for(
            lambda: bool(self.callbacks), timeout, what=f"a callback for {self!r}"
        )
        return self.callbacks[0]

    async def wait_original(
        self, predicate: Callable[[Message], bool] | None = None, timeout: float = 5.0
    ) -> Message:
        """Wait until the original response exists (and satisfies `predicate`)."""

        def ready() -> bool:
            return self.original is not None and (predicate is None or predicate(self.original))

        await self._fake.wait_for(ready, timeout, what=f"the original response of {self!r}")
        assert self.original is not None
        return self.original

    async def wait_followups(self, count: int = 1, timeout: float = 5.0) -> list[Message]:
        await self._fake.wait_for(
            lambda: len(self.followups) >= count, timeout, what=f"{count} followup(s) of {self!r}"
        )
        return self.followups

    async def wait_modal(self, timeout: float = 5.0) -> dict[str, Any]:
        await self._fake.wait_for(
            lambda: self.modal is not None, timeout, what=f"a modal from {self!r}"
        )
        assert self.modal is not None
        return self.modal


async def wait_until(
    changed: Callable[[], asyncio.Event], predicate: Callable[[], bool], timeout: float, what: str
) -> None:
    """Re-check `predicate` whenever the fake's state changes, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        event = changed()
        if predicate():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FakeDiscordTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        try:
            await asyncio.wait_for(event.wait(), timeout=min(remaining, 0.25))
        except TimeoutError:
            pass


def build_options(
    fake: FakeDiscord,
    path: c.CommandPath,
    *,
    guild_id: int | None,
    channel: Channel,
    invoker: Member | None,
    options: dict[str, Any],
    strict: bool,
    focused: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Discord's `data.options` (nested under subcommands) and `data.resolved` for a call."""
    schema = {o["name"]: o for o in path.leaf_options}
    unknown = sorted(set(options) - set(schema))
    if unknown:
        raise FakeDiscordError(
            f"/{path.qualified_name} has no option(s) {unknown}; it has {sorted(schema)}"
        )
    if focused is None:
        missing = [n for n, o in schema.items() if o.get("required") and n not in options]
        if missing:
            raise FakeDiscordError(f"/{path.qualified_name}: required option(s) {missing} missing")
    else:
        spec = schema.get(focused)
        if spec is None:
            raise FakeDiscordError(f"/{path.qualified_name} has no option {focused!r} to focus")
        if not spec.get("autocomplete"):
            raise FakeDiscordError(f"/{path.qualified_name} option {focused!r} has no autocomplete")
    resolved: dict[str, dict[str, Any]] = {}
    leaf: list[dict[str, Any]] = []
    for name, spec in schema.items():
        if name not in options:
            continue
        value = options[name]
        kind = spec["type"]
        where = f"/{path.qualified_name} option {name!r} ({c.option_type_name(kind)})"
        if name == focused:
            leaf.append({"name": name, "type": kind, "value": str(value), "focused": True})
            continue
        leaf.append(
            {
                "name": name,
                "type": kind,
                "value": _convert(
                    fake, spec, value, where, resolved, guild_id, channel, invoker, strict
                ),
            }
        )
    return path.wrap(leaf), {k: v for k, v in resolved.items() if v}


def _convert(
    fake: FakeDiscord,
    spec: dict[str, Any],
    value: Any,
    where: str,
    resolved: dict[str, dict[str, Any]],
    guild_id: int | None,
    channel: Channel,
    invoker: Member | None,
    strict: bool,
) -> Any:
    kind = spec["type"]
    if kind == c.STRING:
        _expect(isinstance(value, str), where, value)
        if strict:
            _check_choices(spec, value, where)
            if not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", 6000):
                raise FakeDiscordError(f"{where}: length {len(value)} outside Discord's bounds")
        return value
    if kind in (c.INTEGER, c.NUMBER):
        numeric = int | float if kind == c.NUMBER else int
        _expect(isinstance(value, numeric) and not isinstance(value, bool), where, value)
        if strict:
            _check_choices(spec, value, where)
            low, high = spec.get("min_value"), spec.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise FakeDiscordError(f"{where}: {value} outside [{low}, {high}]")
        return value
    if kind == c.BOOLEAN:
        _expect(isinstance(value, bool), where, value)
        return value
    if kind == c.USER or (kind == c.MENTIONABLE and isinstance(value, User | Member)):
        _expect(isinstance(value, User | Member), where, value)
        user = value.user if isinstance(value, Member) else value
        resolved.setdefault("users", {})[str(user.id)] = user.to_payload()
        member = fake.guilds[guild_id].member(user) if guild_id is not None else None
        if member is not None:
            perms = fake.permissions_for(member, channel)
            resolved.setdefault("members", {})[str(user.id)] = member.to_payload(
                with_user=False, permissions=perms
            )
        return str(user.id)
    if kind in (c.ROLE, c.MENTIONABLE):
        _expect(isinstance(value, Role), where, value)
        if value.guild_id != guild_id:
            raise FakeDiscordError(f"{where}: role {value!r} is not in this guild")
        resolved.setdefault("roles", {})[str(value.id)] = value.to_payload()
        return str(value.id)
    if kind == c.CHANNEL:
        _expect(isinstance(value, Channel), where, value)
        allowed = spec.get("channel_types")
        if strict and allowed and value.type not in allowed:
            raise FakeDiscordError(f"{where}: channel type {value.type} not in {allowed}")
        perms = fake.permissions_for(invoker, value) if invoker is not None else 0
        payload = value.to_payload(permissions=perms)
        resolved.setdefault("channels", {})[str(value.id)] = payload
        return str(value.id)
    if kind == c.ATTACHMENT:
        stored = _upload(fake, value, where)
        resolved.setdefault("attachments", {})[str(stored.id)] = stored.to_payload()
        return str(stored.id)
    raise FakeDiscordError(f"{where}: unsupported option type")


def _upload(fake: FakeDiscord, value: Any, where: str) -> StoredFile:
    if isinstance(value, StoredFile):
        return value
    if (
        isinstance(value, tuple)
        and len(value) in (2, 3)
        and isinstance(value[0], str)
        and isinstance(value[1], bytes | bytearray)
    ):
        content_type = value[2] if len(value) == 3 else None
        return fake.store.store_file(value[0], bytes(value[1]), content_type, ephemeral=True)
    raise FakeDiscordError(f"{where}: expected (filename, bytes[, content_type]), got {value!r}")


def _expect(ok: bool, where: str, value: Any) -> None:
    if not ok:
        raise FakeDiscordError(f"{where}: wrong value type {type(value).__name__} ({value!r})")


def _check_choices(spec: dict[str, Any], value: Any, where: str) -> None:
    choices = spec.get("choices")
    if choices and value not in [ch["value"] for ch in choices]:
        raise FakeDiscordError(
            f"{where}: {value!r} is not one of the choices {[ch['value'] for ch in choices]}"
        )


def modal_submit_components(
    modal: dict[str, Any] | None, values: dict[str, Any], custom_id: str
) -> list[dict[str, Any]]:
    """The `data.components` of a modal submit, mirroring the layout of the modal the bot sent
    (action rows or labels); without a known modal, one action row per text input."""
    if modal is None:
        return [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ]
    known = {
        comp["custom_id"]
        for comp in walk_components(modal.get("components", []))
        if "custom_id" in comp
    }
    unknown = sorted(set(values) - known)
    if unknown:
        raise FakeDiscordError(
            f"modal {custom_id!r} has no input(s) {unknown}; it has {sorted(known)}"
        )

    def submit(component: dict[str, Any]) -> dict[str, Any] | None:
        kind = component.get("type")
        if kind == 1:
            children = [s for s in (submit(ch) for ch in component.get("components", [])) if s]
            return {"type": 1, "components": children}
        if kind == 18:
            inner = submit(component["component"])
            return {"type": 18, "id": component.get("id"), "component": inner} if inner else None
        key = component.get("custom_id")
        if key is None:
            return None
        if kind == 4:
            value = values.get(key, "")
            if component.get("required", True) and not value:
                raise FakeDiscordError(f"modal {custom_id!r}: text input {key!r} is required")
            max_length = component.get("max_length", 4000)
            if not component.get("min_length", 0) <= len(str(value)) <= max_length:
                raise FakeDiscordError(f"modal {custom_id!r}: {key!r} length outside bounds")
            return {"type": 4, "custom_id": key, "value": str(value)}
        chosen = values.get(key, [])
        return {"type": kind, "custom_id": key, "values": list(chosen)}

    return [s for s in (submit(ch) for ch in modal.get("components", [])) if s]
