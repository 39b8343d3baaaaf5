"""The Discord front end: when to answer, the slash commands, and one turn shown as a streamed reply."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import aclosing, nullcontext
from dataclasses import dataclass

import discord
from discord import app_commands

from app.bot.conversation_keys import Scope, conversation_key
from app.bot.cooldown import NOTICE_INTERVAL_MIN_S, per_user
from app.bot.streaming import (
    NO_PINGS,
    ChannelReply,
    InteractionReply,
    ReplyStream,
    ReplySurface,
)
from app.bot.turns import Place, TurnLine
from app.bot.typing_indicator import typing_in_background
from app.conversation.events import (
    NO_MEMORY,
    SORRY,
    ConversationKey,
    EmptyMessage,
    FinalReply,
    Notice,
    StorageUnavailable,
    TextChunk,
)
from app.conversation.service import ConversationService, clean_text
from app.conversation.status import format_status
from app.engines import HUGGINGFACE, EngineStarted
from app.safe_text import redact_url_credentials

log = logging.getLogger(__name__)

RESTARTING = "I'm restarting — ask me again in a minute 🔄"
EMPTY_MENTION = "Hi! 👋 Mention me with a message and I'll answer."
EMPTY_QUESTION = "Ask me something with a few words in it 🙂"
ATTACHMENTS_ONLY = "I can only read text for now 📎 — tell me about it in words?"
CANNOT_SEE_REPLY = (
    "I can't see the text of replies that don't mention me 🙈 — turn the reply ping on (@ON), or mention me."
)
CANNOT_SEE_MESSAGE = "I can't see messages here that don't mention me 🙈 — mention me and I'll answer."
STILL_ANSWERING = "I'm still answering your earlier messages ⏳ — send this one again once I've replied."
# What people write; joins, pins, boosts, thread starts and the like are not spoken to the bot.
ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)
# How long a turn cut by shutdown may take to say so before the connection closes anyway.
RESTART_NOTICE_BOUND_S = 5.0


@dataclass(frozen=True, slots=True)
class Turn:
    """One accepted message or question, and where its answer goes."""

    surface: ReplySurface
    key: ConversationKey
    author: str
    text: str
    prefer: str | None = None  # the engine to ask first (/ask prefers Hugging Face)
    empty_reply: str = EMPTY_MENTION  # what to say if the text turns out to be empty once cleaned


class KortanaBot(discord.AutoShardedClient):
    def __init__(
        self,
        service: ConversationService,
        *,
        history_scope: Scope = "guild",
        chat_channel_ids: list[int] | None = None,
        guild_ids: list[int] | None = None,
        cooldown_seconds: float = 2.0,
        message_content: bool = True,
        shutdown_grace_s: float | None = None,
        show_engine_footer: bool = True,
        version: str = "dev",
        edit_interval: float = 1.0,
        **client_options: object,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        # Privileged: without it, replies that don't ping the bot and open-channel messages arrive without text.
        intents.message_content = message_content
        super().__init__(intents=intents, allowed_mentions=NO_PINGS, **client_options)  # type: ignore[arg-type]
        self.service = service
        self.tree = app_commands.CommandTree(self)
        self._scope: Scope = history_scope
        self._chat_channels = set(chat_channel_ids or [])
        self._guild_ids = guild_ids or []
        self._cooldown = per_user(cooldown_seconds)
        self._notices = per_user(max(cooldown_seconds, NOTICE_INTERVAL_MIN_S))
        self._line = TurnLine()
        self._grace_s = service.answer_bound_s if shutdown_grace_s is None else shutdown_grace_s
        self._show_footer = show_engine_footer
        self._edit_interval = edit_interval
        self.version = version
        self._turn_tasks: set[asyncio.Task[object]] = set()  # accepted turns not yet ended: running or waiting
        self._closing = False
        self._shutdown: asyncio.Task[None] | None = None
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

    async def on_ready(self) -> None:
        log.info("Connected to Discord as %s in %d servers", self.user, len(self.guilds))

    @property
    def active_turns(self) -> int:
        return len(self._turn_tasks)

    # --- shutdown -------------------------------------------------------------------------------------

    def begin_shutdown(self) -> asyncio.Task[None]:
        """Start the shutdown (once; later calls return the same task)."""
        if self._shutdown is None:
            self._closing = True  # from now on no turn is accepted
            self._shutdown = asyncio.create_task(self._shut_down(), name="kortana-shutdown")
        return self._shutdown

    async def shutdown(self) -> None:
        """Stop taking turns, let the running ones finish within the grace (answers shown and stored), end
        the rest visibly ("I'm restarting"), then disconnect."""
        await asyncio.shield(self.begin_shutdown())

    async def _shut_down(self) -> None:
        unfinished: set[asyncio.Task[object]] = set()
        if self._turn_tasks:
            _, late = await asyncio.wait(set(self._turn_tasks), timeout=self._grace_s)
            if late:
                log.warning("Shutting down: %d turn(s) still running after %g s are cut", len(late), self._grace_s)
                for task in late:
                    task.cancel()
                # Each says so ("I'm restarting") while the connection is still open.
                _, unfinished = await asyncio.wait(late, timeout=RESTART_NOTICE_BOUND_S)
        await self.close()
        if unfinished:  # stuck in a Discord call (a rate limit): with the session closed, it fails and ends
            _, stuck = await asyncio.wait(unfinished, timeout=RESTART_NOTICE_BOUND_S)
            if stuck:
                log.warning("Shutting down: %d turn(s) did not end after the connection closed", len(stuck))

    # --- messages -------------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None:
            return
        if message.type not in ANSWERED_TYPES or not self._is_addressed(message):
            return
        if self._closing:  # the grace is for the turns already running; silence would look like a crash
            await self._notify(message, RESTARTING)
            return
        if self._text_is_hidden(message):
            await self._notify(message, CANNOT_SEE_REPLY if message.reference else CANNOT_SEE_MESSAGE)
            return
        text = self._without_own_mentions(message.content)
        if not clean_text(text):
            await self._notify(message, ATTACHMENTS_ONLY if message.attachments or message.stickers else EMPTY_MENTION)
            return
        key = self.key_for(message.author.id, message.guild, message.channel.id)
        place = self.accept_turn(key)  # before any await: this message's turn keeps its order of arrival
        if isinstance(place, str):
            await self._notify(message, place)
            return
        turn = Turn(ChannelReply(message), key, message.author.display_name, text)
        await self.take_turn(place, turn, typing=message.channel)

    def _is_addressed(self, message: discord.Message) -> bool:
        if message.guild is None or message.channel.id in self._chat_channels:
            return True
        if self._mentions_me(message):
            return True
        replied = message.reference.resolved if message.reference else None
        return isinstance(replied, discord.Message) and self.user is not None and replied.author.id == self.user.id

    def _mentions_me(self, message: discord.Message) -> bool:
        return self.user is not None and any(user.id == self.user.id for user in message.mentions)

    def _text_is_hidden(self, message: discord.Message) -> bool:
        """Without the Message Content intent, Discord sends guild messages that don't mention the bot
        without their text (a reply with the ping off is one)."""
        return message.guild is not None and not self.intents.message_content and not self._mentions_me(message)

    def _without_own_mentions(self, content: str) -> str:
        if self.user is None:
            return content
        return re.sub(rf"<@!?{self.user.id}>", "", content).strip()

    def accept_turn(self, key: ConversationKey) -> Place | str:
        """Take the turn's place now, or say why not (the user's queue is full, or they write too fast)."""
        if not self._line.has_room(key.user_id):
            return STILL_ANSWERING
        wait = self._cooldown.update_rate_limit(key.user_id)
        if wait:
            return _cooldown_notice(wait)
        return self._line.join(key)

    async def _notify(self, message: discord.Message, text: str) -> None:
        """A short notice; at most one per user per notice interval, the others are dropped."""
        if self._notices.update_rate_limit(message.author.id) is not None:
            return
        try:
            await message.channel.send(
                text, reference=message.to_reference(fail_if_not_exists=False), allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as error:
            log.warning("Could not send a notice (HTTP %s)", error.status)
        except Exception as error:  # noqa: BLE001 - e.g. the session closed by a shutdown meanwhile
            log.warning("Could not send a notice: %s", _cause(error))

    # --- one turn ---------------------------------------------------------------------------------------

    def key_for(self, user_id: int, guild: discord.Guild | None, channel_id: int) -> ConversationKey:
        return conversation_key(self._scope, user_id, guild.id if guild else None, channel_id)

    async def take_turn(
        self,
        place: Place,
        turn: Turn,
        *,
        typing: discord.abc.Messageable | None = None,
        acknowledge: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Wait for the turn's place, then run it. Call it right after `accept_turn`, before any other await:
        it counts the turn at once, so a shutdown that starts meanwhile waits for it. `acknowledge` (a slash
        command's defer) is awaited first; `typing` is where to show "typing…" while the answer is made."""
        task = asyncio.current_task()
        assert task is not None
        self._turn_tasks.add(task)
        try:
            if acknowledge is not None:
                await acknowledge()
            async with place:
                if self._closing:  # its place came up after shutdown began
                    await _say_restarting(ReplyStream(turn.surface, conversation=turn.key.log_id))
                    return
                bound_s = self.service.answer_bound_s
                async with nullcontext() if typing is None else typing_in_background(typing, bound_s):
                    await self.stream_turn(turn)
        except asyncio.CancelledError:
            if not place.reached:  # cut by shutdown while waiting: say so too
                await _say_restarting(ReplyStream(turn.surface, conversation=turn.key.log_id))
            raise
        finally:
            place.leave()
            self._turn_tasks.discard(task)

    async def stream_turn(self, turn: Turn) -> None:
        """Run one turn and show it; whatever fails, the user sees an answer or a short apology, and an answer
        once shown is never replaced by one."""
        key = turn.key
        stream = ReplyStream(turn.surface, edit_interval=self._edit_interval, conversation=key.log_id)
        notices: list[str] = []
        shown = False
        try:
            async with aclosing(self.service.respond(key, turn.author, turn.text, prefer=turn.prefer)) as events:
                async for event in events:
                    if isinstance(event, TextChunk):
                        stream.add(event.text)
                    elif isinstance(event, EngineStarted) and event.replaces_partial:
                        stream.restart()
                    elif isinstance(event, Notice):
                        notices.append(event.text)
                    elif isinstance(event, FinalReply):
                        shown = True
                        await stream.finish(self._decorate(event, notices))
        except asyncio.CancelledError:
            if not shown:  # cut by shutdown: end visibly, not with a partial answer left for good
                await _say_restarting(stream)
            raise
        except EmptyMessage:
            await stream.fail(turn.empty_reply)
        except Exception as error:
            if shown:
                log.error("Turn failed in conversation %s after its answer was shown: %s", key.log_id, _cause(error))
            elif isinstance(error, StorageUnavailable):
                log.error("Turn failed in conversation %s: %s", key.log_id, _cause(error))
                await stream.fail(NO_MEMORY)
            else:
                log.error("Turn failed in conversation %s: %s", key.log_id, _cause(error), exc_info=error)
                await stream.fail(SORRY)
        finally:
            await stream.close()

    def _decorate(self, reply: FinalReply, notices: list[str]) -> str:
        text = reply.text.strip() or "…"
        lines = [f"-# {notice}" for notice in notices]
        if self._show_footer and reply.engine != self.service.brain_name:
            lines.append(f"-# answered by {reply.engine}")
        return "\n".join([text, *lines]) if lines else text


