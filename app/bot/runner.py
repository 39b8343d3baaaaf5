"""`kortana run`: migrate, connect to Discord, and close everything cleanly on SIGINT/SIGTERM.

A missing token or a refused login ends with one line that says what to do, and a non-zero exit. With
MESSAGE_CONTENT_INTENT=auto a refused Message Content intent is one warning line and a second connection
without it; with `on` it ends the run like a refused token.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import discord
import yarl

from app.bot.attachments import FileRules
from app.bot.bot import KortanaBot
from app.bot.cogs import FEATURES
from app.bot.discord_trace import discord_trace
from app.bot.images import ImageRules
from app.bot.ops_server import EndpointsUnavailable, ops_endpoints
from app.config import Settings
from app.conversation.metrics import Metrics
from app.conversation.service import ConversationService

PORTAL = "https://discord.com/developers/applications"
CONTENT_INTENT_REFUSED = (
    "Discord refused the Message Content intent, so Kor'tana runs without it: replies that don't ping it and "
    "messages in CHAT_CHANNEL_IDS channels reach it without their text. Enable it in the Developer Portal > "
    "your app > Bot > Privileged Gateway Intents > Message Content, or set MESSAGE_CONTENT_INTENT=off to stop "
    "asking."
)
CHAT_CHANNELS_WITHOUT_CONTENT = (
    "CHAT_CHANNEL_IDS is set without the Message Content intent: messages there reach Kor'tana without their "
    "text unless they mention it."
)

log = logging.getLogger(__name__)


def point_client_at(api_base_url: str, gateway_url: str) -> None:
    """Send discord.py's REST calls and gateway connection where the settings say (a proxy, or a test)."""
    discord.http.Route.BASE = api_base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def build_bot(
    service: ConversationService,
    settings: Settings,
    version: str,
    *,
    message_content: bool | None = None,
    **client_options: object,
) -> KortanaBot:
    """The bot the settings describe; `message_content` overrides MESSAGE_CONTENT_INTENT (the fallback)."""
    metrics = Metrics()  # cheap to keep; /ping shows its figures, METRICS_PORT serves them
    client_options.setdefault("http_trace", discord_trace(metrics))
    if settings.shard_count is not None:
        client_options.setdefault("shard_count", settings.shard_count)
    if settings.shard_ids:
        client_options.setdefault("shard_ids", settings.shard_ids)
    if message_content is None:
        message_content = settings.message_content_intent != "off"
        if settings.chat_channel_ids and not message_content:  # the fallback says so in its own warning
            log.warning(CHAT_CHANNELS_WITHOUT_CONTENT)
    return KortanaBot(
        service,
        features=FEATURES,
        history_scope=settings.history_scope,
        guild_ids=settings.discord_guild_ids,
        cooldown_seconds=settings.user_cooldown_seconds,
        message_content=message_content,
        shutdown_grace_s=settings.shutdown_grace_seconds,
        show_engine_footer=settings.show_engine_footer,
        version=version,
        file_rules=FileRules(
            settings.attachment_max_bytes, settings.attachment_max_files, settings.attachment_download_seconds
        ),
        image_rules=ImageRules(settings.image_delivery, settings.image_max_bytes, settings.attachment_download_seconds),
        metrics=metrics,
        **client_options,
    )


async def run_bot(
    settings: Settings,
    opener: Callable[[Settings], Awaitable[ConversationService]],
    version: str,
    **client_options: object,
) -> int:
    if settings.discord_bot_token is None:
        print(
            f"kortana: DISCORD_BOT_TOKEN is not set. Create a bot at {PORTAL} (Bot > Reset Token) and put the "
            "token in .env — see the README, section 'Run it on Discord'.",
            file=sys.stderr,
        )
        return 2
    point_client_at(settings.discord_api_base_url, settings.discord_gateway_url)
    token = settings.discord_bot_token.get_secret_value()
    service = await opener(settings)  # migrations run before we connect
    try:
        try:
            await serve(build_bot(service, settings, version, **client_options), token, settings)
        except discord.PrivilegedIntentsRequired:
            if settings.message_content_intent != "auto":
                raise
            log.warning(CONTENT_INTENT_REFUSED)
            await serve(
                build_bot(service, settings, version, message_content=False, **client_options), token, settings
            )
    except discord.LoginFailure:
        print(
            f"kortana: Discord refused the bot token. Reset it in {PORTAL} (your app > Bot > Reset Token) and "
            "update DISCORD_BOT_TOKEN.",
            file=sys.stderr,
        )
        return 1
    except EndpointsUnavailable as error:
        print(f"kortana: {error}", file=sys.stderr)
        return 2
    except discord.PrivilegedIntentsRequired:
        print(
            f"kortana: Discord refused the Message Content intent, which MESSAGE_CONTENT_INTENT=on requires. "
            f"Enable it in {PORTAL} (your app > Bot > Privileged Gateway Intents > Message Content), or set "
            "MESSAGE_CONTENT_INTENT=auto.",
            file=sys.stderr,
        )
        return 1
    finally:
        await service.close()
    return 0


async def serve(bot: KortanaBot, token: str, settings: Settings | None = None) -> None:
    """Run the bot until it closes; SIGINT/SIGTERM shut it down gracefully (see KortanaBot.shutdown). With
    METRICS_PORT set, the health and metrics endpoints run beside it, until it closed."""
    async with AsyncExitStack() as endpoints:  # open until the shutdown ended: /readyz tells of it
        if settings is not None and settings.metrics_port is not None:
            # Before the bot starts: a port in use stops start-up with nothing started to close.
            await endpoints.enter_async_context(ops_endpoints(bot, settings.metrics_host, settings.metrics_port))
        undo_signal_handlers = _shut_down_on_signals(bot)
        try:
            await bot.start(token)
        finally:
            undo_signal_handlers()
            await bot.shutdown()  # after a failed start this only closes; after a signal it waits for that one


def _shut_down_on_signals(bot: KortanaBot) -> Callable[[], None]:
    """SIGINT/SIGTERM begin the bot's graceful shutdown; returns how to undo it."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, bot.begin_shutdown)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals on this platform
            pass

    def undo() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return undo
