"""The gateway: an aiohttp websocket speaking Discord's v10 protocol in plain JSON text frames.

HELLO → IDENTIFY → READY → GUILD_CREATE per guild; heartbeats; RESUME (replaying missed
dispatches); REQUEST_GUILD_MEMBERS answered with one GUILD_MEMBERS_CHUNK. A session outlives its
connection (so RESUME works) unless the client closes with 1000/1001, which ends it as Discord
does. Each connection writes from one queue, so dispatches keep their order and sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from .server import FakeDiscord

_log = logging.getLogger(__name__)

DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

GUILDS_INTENT = 1 << 0
GUILD_MEMBERS_INTENT = 1 << 1
GUILD_MESSAGES_INTENT = 1 << 9

CLOSE_UNKNOWN_ERROR = 4000
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord routes a guild to (its events, its interactions)."""
    return (guild_id >> 22) % shard_count


class GatewaySession:
    """An identified session: sequence numbers and the dispatches sent, for RESUME."""

    def __init__(self, session_id: str, intents: int, shard: tuple[int, int]) -> None:
        self.id = session_id
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.frames: list[dict[str, Any]] = []
        self.connection: GatewayConnection | None = None
        self.ready_at: float | None = None
        self.ended = False

    def covers(self, guild_id: int | None) -> bool:
        """Whether this session gets the events of that guild; what belongs to no guild (DMs)
        goes to shard 0 only, as on Discord."""
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, count) == shard_id

    def has_intent(self, intent: int) -> bool:
        return bool(self.intents & intent)

    def dispatch(self, event: str, data: Any) -> asyncio.Future[float | None] | None:
        """Queue a dispatch; the future resolves with the monotonic time it was written (None if the
        connection dropped first)."""
        self.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.frames.append(frame)
        if self.connection is None or self.connection.closed:
            return None  # kept for RESUME
        return self.connection.send(frame)

    def __repr__(self) -> str:
        return f"<GatewaySession {self.id[:8]} seq={self.seq} shard={self.shard}>"


