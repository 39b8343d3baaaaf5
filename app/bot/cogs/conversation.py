"""Talking with Kor'tana: the messages it answers (mentions, replies to it, DMs, open channels and their threads)
and /ask, within what the server allows (access, daily limit, cooldown) and with its persona and model.

Which messages are spoken to the bot, and what it says when it will not answer one (empty, only files it cannot
read, text it cannot see, a shutdown, a full queue, too fast, the daily limit reached, DMs off): at most one such
notice per user per notice interval. A member the server blocked gets silence in its channels (a notice
there would be noise for everyone) and one private sentence for /ask.

A message's text files are part of its turn, after the user's words (app/bot/attachments), and its images go
with it to the engines (app/bot/images; an image alone is a message); the files it cannot read get one sentence,
under the answer or instead of one when nothing else is left.

A message edited while its turn waits is answered as edited; edited once the turn started, its stored text is
updated. A message deleted while it is answered stops its turn: the reply is deleted and nothing of it stays.
"""

from __future__ import annotations

import asyncio
import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from app.bot.arrival_order import ArrivalOrder
from app.bot.attachments import ChosenFiles, ReadFiles, cdn_fetcher, choose_files, read_files, turn_text
from app.bot.bot import COMMAND_CHECKS_BOUND_S, KortanaBot, Turn
from app.bot.cooldown import NOTICE_INTERVAL_MIN_S, per_user
from app.bot.images import ReadImages, read_images
from app.bot.sentences import (
    ATTACHMENTS_ONLY,
    CANNOT_SEE_MESSAGE,
    CANNOT_SEE_REPLY,
    DMS_OFF,
    EMPTY_MENTION,
    EMPTY_QUESTION,
    RESTARTING,
    SLOW_RIGHT_NOW,
)
from app.bot.streaming import NO_PINGS, ChannelReply, InteractionReply
from app.bot.turns import Place
from app.conversation.events import NO_MEMORY
from app.conversation.turn_text import clean_text
from app.engines import HUGGINGFACE
from app.safe_text import error_cause
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)

# What people write; joins, pins, boosts, thread starts and the like are not spoken to the bot.
ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)
THREAD_NAME_MAX = 100  # Discord's limit
FALLBACK_THREAD_NAME = "Kor'tana"  # for a message with no words (a file alone): Discord refuses an empty name
# Starting a message's thread happens in the user's arrival order (their next message waits for it): past this
# bound the answer goes in the channel, as when Discord refuses the thread.
THREAD_START_BOUND_S = 5.0