async def _say_restarting(stream: ReplyStream) -> None:
    try:
        await stream.fail(RESTARTING)
    except Exception as error:  # noqa: BLE001 - shutting down: one log line, never a traceback
        log.warning("Could not tell a user that Kor'tana is restarting: %s", _cause(error))


def _cause(error: BaseException) -> str:
    """The error's own words for the log (our errors never carry message text; URLs lose their credentials)."""
    return redact_url_credentials(str(error)) or type(error).__name__


def _cooldown_notice(wait: float) -> str:
    return f"Easy there 🙂 give me {max(1, round(wait))} s between messages."


def _register_commands(bot: KortanaBot) -> None:
    tree = bot.tree

    @tree.command(name="ask", description="Ask Kor'tana something, with our conversation as context")
    @app_commands.describe(question="What would you like to ask?")
    async def ask(interaction: discord.Interaction, question: app_commands.Range[str, 1, 4000]) -> None:
        if bot._closing:
            await interaction.response.send_message(RESTARTING, ephemeral=True)
            return
        key = bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)
        place = bot.accept_turn(key)  # before any await: the question keeps its order of arrival
        if isinstance(place, str):
            await interaction.response.send_message(place, ephemeral=True)  # private: costs the channel nothing
            return
        turn = Turn(
            InteractionReply(interaction), key, interaction.user.display_name, question, HUGGINGFACE, EMPTY_QUESTION
        )
        await bot.take_turn(place, turn, acknowledge=lambda: interaction.response.defer(thinking=True))

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
        name = interaction.command.name if interaction.command else "?"
        original = getattr(error, "original", error)
        if isinstance(original, StorageUnavailable):  # the database's short cause; its driver error may quote SQL
            log.error("Slash command /%s failed: the database is unavailable (%s)", name, _cause(original))
            reply = NO_MEMORY
        else:
            log.error("Slash command /%s failed", name, exc_info=error)
            reply = SORRY
        try:
            if interaction.response.is_done():
                await interaction.followup.send(reply, ephemeral=True)
            else:
                await interaction.response.send_message(reply, ephemeral=True)
        except discord.HTTPException:
            pass