class GatewayConnection:
    def __init__(self, gateway: Gateway, ws: web.WebSocketResponse) -> None:
        self.gateway = gateway
        self.ws = ws
        self.session: GatewaySession | None = None
        self.heartbeats = 0
        self.last_heartbeat: float | None = None
        self.query: dict[str, str] = {}
        self.closed_by_server = False
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[float | None]]] = (
            asyncio.Queue()
        )
        self._writer: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self.ws.closed

    def send(self, frame: dict[str, Any]) -> asyncio.Future[float | None]:
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((frame, future))
        return future

    async def _write_loop(self) -> None:
        while True:
            frame, future = await self._queue.get()
            try:
                await self.ws.send_str(json.dumps(frame))
            except (ConnectionError, RuntimeError):
                # Not delivered; the frame stays in the session's log for a RESUME.
                if not future.done():
                    future.set_result(None)
                continue
            if not future.done():
                future.set_result(time.monotonic())
            self.gateway.fake.notify()

    async def close(self, code: int, message: str = "") -> None:
        self.closed_by_server = True
        await self.ws.close(code=code, message=message.encode())

    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="fakediscord-gateway-writer")
        try:
            interval = self.gateway.fake.heartbeat_interval
            self.send(
                {"op": HELLO, "d": {"heartbeat_interval": interval, "_trace": ["fakediscord"]}}
            )
            async for msg in self.ws:
                if msg.type is WSMsgType.TEXT:
                    await self._receive(json.loads(msg.data))
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            session = self.session
            if session is not None and session.connection is self:
                session.connection = None
                # A client that closes normally ends its session (Discord invalidates it).
                if not self.closed_by_server and self.ws.close_code in (1000, 1001):
                    session.ended = True
            self.gateway.fake.notify()

    async def _receive(self, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        data = frame.get("d")
        self.gateway.fake.gateway_log.append((time.monotonic(), "recv", frame))
        if op == HEARTBEAT:
            self.heartbeats += 1
            self.last_heartbeat = time.monotonic()
            self.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(data or {})
        elif op == RESUME:
            await self._resume(data or {})
        elif op == REQUEST_GUILD_MEMBERS:
            self._members_chunk(data or {})
        elif op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            pass
        else:
            _log.debug("fake gateway ignoring op %s", op)

    async def _identify(self, data: dict[str, Any]) -> None:
        fake = self.gateway.fake
        if self.session is not None:
            await self.close(CLOSE_ALREADY_AUTHENTICATED, "Already authenticated.")
            return
        if data.get("token") != fake.bot_token:
            await self.close(CLOSE_AUTHENTICATION_FAILED, "Authentication failed.")
            return
        shard_data = data.get("shard") or [0, 1]
        shard = (int(shard_data[0]), int(shard_data[1]))
        if not 0 <= shard[0] < shard[1]:
            await self.close(CLOSE_INVALID_SHARD, "Invalid shard.")
            return
        covered = sum(1 for g in fake.guilds.values() if shard_of(g.id, shard[1]) == shard[0])
        if covered > fake.max_guilds_per_shard:
            await self.close(CLOSE_SHARDING_REQUIRED, "Sharding required.")
            return
        session = GatewaySession(secrets.token_hex(16), int(data.get("intents", 0)), shard)
        session.connection = self
        self.session = session
        self.gateway.sessions[session.id] = session
        guilds = [g for g in fake.guilds.values() if session.covers(g.id)]
        ready = {
            "v": 10,
            "user": {
                **fake.bot_user.to_payload(),
                "verified": True,
                "mfa_enabled": False,
                "email": None,
            },
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": fake.ws_url,
            "shard": list(shard),
            "application": {"id": str(fake.application_id), "flags": fake.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "user_settings": {},
            "_trace": ["fakediscord"],
        }
        ready_sent = session.dispatch("READY", ready)
        for guild in guilds:
            session.dispatch(
                "GUILD_CREATE", fake.guild_create_payload(guild, session, available=True)
            )
        if ready_sent is not None:
            session.ready_at = await ready_sent
        fake.notify()

    async def _resume(self, data: dict[str, Any]) -> None:
        fake = self.gateway.fake
        if data.get("token") != fake.bot_token:
            await self.close(CLOSE_AUTHENTICATION_FAILED, "Authentication failed.")
            return
        session = self.gateway.sessions.get(str(data.get("session_id")))
        if session is None or session.ended:
            self.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.connection is not None and not session.connection.closed:
            await session.connection.close(CLOSE_UNKNOWN_ERROR, "Session resumed elsewhere")
        session.connection = self
        self.session = session
        seq = int(data.get("seq") or 0)
        for frame in session.frames:
            if frame["s"] > seq:
                self.send(frame)
        self.gateway.resumes += 1
        session.dispatch("RESUMED", {"_trace": ["fakediscord"]})
        fake.notify()

    def _members_chunk(self, data: dict[str, Any]) -> None:
        fake = self.gateway.fake
        if self.session is None:
            return
        guild = fake.guilds.get(int(data.get("guild_id", 0)))
        if guild is None or not self.session.covers(guild.id):
            return
        members = list(guild.members.values())
        user_ids = data.get("user_ids")
        if user_ids:
            wanted = {int(u) for u in ([user_ids] if isinstance(user_ids, str | int) else user_ids)}
            members = [m for m in members if m.user.id in wanted]
        query = data.get("query")
        if query:
            members = [m for m in members if m.user.name.lower().startswith(str(query).lower())]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.to_payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        self.session.dispatch("GUILD_MEMBERS_CHUNK", chunk)


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[GatewayConnection] = set()
        self.resumes = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        connection = GatewayConnection(self, ws)
        connection.query = dict(request.query)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
        return ws

    def live_sessions(self) -> list[GatewaySession]:
        """Identified sessions that still receive events (connected, or waiting to RESUME)."""
        return [s for s in self.sessions.values() if not s.ended and s.ready_at is not None]

    def connected_sessions(self) -> list[GatewaySession]:
        return [
            s for s in self.live_sessions() if s.connection is not None and not s.connection.closed
        ]

    def connected_shards(self) -> list[tuple[int, int]]:
        """`(shard_id, shard_count)` of every connected session, sorted; an unsharded bot's
        connection is `(0, 1)`."""
        return sorted(s.shard for s in self.connected_sessions())

    def broadcast(
        self, event: str, data: Any, *, guild_id: int | None = None, intent: int | None = None
    ) -> list[asyncio.Future[float | None]]:
        futures: list[asyncio.Future[float | None]] = []
        for session in self.live_sessions():
            if not session.covers(guild_id):
                continue
            if intent is not None and not session.has_intent(intent):
                continue
            future = session.dispatch(event, data)
            if future is not None:
                futures.append(future)
        return futures

    async def close_all(self, code: int, message: str = "") -> None:
        for connection in list(self.connections):
            if not connection.closed:
                await connection.close(code, message)

    def invalidate_sessions(self, *, resumable: bool = False) -> int:
        """Send op 9 INVALID_SESSION to every identified connection, as Discord does when it
        drops a session. Not resumable (``d: false``): the session ends, so the client must
        IDENTIFY again and gets a new one (a RESUME of the old one is refused). Returns how
        many connections were told."""
        told = 0
        for connection in list(self.connections):
            session = connection.session
            if connection.closed or session is None:
                continue
            if not resumable:
                session.ended = True
            connection.send({"op": INVALID_SESSION, "d": resumable, "s": None, "t": None})
            told += 1
        self.fake.notify()
        return told

    @property
    def identifies(self) -> int:
        """Sessions created by IDENTIFY so far (a RESUME creates none)."""
        return len(self.sessions)