class Conversation(commands.Cog):
    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot
        self._notices = per_user(max(bot.cooldown_seconds, NOTICE_INTERVAL_MIN_S))
        self._arrivals = ArrivalOrder()

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None or message.type not in ANSWERED_TYPES:
            return
        # Queued before any await: the settings read below cannot let a later message of the user overtake this one.
        async with self._arrivals.enter(message.author.id):
            accepted = await self._accept_message(message)
        if isinstance(accepted, str):
            await self._notify(message, accepted)
        elif accepted is not None:
            place, turn, typing = accepted
            await self.bot.take_turn(place, turn, typing=typing)

    async def _accept_message(
        self, message: discord.Message
    ) -> tuple[Place, Turn, discord.abc.Messageable] | str | None:
        """The message's turn with its place taken, or the notice to give instead, or None: not for the bot."""
        bot = self.bot
        try:
            here = await bot.rules_here(message.guild, message.channel, message.author)
        except StorageUnavailable as error:  # who may talk here is unknown: answer only what was surely for us
            log.warning("Cannot read the settings for a message: %s", error.cause)
            return NO_MEMORY if message.guild is None or self._is_addressed(message) else None
        if not (here.open or self._is_addressed(message)):
            return None
        if not here.access.allowed:
            return DMS_OFF if here.access.reason == "dms off" else None
        if not bot.accepting_turns:  # the grace is for the turns already running; silence would look like a crash
            return RESTARTING
        if self._text_is_hidden(message):
            return CANNOT_SEE_REPLY if message.reference else CANNOT_SEE_MESSAGE
        words = clean_text(self._without_own_mentions(message.content))
        chosen = choose_files(message.attachments, bot.file_rules)
        if not words and not chosen.to_read and not chosen.images:
            if message.attachments:
                return chosen.refusal()
            return ATTACHMENTS_ONLY if message.stickers else EMPTY_MENTION
        if (over := await bot.daily_limit_notice(here.guild_id, message.author.id, here.daily_tokens)):
            return over
        if (refusal := bot.turn_refusal(message.author.id, guild_id=here.guild_id, cooldown_s=here.cooldown_s)):
            return refusal
        # Downloads are bounded (each within ATTACHMENT_DOWNLOAD_SECONDS, all at once) and in the user's
        # arrival order, as a thread's start.
        files, images = await self._read_files(chosen)
        notices = (*files.notices(), *images.notices())
        if not words and not files.blocks and not images.images:
            return " ".join(notices)
        text = turn_text(words, files.blocks)
        # The cooldown's token is taken; the downloads above and the thread's start are the awaits before the place
        # is taken (each bounded, and still in the user's arrival order, so no later message of theirs overtakes this).
        thread = await self._thread_for(message) if here.open and here.threads else None
        key = bot.key_for(message.author.id, message.guild, (thread or message.channel).id)
        turn = Turn(
            ChannelReply(message, into=thread),
            key,
            message.author.display_name,
            text,
            persona=here.persona,
            model=here.model,
            guild_id=here.guild_id,
            daily_tokens=here.daily_tokens,
            notices=notices,
            message_id=message.id,
            files=tuple(files.blocks),
            images=tuple(images.images),
        )
        return bot.join_line(key), turn, thread or message.channel

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Raw: the message being answered may have left discord.py's cache. An edit that carries no text (an
        embed resolved, a pin) is no edit of the words."""
        content = payload.data.get("content")
        if isinstance(content, str):
            await self.bot.edit_turn(payload.message_id, clean_text(self._without_own_mentions(content)))

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.bot.withdraw_turn(payload.message_id)

    async def _read_files(self, chosen: ChosenFiles) -> tuple[ReadFiles, ReadImages]:
        """The text files read and the images prepared (inline images downloaded), all at once."""
        rules = self.bot.image_rules
        if not chosen.to_read and not (chosen.images and rules.inline):  # nothing to download: no session
            return ReadFiles.unread(chosen), await read_images(chosen.images, None, rules)
        async with cdn_fetcher(self.bot.http) as fetch:
            return await asyncio.gather(
                read_files(chosen, fetch, self.bot.file_rules), read_images(chosen.images, fetch, rules)
            )

    @app_commands.command(name="ask", description="Ask Kor'tana something, with our conversation as context")
    @app_commands.describe(question="What would you like to ask?")
    async def ask(self, interaction: discord.Interaction, question: app_commands.Range[str, 1, 4000]) -> None:
        in_order = self._arrivals.enter(interaction.user.id)  # queued before any await, as a message is
        try:
            async with asyncio.timeout(COMMAND_CHECKS_BOUND_S), in_order:
                accepted = await self._accept_question(interaction, question)
        except TimeoutError:  # no place was taken (that step has no await): the messages behind keep their order
            log.warning("/ask's checks took over %g s: the question is refused", COMMAND_CHECKS_BOUND_S)
            accepted = SLOW_RIGHT_NOW
        if isinstance(accepted, str):
            await interaction.response.send_message(accepted, ephemeral=True)  # private: costs the channel nothing
            return
        place, turn = accepted
        await self.bot.take_turn(place, turn, acknowledge=lambda: interaction.response.defer(thinking=True))

    async def _accept_question(self, interaction: discord.Interaction, question: str) -> tuple[Place, Turn] | str:
        bot = self.bot
        here = await bot.rules_for_command(interaction, "/ask")
        if isinstance(here, str):
            return here
        key = bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)
        place = bot.accept_turn(key, guild_id=here.guild_id, cooldown_s=here.cooldown_s)
        if isinstance(place, str):
            return place
        turn = Turn(
            InteractionReply(interaction),
            key,
            interaction.user.display_name,
            question,
            prefer=HUGGINGFACE,
            empty_reply=EMPTY_QUESTION,
            persona=here.persona,
            model=here.model,
            guild_id=here.guild_id,
            daily_tokens=here.daily_tokens,
        )
        return place, turn

    async def _thread_for(self, message: discord.Message) -> discord.Thread | None:
        """A thread started from a new top-level message of an open channel that has a thread for each new
        message; None where there is none to start (the message is in a thread already), or Discord refused it
        or took longer than THREAD_START_BOUND_S (then the answer goes in the channel)."""
        if not isinstance(message.channel, discord.TextChannel):
            return None
        try:
            async with asyncio.timeout(THREAD_START_BOUND_S):
                files = " ".join(attachment.filename for attachment in message.attachments)
                name = thread_name(message.clean_content) or thread_name(files) or FALLBACK_THREAD_NAME
                return await message.create_thread(name=name)
        except discord.HTTPException as error:  # e.g. no Create Public Threads permission: answer in the channel
            log.warning("Could not start a thread for a message (HTTP %s, code %s)", error.status, error.code)
        except TimeoutError:
            log.warning("A thread took over %g s to start: the answer goes in the channel", THREAD_START_BOUND_S)
        return None

    def _is_addressed(self, message: discord.Message) -> bool:
        """Spoken to the bot wherever it is: a mention, or a reply to one of its messages."""
        if self._mentions_me(message):
            return True
        replied = message.reference.resolved if message.reference else None
        me = self.bot.user
        return isinstance(replied, discord.Message) and me is not None and replied.author.id == me.id

    def _mentions_me(self, message: discord.Message) -> bool:
        me = self.bot.user
        return me is not None and any(user.id == me.id for user in message.mentions)

    def _text_is_hidden(self, message: discord.Message) -> bool:
        """Without the Message Content intent, Discord sends guild messages that don't mention the bot
        without their text (a reply with the ping off is one)."""
        return message.guild is not None and not self.bot.intents.message_content and not self._mentions_me(message)

    def _without_own_mentions(self, content: str) -> str:
        me = self.bot.user
        if me is None:
            return content
        return re.sub(rf"<@!?{me.id}>", "", content).strip()

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
            log.warning("Could not send a notice: %s", error_cause(error))


def thread_name(text: str) -> str:
    """The message's first words, as a thread's name (`text` as people see it: `Message.clean_content`)."""
    words = " ".join(clean_text(text).split())
    return words if len(words) <= THREAD_NAME_MAX else words[: THREAD_NAME_MAX - 1].rstrip() + "…"
