"""``FakeDiscord``: the parts composed into one aiohttp server, its settings, and its start and close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from tests.fakes.discord.bot_messages import BotMessages
from tests.fakes.discord.command_options import CommandOptions
from tests.fakes.discord.events import UserEvents
from tests.fakes.discord.gateway import Gateway, GatewayConnection, GatewaySession
from tests.fakes.discord.guilds import Guilds
from tests.fakes.discord.interactions import Interactions
from tests.fakes.discord.ratelimits import ScriptedDelay, ScriptedFault, ScriptedFaults
from tests.fakes.discord.rest import RestApi
from tests.fakes.discord.runner import BotRunning
from tests.fakes.discord.state import (
    DISCORD_EPOCH_MS,
    PRIVILEGED_INTENTS,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    RestCall,
)
from tests.fakes.discord.wire import API_PREFIX, CDN_PREFIX


class FakeDiscord(
    BotRunning, UserEvents, Interactions, CommandOptions, Guilds, RestApi, BotMessages, Gateway, ScriptedFaults
):
    """A fake Discord (REST + gateway) on 127.0.0.1; the package's docstring is its manual."""

    def __init__(
        self,
        *,
        token: str | None = None,
        privileged_intents: Iterable[str] | None = None,
        recommended_shards: int = 1,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        interaction_ack_timeout: float = 3.0,
        attachment_size_limit: int = 10 * 1024 * 1024,
        echo_own_messages: bool = True,
        patch_discord: bool = True,
        bot_name: str = "Kortana",
    ) -> None:
        """
        token: the only token accepted (None: any non-empty token).
        privileged_intents: names enabled in the "developer portal" ("members", "presences",
            "message_content"); None = all.  IDENTIFY asking for another one is closed with 4014.
        recommended_shards: "shards" in GET /gateway/bot.
        rate_limits: {"METHOD /route/{template}": (limit, per_seconds)}; None = no rate limiting.
        attachment_size_limit: the bytes the files of one message may hold in all (Discord's 10 MiB without
            boosts); interactions carry it, and a message with more is refused (413 / 40005).
        echo_own_messages: send MESSAGE_CREATE/UPDATE for the bot's own messages, as Discord does.
        """
        self.token = token
        self.privileged_intents = set(PRIVILEGED_INTENTS) if privileged_intents is None else set(privileged_intents)
        unknown = self.privileged_intents - set(PRIVILEGED_INTENTS)
        if unknown:
            raise ValueError(f"unknown privileged intents: {sorted(unknown)}")
        self.recommended_shards = recommended_shards
        self.rate_limits = dict(rate_limits or {})
        self.interaction_ack_timeout = interaction_ack_timeout
        self.attachment_size_limit = attachment_size_limit
        self.echo_own_messages = echo_own_messages
        self.patch_discord = patch_discord
        self.heartbeat_interval_ms = 41250

        # Logs for assertions
        self.calls: list[RestCall] = []
        self.unhandled: list[RestCall] = []
        self.internal_errors: list[str] = []
        self.connections: list[GatewayConnection] = []
        self.identifies: list[dict[str, Any]] = []
        self.typing: list[int] = []
        self.dropped_events: list[tuple[str, str]] = []  # (event, reason)
        self.interactions: list[FakeInteraction] = []
        self.commands: dict[int | None, list[dict[str, Any]]] = {}

        # World (state.py), created by _create_world below
        self._last_snowflake = 0
        self._users: dict[int, dict[str, Any]] = {}
        self._guilds: dict[int, FakeGuild] = {}
        self._channels: dict[int, dict[str, Any]] = {}
        self._dm_by_user: dict[int, int] = {}
        self._messages: dict[int, FakeMessage] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._attachment_bytes: dict[int, bytes] = {}  # attachment id -> what the user uploaded
        self._deleted_channels: dict[int, dict[str, Any]] = {}  # id -> the channel as it was
        self._guild_id_base = (int(time.time() * 1000) - DISCORD_EPOCH_MS) // 840 * 840
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        # Gateway sessions (gateway.py)
        self._sessions: dict[str, GatewaySession] = {}
        self._gateway_open = asyncio.Event()  # cleared by hold_connections: new connections wait for their HELLO
        self._gateway_open.set()
        self._backlog: list[tuple[str, dict[str, Any]]] = []  # announced changes not yet dispatched
        # Scripted faults and rate-limit buckets (ratelimits.py)
        self._faults: list[ScriptedFault] = []
        self._delays: list[ScriptedDelay] = []
        self._identify_faults: list[int] = []
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (window end, used)

        self._create_world(bot_name)

        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._saved: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._gateway_open.set()  # a held connection must not hold the shutdown
        await self.close()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def cdn_base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{CDN_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._ws_handler)
        self._add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        if self.patch_discord:
            import discord.gateway
            import discord.http
            import yarl

            self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
            discord.http.Route.BASE = self.api_base_url
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self.connections:
            if not conn.closed:
                await conn.close(1001, "fake shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._saved is not None:
            import discord.gateway
            import discord.http

            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None

