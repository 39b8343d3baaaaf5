"""The Discord front end: when to answer, the slash commands, and one turn shown as a streamed reply."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import aclosing

import discord
from discord import app_commands

from app.bot.conversation_keys import Scope, conversation_key
from app.bot.cooldown import Cooldown
from app.bot.streaming import (
    NO_PINGS,
    ChannelReply,
    InteractionReply,
    ReplyStream,
    ReplySurface,
)
from app.conversation.events import (
    NO_MEMORY,
    SORRY,
    ConversationKey,
    EmptyMessage,
    EngineChosen,
    FinalReply,
    Notice,
    StorageUnavailable,
    TextChunk,
)
from app.conversation.service import ConversationService
from app.conversation.status import format_status

log = logging.getLogger(__name__)

HF_ENGINE = "huggingface"
SHUTDOWN_GRACE_S = 10.0
RESTARTING = "I'm restarting — ask me again in a minute 🔄"
EMPTY_MENTION = "Hi! 👋 Mention me with a message and I'll answer."
EMPTY_QUESTION = "Ask me something with a few words in it 🙂"
ATTACHMENTS_ONLY = "I can only read text for now 📎 — tell me about it in words?"


class KortanaBot(discord.AutoShardedClient):
    def __init__(
        self,
        service: ConversationService,
        *,
        history_scope: Scope = "guild",
        chat_channel_ids: list[int] | None = None,
        guild_ids: list[int] | None = None,
        cooldown_seconds: float = 2.0,
        show_engine_footer: bool = True,
        version: str = "dev",
        edit_interval: float = 1.0,
        **client_options: object,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        # Mentions, replies that mention the bot and DMs carry text without it; only open channels need it.
        intents.message_content = bool(chat_channel_ids)
        super().__init__(intents=intents, allowed_mentions=NO_PINGS, **client_options)  # type: ignore[arg-type]
        self.service = service
        self.tree = app_commands.CommandTree(self)
        self._scope: Scope = history_scope
        self._chat_channels = set(chat_channel_ids or [])
        self._guild_ids = guild_ids or []
        self._cooldown = Cooldown(cooldown_seconds)
        self._show_footer = show_engine_footer
        self._edit_interval = edit_interval
        self.version = version
        self.active_turns = 0
        self._closing = False
        _register_commands(self)

    async def setup_hook(self) -> None:
        try:
            if self._guild_ids:
                for guild_id in self._guild_ids:
                    guild = discord.Object(id=guild_id)
                    self.tree.copy_global_to(guild=guild)
                    await self.tree.sync(guild=guild)
            else:
                await self.tree.sync()
        except discord.HTTPException as error:
            log.warning(
                "Could not sync slash commands (HTTP %s): invite the bot with the applications.commands scope",
                error.status,
            )

    async def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop taking new turns, let the running ones finish (answers shown and stored), then disconnect."""
        self._closing = True
        deadline = time.monotonic() + grace_s
        while self.active_turns and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.close()

    async def on_ready(self) -> None:
        log.info("Connected to Discord as %s in %d servers", self.user, len(self.guilds))

    # --- messages -------------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if self._closing or message.author.bot or message.webhook_id is not None or not self._is_addressed(message):
            return
        text = self._without_own_mentions(message.content)
        if not text.strip():
            await self._notify(message, ATTACHMENTS_ONLY if message.attachments else EMPTY_MENTION)
            return
        wait = self._cooldown.try_start(message.author.id)
        if wait:
            await self._notify(message, _cooldown_notice(wait))
            return
        key = self.key_for(message.author.id, message.guild, message.channel.id)
        async with _typing(message.channel):
            await self.stream_turn(ChannelReply(message), key, message.author.display_name, text)

    def _is_addressed(self, message: discord.Message) -> bool:
        if message.guild is None or message.channel.id in self._chat_channels:
            return True
        if self.user is not None and any(user.id == self.user.id for user in message.mentions):
            return True
        replied = message.reference.resolved if message.reference else None
        return isinstance(replied, discord.Message) and self.user is not None and replied.author.id == self.user.id

    def _without_own_mentions(self, content: str) -> str:
        if self.user is None:
            return content
        return re.sub(rf"<@!?{self.user.id}>", "", content).strip()

    async def _notify(self, message: discord.Message, text: str) -> None:
        try:
            await message.channel.send(
                text, reference=message.to_reference(fail_if_not_exists=False), allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as error:
            log.warning("Could not send a notice (HTTP %s)", error.status)

    # --- one turn ---------------------------------------------------------------------------------------

    def key_for(self, user_id: int, guild: discord.Guild | None, channel_id: int) -> ConversationKey:
        return conversation_key(self._scope, user_id, guild.id if guild else None, channel_id)

    async def stream_turn(
        self,
        surface: ReplySurface,
        key: ConversationKey,
        author: str,
        text: str,
        prefer: str | None = None,
        empty_reply: str = EMPTY_MENTION,
    ) -> None:
        """Run one turn and show it; whatever fails, the user sees an answer or a short apology."""
        stream = ReplyStream(surface, edit_interval=self._edit_interval)
        notices: list[str] = []
        self.active_turns += 1
        try:
            async with aclosing(self.service.respond(key, author, text, prefer=prefer)) as events:
                async for event in events:
                    if isinstance(event, TextChunk):
                        stream.add(event.text)
                    elif isinstance(event, EngineChosen) and event.replaces_partial:
                        stream.restart()
                    elif isinstance(event, Notice):
                        notices.append(event.text)
                    elif isinstance(event, FinalReply):
                        await stream.finish(self._decorate(event, notices))
        except EmptyMessage:
            await stream.fail(empty_reply)
        except StorageUnavailable:
            log.error("A turn failed: the database is unreachable")
            await stream.fail(NO_MEMORY)
        except Exception:
            log.exception("A turn failed")
            await stream.fail(SORRY)
        finally:
            self.active_turns -= 1
            await stream.close()

    def _decorate(self, reply: FinalReply, notices: list[str]) -> str:
        text = reply.text.strip() or "…"
        lines = [f"-# {notice}" for notice in notices]
        if self._show_footer and reply.engine != self.service.brain_name:
            lines.append(f"-# answered by {reply.engine}")
        return "\n".join([text, *lines]) if lines else text


def _cooldown_notice(wait: float) -> str:
    return f"Easy there 🙂 give me {max(1, round(wait))} s between messages."


class _typing:
    """Show "Kor'tana is typing…" while a turn runs; a channel that refuses it is no reason to fail."""

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self._typing = channel.typing()
        self._active = False

    async def __aenter__(self) -> None:
        try:
            await self._typing.__aenter__()
            self._active = True
        except discord.HTTPException:
            pass

    async def __aexit__(self, *exc_info: object) -> None:
        if self._active:
            await self._typing.__aexit__(None, None, None)


def _register_commands(bot: KortanaBot) -> None:
    tree = bot.tree

    @tree.command(name="ask", description="Ask Kor'tana something, with our conversation as context")
    @app_commands.describe(question="What would you like to ask?")
    async def ask(interaction: discord.Interaction, question: app_commands.Range[str, 1, 4000]) -> None:
        if bot._closing:
            await interaction.response.send_message(RESTARTING, ephemeral=True)
            return
        wait = bot._cooldown.try_start(interaction.user.id)
        if wait:
            await interaction.response.send_message(_cooldown_notice(wait), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        key = bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)
        await bot.stream_turn(
            InteractionReply(interaction), key, interaction.user.display_name, question, HF_ENGINE, EMPTY_QUESTION
        )

    @tree.command(name="reset", description="Forget our conversation here and start fresh")
    async def reset(interaction: discord.Interaction) -> None:
        # Deferred: a reset waits for a turn of this conversation that is still answering.
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)
        forgotten = await bot.service.reset(key)
        noun = "message" if forgotten == 1 else "messages"
        await interaction.followup.send(f"Done — I forgot {forgotten} {noun}. Fresh start! ✨", ephemeral=True)

    @tree.command(name="ping", description="Is Kor'tana alive? Latency, memory and engines")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        status = await bot.service.status()
        gateway = f"{bot.latency * 1000:.0f} ms" if bot.latency == bot.latency else "not measured yet"  # NaN
        text = (
            f"🏓 Pong! Kor'tana {bot.version}\nGateway latency: {gateway}\nTurns in progress: {bot.active_turns}\n"
            f"{format_status(status, public=True)}"
        )
        await interaction.followup.send(f"```\n{text}\n```", ephemeral=True)

    @tree.error
    async def on_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("Slash command /%s failed", interaction.command.name if interaction.command else "?", exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(SORRY, ephemeral=True)
            else:
                await interaction.response.send_message(SORRY, ephemeral=True)
        except discord.HTTPException:
            pass
