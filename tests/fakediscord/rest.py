"""The REST API (v10) the fake serves, one small handler per route.

Every request is parsed (JSON, or multipart with `payload_json` and `files[n]`), logged in
`FakeDiscord.request_log`, checked against the test's injected faults and rate-limit rules and
(when enforced) Discord's real limits, routed, and answered with Discord-shaped JSON errors and
`X-RateLimit-*` headers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from . import errors as e
from . import interactions as ix
from .errors import APIError
from .models import (
    EPHEMERAL,
    LOADING,
    Callback,
    Channel,
    Guild,
    Message,
    RequestRecord,
    UploadedFile,
)
from .permissions import (
    ATTACH_FILES,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
)

if TYPE_CHECKING:
    from .faults import FaultRule
    from .interactions import InteractionHandle
    from .ratelimits import Verdict
    from .server import FakeDiscord, RateLimitRule

Handler = Callable[["Call"], Awaitable[Any]]

_TRUE = {"1", "true", "True"}


@dataclass
class Call:
    """One parsed REST request as handlers see it."""

    method: str
    path: str
    template: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[UploadedFile]
    record: RequestRecord

    @property
    def payload(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def route(self) -> str:
        return f"{self.method} {self.template}"

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise e.form_error({name: "Value is not snowflake."}) from None


@dataclass
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    bucket: str


class RestAPI:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._routes: list[_Route] = []
        self._register()

    # -- plumbing ----------------------------------------------------------------------------
    def _add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        bucket = hashlib.sha1(f"{method} {template}".encode(), usedforsecurity=False).hexdigest()[
            :16
        ]
        self._routes.append(
            _Route(method, template, re.compile(f"^{regex}$"), handler, auth, bucket)
        )

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method != method:
                continue
            match = route.pattern.match(path)
            if match:
                return route, match.groupdict()
        return None, {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fake = self.fake
        path = "/" + request.match_info["tail"]
        method = request.method
        body, files = await _parse_body(request)
        authorized = request.headers.get("Authorization") == f"Bot {fake.bot_token}"
        record = RequestRecord(
            method=method,
            path=path,
            query=dict(request.query),
            json=body,
            files=files,
            at=time.monotonic(),
            authorized=authorized,
        )
        fake.request_log.append(record)
        route, params = self._match(method, path)
        # Faults come first: a connection that breaks never reaches Discord's rate limiter.
        fault = fake.take_fault(method, path)
        if fault is not None:
            record.fault = fault.kind
            if not fault.after_apply:
                response = _fault_answer(request, fault, record)
                fake.notify()
                return response
        response = await self._serve(record, route, params, body, files)
        if record.rate_limit_scope is not None:
            fake.rate_limited.append(record)
        if fault is not None:
            response = _fault_answer(request, fault, record, served=response)
        fake.notify()
        return response

    async def _serve(
        self,
        record: RequestRecord,
        route: _Route | None,
        params: dict[str, str],
        body: Any,
        files: list[UploadedFile],
    ) -> web.Response:
        fake = self.fake
        method, path = record.method, record.path
        headers: dict[str, str] = {"Via": "1.1 google"}
        limit_headers: dict[str, str] = {}
        try:
            rule = fake.take_rate_limit(method, path)
            if rule is not None:
                record.rate_limit_scope = "injected"
                raise _rate_limited(rule, route.bucket if route else "global")
            if fake.enforce_rate_limits:
                # record.at was taken in this same loop step, so checks see it in order.
                verdict = fake.limiter.check(
                    method,
                    path,
                    route.template if route else None,
                    params,
                    bot_authorized=record.authorized,
                    now=record.at,
                    wall=time.time(),
                )
                if not verdict.allowed:
                    record.rate_limit_scope = verdict.scope
                    raise _enforced_429(verdict)
                limit_headers = verdict.headers
            elif route is not None:
                limit_headers = _ratelimit_headers(route.bucket)
            if route is None:
                record.handled = False
                raise APIError(404, 0, "404: Not Found")
            if route.auth and not record.authorized:
                raise APIError(401, 0, "401: Unauthorized")
            call = Call(method, path, route.template, params, record.query, body, files, record)
            result = await route.handler(call)
        except APIError as err:
            record.status = err.status
            record.error_code = err.code
            headers.update(err.headers)
            if err.status != 429 and fake.ratelimit_headers:
                headers.update(limit_headers)
            return _json_response(err.body(), err.status, headers)
        if fake.ratelimit_headers:
            headers.update(limit_headers)
        if result is None:
            record.status = 204
            return web.Response(status=204, headers=headers)
        record.status = 200
        return _json_response(result, 200, headers)

    def _register(self) -> None:
        add = self._add
        app = "/applications/{application_id}"
        add("GET", "/gateway", self.get_gateway, auth=False)
        add("GET", "/gateway/bot", self.get_gateway_bot)
        add("GET", "/users/@me", self.get_me)
        add("GET", "/users/@me/guilds", self.get_my_guilds)
        add("POST", "/users/@me/channels", self.create_dm)
        add("GET", "/users/{user_id}", self.get_user)
        add("GET", "/oauth2/applications/@me", self.get_application)
        add("GET", "/applications/@me", self.get_application)
        add("GET", f"{app}/emojis", self.empty_items)
        add("GET", f"{app}/entitlements", self.empty_list)
        add("GET", f"{app}/skus", self.empty_list)
        for prefix in (f"{app}/commands", f"{app}/guilds/{{guild_id}}/commands"):
            add("GET", prefix, self.list_commands)
            add("PUT", prefix, self.bulk_commands)
            add("POST", prefix, self.create_command)
            add("GET", f"{prefix}/{{command_id}}", self.get_command)
            add("PATCH", f"{prefix}/{{command_id}}", self.edit_command)
            add("DELETE", f"{prefix}/{{command_id}}", self.delete_command)
        add("GET", f"{app}/guilds/{{guild_id}}/commands/permissions", self.empty_list)
        add(
            "GET",
            f"{app}/guilds/{{guild_id}}/commands/{{command_id}}/permissions",
            self.no_permissions,
        )
        add("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, auth=False)
        hook = "/webhooks/{application_id}/{token}"
        add("GET", hook, self.get_webhook, auth=False)
        add("POST", hook, self.followup, auth=False)
        add("GET", f"{hook}/messages/{{message_id}}", self.get_webhook_message, auth=False)
        add("PATCH", f"{hook}/messages/{{message_id}}", self.edit_webhook_message, auth=False)
        add("DELETE", f"{hook}/messages/{{message_id}}", self.delete_webhook_message, auth=False)
        chan = "/channels/{channel_id}"
        add("GET", chan, self.get_channel)
        add("GET", f"{chan}/messages", self.list_messages)
        add("POST", f"{chan}/messages", self.create_message)
        add("GET", f"{chan}/messages/{{message_id}}", self.get_message)
        add("PATCH", f"{chan}/messages/{{message_id}}", self.edit_message)
        add("DELETE", f"{chan}/messages/{{message_id}}", self.delete_message)
        add("POST", f"{chan}/typing", self.typing)
        reaction = f"{chan}/messages/{{message_id}}/reactions/{{emoji}}/@me"
        add("PUT", reaction, self.reaction)
        add("DELETE", reaction, self.reaction)
        add("GET", "/guilds/{guild_id}", self.get_guild)
        add("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        add("GET", "/guilds/{guild_id}/roles", self.get_guild_roles)
        add("GET", "/guilds/{guild_id}/members", self.list_members)
        add("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)

    # -- gateway, users, application ---------------------------------------------------------
    async def get_gateway(self, call: Call) -> Any:
        return {"url": self.fake.ws_url}

    async def get_gateway_bot(self, call: Call) -> Any:
        return {
            "url": self.fake.ws_url,
            "shards": self.fake.recommended_shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    async def get_me(self, call: Call) -> Any:
        return {
            **self.fake.bot_user.to_payload(),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
        }

    async def get_my_guilds(self, call: Call) -> Any:
        return [
            {
                "id": str(g.id),
                "name": g.name,
                "icon": None,
                "owner": False,
                "permissions": "0",
                "features": [],
            }
            for g in self.fake.guilds.values()
        ]

    async def get_user(self, call: Call) -> Any:
        user = self.fake.users.get(call.int_param("user_id"))
        if user is None:
            raise APIError(404, e.UNKNOWN_USER, "Unknown User")
        return user.to_payload()

    async def create_dm(self, call: Call) -> Any:
        user = self.fake.users.get(int(call.payload.get("recipient_id", 0)))
        if user is None:
            raise e.form_error({"recipient_id": "Unknown user"})
        return self.fake.dm_channel(user).to_payload()

    async def get_application(self, call: Call) -> Any:
        fake = self.fake
        return {
            "id": str(fake.application_id),
            "name": fake.bot_user.name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": fake.application_flags,
            "owner": fake.app_owner.to_payload(),
            "team": None,
            "bot": fake.bot_user.to_payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(fake.guilds),
        }

    async def empty_list(self, call: Call) -> Any:
        return []

    async def empty_items(self, call: Call) -> Any:
        return {"items": []}

    async def no_permissions(self, call: Call) -> Any:
        raise APIError(404, 10066, "Unknown application command permissions")

    # -- application commands ----------------------------------------------------------------
    def _scope(self, call: Call) -> int | None:
        if call.int_param("application_id") != self.fake.application_id:
            raise APIError(403, e.MISSING_ACCESS, "Missing Access")
        if "guild_id" not in call.params:
            return None
        guild_id = call.int_param("guild_id")
        if guild_id not in self.fake.guilds:
            raise APIError(403, e.MISSING_ACCESS, "Missing Access")
        return guild_id

    async def list_commands(self, call: Call) -> Any:
        return self.fake.commands.in_scope(self._scope(call))

    async def bulk_commands(self, call: Call) -> Any:
        scope = self._scope(call)
        if not isinstance(call.body, list):
            raise e.form_error({"_": "Expected a list of commands"})
        return self.fake.commands.bulk_overwrite(scope, call.body)

    async def create_command(self, call: Call) -> Any:
        stored, _created = self.fake.commands.upsert(self._scope(call), call.payload)
        return stored

    async def get_command(self, call: Call) -> Any:
        return self.fake.commands.get(self._scope(call), call.int_param("command_id"))

    async def edit_command(self, call: Call) -> Any:
        return self.fake.commands.edit(
            self._scope(call), call.int_param("command_id"), call.payload
        )

    async def delete_command(self, call: Call) -> Any:
        self.fake.commands.delete(self._scope(call), call.int_param("command_id"))

    # -- interaction callbacks ---------------------------------------------------------------
    async def callback(self, call: Call) -> Any:
        fake = self.fake
        handle = fake.interactions.get(call.int_param("interaction_id"))
        if handle is None or handle.token != call.params["token"]:
            raise e.unknown_interaction()
        now = time.monotonic()
        delay = now - (handle.dispatched_at or handle.created_at)
        body = call.payload
        kind = int(body.get("type", 0))
        data = body.get("data")
        try:
            if handle.responded:
                raise APIError(
                    400, e.ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged."
                )
            if handle.expired or delay > fake.callback_deadline:
                raise e.unknown_interaction()
            self._check_callback_type(handle, kind)
            message = self._apply_callback(call, handle, kind, data or {})
        except APIError as err:
            handle.callbacks.append(
                Callback(kind, data, now, delay, accepted=False, error_code=err.code)
            )
            fake.notify()
            raise
        handle.callbacks.append(Callback(kind, data, now, delay, accepted=True))
        fake.notify()
        if call.query.get("with_response") not in _TRUE:
            return None
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = message.to_payload()
        return {
            "interaction": {
                "id": str(handle.id),
                "type": handle.type,
                "activity_instance_id": None,
                "response_message_id": str(message.id) if message is not None else None,
                "response_message_loading": bool(message is not None and message.loading),
                "response_message_ephemeral": bool(message is not None and message.ephemeral),
            },
            "resource": resource,
        }

    @staticmethod
    def _check_callback_type(handle: InteractionHandle, kind: int) -> None:
        allowed = {
            ix.APPLICATION_COMMAND: {4, 5, 9},
            ix.MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
            ix.APPLICATION_COMMAND_AUTOCOMPLETE: {8},
            ix.MODAL_SUBMIT: {4, 5, 6, 7} if handle.message is not None else {4, 5},
        }[handle.type]
        if kind not in allowed:
            raise e.form_error(
                {"type": f"Callback type {kind} is not valid for interaction type {handle.type}"}
            )

    def _apply_callback(
        self, call: Call, handle: InteractionHandle, kind: int, data: dict[str, Any]
    ) -> Message | None:
        fake = self.fake
        if kind == ix.CHANNEL_MESSAGE_WITH_SOURCE:
            handle.original = fake.create_interaction_message(
                handle,
                data,
                call.files,
                source="callback",
                route=call.route,
                flags=int(data.get("flags") or 0) & EPHEMERAL,
            )
            return handle.original
        if kind == ix.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            handle.original = fake.create_interaction_message(
                handle, {"content": ""}, [], source="callback", route=call.route, flags=flags
            )
            return handle.original
        if kind == ix.DEFERRED_UPDATE_MESSAGE:
            handle.original = handle.message
            return None
        if kind == ix.UPDATE_MESSAGE:
            assert handle.message is not None
            if handle.message.deleted:
                raise e.unknown_message()
            fake.edit_message(handle.message, data, call.files, source="callback", route=call.route)
            handle.original = handle.message
            return handle.message
        if kind == ix.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise e.form_error({"data.choices": "Must be 25 or fewer in length."})
            handle.autocomplete_choices = list(choices)
            return None
        if kind == ix.MODAL:
            _validate_modal(data)
            fake.record_modal(handle, data)
            return None
        raise e.form_error({"type": f"Unsupported callback type {kind}"})

    # -- interaction webhooks ----------------------------------------------------------------
    def _handle(self, call: Call) -> InteractionHandle:
        if call.int_param("application_id") != self.fake.application_id:
            raise APIError(404, e.UNKNOWN_WEBHOOK, "Unknown Webhook")
        handle = self.fake.interactions_by_token.get(call.params["token"])
        if handle is None or not handle.token_valid:
            raise e.invalid_webhook_token()
        return handle

    def _webhook_message(self, handle: InteractionHandle, message_id: str) -> Message:
        if message_id == "@original":
            message = handle.original
        else:
            try:
                wanted = int(message_id)
            except ValueError:
                raise e.unknown_message() from None
            message = next((m for m in handle.messages if m.id == wanted), None)
        if message is None or message.deleted:
            raise e.unknown_message()
        return message

    async def get_webhook(self, call: Call) -> Any:
        self._handle(call)
        fake = self.fake
        return {
            "id": str(fake.application_id),
            "type": 3,
            "name": fake.bot_user.name,
            "avatar": None,
            "channel_id": None,
            "guild_id": None,
            "application_id": str(fake.application_id),
            "token": call.params["token"],
        }

    async def followup(self, call: Call) -> Any:
        fake = self.fake
        handle = self._handle(call)
        if not handle.responded:
            raise APIError(404, e.UNKNOWN_WEBHOOK, "Unknown Webhook")
        original = handle.original
        accepted = handle.accepted
        if (
            original is not None
            and original.loading
            and not original.deleted
            and accepted is not None
            and accepted.type == ix.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
        ):
            # The first followup after a defer replaces the "thinking" message and keeps the
            # defer's visibility, whatever flags it carries.
            message = fake.edit_message(
                original, call.payload, call.files, source="followup", route=call.route
            )
        else:
            flags = int(call.payload.get("flags") or 0) & EPHEMERAL
            message = fake.create_interaction_message(
                handle,
                call.payload,
                call.files,
                source="webhook",
                route=call.route,
                flags=flags,
                followup=True,
            )
            handle.followups.append(message)
        if call.query.get("wait") not in _TRUE:
            return None
        return message.to_payload()

    async def get_webhook_message(self, call: Call) -> Any:
        handle = self._handle(call)
        return self._webhook_message(handle, call.params["message_id"]).to_payload()

    async def edit_webhook_message(self, call: Call) -> Any:
        handle = self._handle(call)
        message = self._webhook_message(handle, call.params["message_id"])
        self.fake.edit_message(
            message, call.payload, call.files, source="webhook", route=call.route
        )
        return message.to_payload()

    async def delete_webhook_message(self, call: Call) -> Any:
        handle = self._handle(call)
        message = self._webhook_message(handle, call.params["message_id"])
        self.fake.remove_message(message, by="webhook")

    # -- channels ----------------------------------------------------------------------------
    def _channel(self, call: Call, *needed: int) -> Channel:
        fake = self.fake
        channel = fake.channels.get(call.int_param("channel_id"))
        if channel is None:
            raise APIError(404, e.UNKNOWN_CHANNEL, "Unknown Channel")
        if channel.guild is None:
            return channel
        perms = fake.bot_permissions(channel)
        if not perms & VIEW_CHANNEL:
            raise APIError(403, e.MISSING_ACCESS, "Missing Access")
        for permission in needed:
            if not perms & permission:
                raise APIError(403, e.MISSING_PERMISSIONS, "Missing Permissions")
        return channel

    def _channel_message(self, call: Call, channel: Channel) -> Message:
        message = self.fake.store.by_id.get(call.int_param("message_id"))
        # Ephemeral messages do not exist for the channel routes.
        if (
            message is None
            or message.channel is not channel
            or message.deleted
            or message.ephemeral
        ):
            raise e.unknown_message()
        return message

    async def get_channel(self, call: Call) -> Any:
        return self._channel(call).to_payload()

    async def list_messages(self, call: Call) -> Any:
        channel = self._channel(call, READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(call.query.get("limit", 50))))
        messages = [
            m
            for m in self.fake.store.by_channel.get(channel.id, [])
            if not m.deleted and not m.ephemeral
        ]
        if "before" in call.query:
            messages = [m for m in messages if m.id < int(call.query["before"])]
        if "after" in call.query:
            messages = [m for m in messages if m.id > int(call.query["after"])][:limit]
        messages = sorted(messages, key=lambda m: m.id, reverse=True)[:limit]
        return [m.to_payload() for m in messages]

    async def create_message(self, call: Call) -> Any:
        needed = [SEND_MESSAGES] + ([ATTACH_FILES] if call.files else [])
        channel = self._channel(call, *needed)
        reference = call.payload.get("message_reference")
        if reference and reference.get("fail_if_not_exists", True):
            target = self.fake.store.by_id.get(int(reference.get("message_id", 0)))
            if target is None or target.deleted or target.ephemeral:
                raise e.form_error({"message_reference": "Unknown message"})
        message = self.fake.create_channel_message(
            channel, call.payload, call.files, route=call.route
        )
        return message.to_payload()

    async def get_message(self, call: Call) -> Any:
        channel = self._channel(call, READ_MESSAGE_HISTORY)
        return self._channel_message(call, channel).to_payload()

    async def edit_message(self, call: Call) -> Any:
        channel = self._channel(call)
        message = self._channel_message(call, channel)
        if message.author is not self.fake.bot_user:
            raise APIError(
                403, e.CANNOT_EDIT_OTHERS_MESSAGE, "Cannot edit a message authored by another user"
            )
        self.fake.edit_message(
            message, call.payload, call.files, source="channel", route=call.route
        )
        return message.to_payload()

    async def delete_message(self, call: Call) -> Any:
        channel = self._channel(call)
        message = self._channel_message(call, channel)
        if (
            message.author is not self.fake.bot_user
            and not self.fake.bot_permissions(channel) & MANAGE_MESSAGES
        ):
            raise APIError(403, e.MISSING_PERMISSIONS, "Missing Permissions")
        self.fake.remove_message(message, by="channel")

    async def typing(self, call: Call) -> Any:
        self._channel(call, SEND_MESSAGES)

    async def reaction(self, call: Call) -> Any:
        channel = self._channel(call, READ_MESSAGE_HISTORY)
        self._channel_message(call, channel)

    # -- guilds ------------------------------------------------------------------------------
    def _guild(self, call: Call) -> Guild:
        guild = self.fake.guilds.get(call.int_param("guild_id"))
        if guild is None:
            raise APIError(404, e.UNKNOWN_GUILD, "Unknown Guild")
        return guild

    async def get_guild(self, call: Call) -> Any:
        guild = self._guild(call)
        payload = guild.to_payload(full=False)
        if call.query.get("with_counts") in _TRUE:
            payload["approximate_member_count"] = len(guild.members)
            payload["approximate_presence_count"] = 0
        return payload

    async def get_guild_channels(self, call: Call) -> Any:
        return [c.to_payload() for c in self._guild(call).channels.values()]

    async def get_guild_roles(self, call: Call) -> Any:
        return [r.to_payload() for r in self._guild(call).roles.values()]

    async def list_members(self, call: Call) -> Any:
        guild = self._guild(call)
        limit = max(1, min(1000, int(call.query.get("limit", 1))))
        after = int(call.query.get("after", 0))
        members = sorted(
            (m for m in guild.members.values() if m.user.id > after), key=lambda m: m.user.id
        )
        return [m.to_payload() for m in members[:limit]]

    async def get_member(self, call: Call) -> Any:
        guild = self._guild(call)
        member = guild.members.get(call.int_param("user_id"))
        if member is None:
            raise APIError(404, e.UNKNOWN_MEMBER, "Unknown Member")
        return member.to_payload()


def _json_response(body: Any, status: int, headers: dict[str, str]) -> web.Response:
    # discord.py only decodes JSON when Content-Type is exactly "application/json" (no charset),
    # which aiohttp's json_response would add.
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={**headers, "Content-Type": "application/json"},
    )


def _validate_modal(data: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
        errors["data.custom_id"] = "Must be between 1 and 100 in length."
    title = data.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= 45:
        errors["data.title"] = "Must be between 1 and 45 in length."
    components = data.get("components") or []
    if not 1 <= len(components) <= 5:
        errors["data.components"] = "Must be between 1 and 5 in length."
    if errors:
        raise e.form_error(errors)


def _ratelimit_headers(bucket: str) -> dict[str, str]:
    # Generous numbers: discord.py pre-emptively sleeps until the reset when a bucket's
    # remaining count reaches 0, which would slow tests that send a burst of requests.
    return {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "49",
        "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
        "X-RateLimit-Reset-After": "1.000",
        "X-RateLimit-Bucket": bucket,
    }


def _rate_limited(rule: RateLimitRule, bucket: str) -> APIError:
    err = APIError(429, 0, "You are being rate limited.")
    retry = rule.retry_after
    err.headers = {
        "Retry-After": str(math.ceil(retry)),
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
        "X-RateLimit-Reset-After": f"{retry:.3f}",
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Scope": "global" if rule.is_global else "user",
    }
    if rule.is_global:
        err.headers["X-RateLimit-Global"] = "true"
    err.include_code = False  # Discord's 429 body is message, retry_after and global only
    err.extra = {"retry_after": retry, "global": rule.is_global}
    return err


def _enforced_429(verdict: Verdict) -> APIError:
    err = APIError(429, 0, "You are being rate limited.", headers=dict(verdict.headers))
    err.include_code = False
    err.extra = {"retry_after": verdict.retry_after, "global": verdict.scope == "global"}
    return err


def _fault_answer(
    request: web.Request,
    fault: FaultRule,
    record: RequestRecord,
    *,
    served: web.Response | None = None,
) -> web.Response:
    """The injected fault's answer; `served` is what the fake would have answered (the request
    was applied), None when it never got that far."""
    if fault.kind == "drop":
        record.dropped = True
        if request.transport is not None:
            # aiohttp quietly skips writing the returned response to an aborted transport.
            request.transport.abort()
        return served if served is not None else web.Response(status=500)
    record.status = fault.status
    record.error_code = 0
    return _json_response(
        {"message": fault.message, "code": 0}, fault.status, {"Via": "1.1 google"}
    )


async def _parse_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    if not request.body_exists:
        return None, []
    content_type = request.content_type
    if content_type.startswith("multipart/"):
        payload: Any = None
        files: list[UploadedFile] = []
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read(decode=False)
            name = part.name or ""
            if name == "payload_json":
                payload = json.loads(bytes(data).decode())
            else:
                part_type = part.headers.get("Content-Type")
                files.append(UploadedFile(name, part.filename or name, bytes(data), part_type))
        return payload, files
    raw = await request.read()
    if not raw:
        return None, []
    try:
        return json.loads(raw), []
    except ValueError:
        raise APIError(400, 50109, "The request body contains invalid JSON.") from None
