"""The websocket gateway: HELLO, heartbeats, IDENTIFY and RESUME, READY and GUILD_CREATE per shard, the
intent rules, and ``dispatch`` of an event to the connection of the shard that owns it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import traceback
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.state import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    DiscordState,
)


@dataclass
class GatewaySession:
    session_id: str
    shard_id: int
    shard_count: int
    intents: int | None
    token: str
    seq: int = 0
    resumes: int = 0


@dataclass
class GatewayConnection:
    """One websocket connection; ``session`` is set after IDENTIFY (or RESUME)."""

    ws: web.WebSocketResponse
    query: dict[str, str]
    session: GatewaySession | None = None
    identify: dict[str, Any] | None = None
    heartbeats: int = 0
    events: list[str] = field(default_factory=list)  # dispatch names sent, in order
    received_ops: list[int] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def shard_id(self) -> int | None:
        return None if self.session is None else self.session.shard_id

    @property
    def intents(self) -> int | None:
        return None if self.session is None else self.session.intents

    async def send(self, payload: dict[str, Any]) -> bool:
        async with self._lock:
            if self.closed or self.ws.closed:
                return False
            if payload.get("op") == 0 and self.session is not None:
                self.session.seq += 1
                payload["s"] = self.session.seq
                self.events.append(payload["t"])
            try:
                await self.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return False
            return True

    async def dispatch(self, event: str, data: Any) -> bool:
        return await self.send({"op": 0, "t": event, "d": data, "s": None})

    async def close(self, code: int, reason: str = "") -> None:
        self.close_code = code
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode())
        self.closed = True




class Gateway(DiscordState):
    """The gateway half of the fake: connections, sessions, shards and dispatch."""

    def live_connection(self, shard_id: int = 0) -> GatewayConnection | None:
        for conn in reversed(self.connections):
            if conn.session is not None and not conn.closed and conn.shard_id == shard_id:
                return conn
        return None

    async def reconnect(self, shard_id: int = 0) -> None:
        """Send op 7 RECONNECT on the shard's live connection; the client closes it and RESUMEs."""
        conn = self.live_connection(shard_id)
        if conn is None:
            raise AssertionError(f"no live gateway connection for shard {shard_id}")
        await conn.send({"op": 7, "d": None})

    def hold_connections(self) -> None:
        """New gateway connections get no HELLO until `release_connections`: the gateway is down for the client."""
        self._gateway_open.clear()

    def release_connections(self) -> None:
        self._gateway_open.set()

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        await self._gateway_open.wait()
        conn = GatewayConnection(ws=ws, query=dict(request.query))
        self.connections.append(conn)
        await conn.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        await self._on_gateway_payload(conn, json.loads(msg.data))
                    except Exception:  # noqa: BLE001 - a fake bug must show up in the test, not kill the socket
                        self.internal_errors.append(traceback.format_exc())
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            conn.closed = True
            if conn.close_code is None:
                conn.close_code = ws.close_code
            self._notify()
        return ws

    async def _on_gateway_payload(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        conn.received_ops.append(op)
        if op == 1:  # HEARTBEAT
            conn.heartbeats += 1
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data)
        elif op == 6:
            await self._resume(conn, data)
        elif op == 8:
            await self._request_members(conn, data)
        self._notify()

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        conn.identify = data
        self.identifies.append(data)
        shard_id, shard_count = data.get("shard") or [0, 1]
        intents = data.get("intents")
        if self._identify_faults:
            await conn.close(self._identify_faults.pop(0), "scripted close")
            return
        if not self._token_ok(data.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        if intents is not None:
            for name, bit in PRIVILEGED_INTENTS.items():
                if intents & bit and name not in self.privileged_intents:
                    await conn.close(4014, "Disallowed intent(s).")
                    return
        if not 0 <= shard_id < shard_count:
            await conn.close(4010, "Invalid shard.")
            return
        session = GatewaySession(secrets.token_hex(16), shard_id, shard_count, intents, data["token"])
        self._sessions[session.session_id] = session
        conn.session = session
        guilds = [g for g in self._guilds.values() if self.shard_for(g.id, shard_count) == shard_id]
        await conn.dispatch(
            "READY",
            {
                "v": 10,
                "user": {**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.gateway_url,
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
                "user_settings": {},
                "auth": {},
            },
        )
        for guild in guilds:
            await conn.dispatch("GUILD_CREATE", {**self._guild_payload(guild), "unavailable": False})

    async def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        session = self._sessions.get(data.get("session_id") or "")
        if session is None or data.get("token") != session.token:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        for other in self.connections:
            if other is not conn and other.session is session:
                other.session = None  # the old socket no longer owns the session
        session.resumes += 1
        conn.session = session
        await conn.dispatch("RESUMED", {})

    async def _request_members(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        guild = self._guilds.get(int(data["guild_id"]))
        member_ids = [] if guild is None else [self.bot_id, *guild.member_ids]
        members = [self._member_payload(guild, uid) for uid in member_ids]
        await conn.dispatch(
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": data["guild_id"],
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": data.get("nonce"),
            },
        )

    def _event_intent(self, event: str, data: dict[str, Any]) -> int:
        if event.startswith("MESSAGE_"):
            return INTENT_GUILD_MESSAGES if data.get("guild_id") else INTENT_DIRECT_MESSAGES
        if event.startswith("GUILD_MEMBER_") and data.get("user", {}).get("id") != str(self.bot_id):
            return INTENT_GUILD_MEMBERS  # a bot hears about its own member without the privileged intent
        return 0

    def _visible_payload(self, conn: GatewayConnection, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Apply the Message Content intent rule to a message payload for this connection."""
        if event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or conn.intents is None:
            return data
        if conn.intents & INTENT_MESSAGE_CONTENT or not data.get("guild_id"):
            return data
        visible = self._content_visible(data)
        replied = data.get("referenced_message")
        if replied and not self._content_visible(replied):
            data = {**data, "referenced_message": self._without_content(replied)}
        return data if visible else self._without_content(data)

    def _content_visible(self, data: dict[str, Any]) -> bool:
        """Discord's rule without the intent: the bot sees the text of its own messages and of those that
        mention it (a reply with the ping off does not mention the replied author)."""
        author_is_bot = data.get("author", {}).get("id") == str(self.bot_id)
        return author_is_bot or any(m.get("id") == str(self.bot_id) for m in data.get("mentions", []))

    @staticmethod
    def _without_content(data: dict[str, Any]) -> dict[str, Any]:
        hidden = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
        hidden.pop("poll", None)
        return hidden

    def _announce(self, event: str, data: dict[str, Any]) -> None:
        # Queued, not sent at once (the world's setup methods are not async); every later dispatch sends the
        # queue first, so a bot learns of a thread before a message in it.
        if not self.connections:
            return
        self._backlog.append((event, data))
        self._spawn(self._send_backlog())

    async def _send_backlog(self) -> None:
        while self._backlog:
            event, data = self._backlog.pop(0)
            await self._dispatch_now(event, data)

    async def dispatch(self, event: str, data: dict[str, Any], shard_id: int | None = None) -> bool:
        """Send a DISPATCH event to the live connection that owns it; False if it was dropped."""
        await self._send_backlog()
        return await self._dispatch_now(event, data, shard_id)

    async def _dispatch_now(self, event: str, data: dict[str, Any], shard_id: int | None = None) -> bool:
        candidates = [c for c in self.connections if c.session is not None and not c.closed]
        if not candidates:
            self.dropped_events.append((event, "no live gateway connection"))
            return False
        if shard_id is None:
            guild_id = data.get("guild_id") or (data.get("id") if event.startswith("GUILD_") else None)
            shard_id = self.shard_for(int(guild_id) if guild_id else None, candidates[-1].session.shard_count)
        conn = self.live_connection(shard_id)
        if conn is None:
            self.dropped_events.append((event, f"no live connection for shard {shard_id}"))
            return False
        needed = self._event_intent(event, data)
        if needed and conn.intents is not None and not conn.intents & needed:
            self.dropped_events.append((event, f"intent {needed} not requested"))
            return False
        ok = await conn.dispatch(event, self._visible_payload(conn, event, data))
        self._notify()
        return ok

