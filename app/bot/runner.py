"""`kortana run`: migrate, connect to Discord, and close everything cleanly on SIGINT/SIGTERM.

A missing token or a refused login ends with one line that says what to do, and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

import discord
import yarl

from app.bot.client import KortanaBot
from app.config import Settings
from app.conversation.service import ConversationService

PORTAL = "https://discord.com/developers/applications"


def point_client_at(api_base_url: str, gateway_url: str) -> None:
    """Send discord.py's REST calls and gateway connection where the settings say (a proxy, or a test)."""
    discord.http.Route.BASE = api_base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def build_bot(service: ConversationService, settings: Settings, version: str, **client_options: object) -> KortanaBot:
    if settings.shard_count is not None:
        client_options.setdefault("shard_count", settings.shard_count)
    if settings.shard_ids:
        client_options.setdefault("shard_ids", settings.shard_ids)
    return KortanaBot(
        service,
        history_scope=settings.history_scope,
        chat_channel_ids=settings.chat_channel_ids,
        guild_ids=settings.discord_guild_ids,
        cooldown_seconds=settings.user_cooldown_seconds,
        show_engine_footer=settings.show_engine_footer,
        version=version,
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
    service = await opener(settings)  # migrations run before we connect
    bot = build_bot(service, settings, version, **client_options)
    undo_signal_handlers = _close_on_signals(bot)
    try:
        await bot.start(settings.discord_bot_token.get_secret_value())
    except discord.LoginFailure:
        print(
            f"kortana: Discord refused the bot token. Reset it in {PORTAL} (your app > Bot > Reset Token) and "
            "update DISCORD_BOT_TOKEN.",
            file=sys.stderr,
        )
        return 1
    except discord.PrivilegedIntentsRequired:
        print(
            f"kortana: Discord refused the Message Content intent, which CHAT_CHANNEL_IDS needs. Enable it in "
            f"{PORTAL} (your app > Bot > Privileged Gateway Intents), or clear CHAT_CHANNEL_IDS.",
            file=sys.stderr,
        )
        return 1
    finally:
        undo_signal_handlers()
        if not bot.is_closed():
            await bot.close()
        await service.close()
    return 0


def _close_on_signals(bot: KortanaBot) -> Callable[[], None]:
    """SIGINT/SIGTERM let running turns finish, then close the bot (and, through run_bot, the database);
    returns how to undo it."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(bot.shutdown()))
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals on this platform
            pass
    def undo() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return undo
