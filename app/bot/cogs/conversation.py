"""Talking with Kor'tana: the messages it answers (mentions, replies to it, DMs, open channels) and /ask.

Which messages are spoken to the bot, and what it says when it will not answer one (empty, attachments only,
text it cannot see, a shutdown, a full queue, too fast): at most one such notice per user per notice interval.
"""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from app.bot.bot import KortanaBot, Turn
from app.bot.cooldown import NOTICE_INTERVAL_MIN_S, per_user
from app.bot.sentences import (
    ATTACHMENTS_ONLY,
    CANNOT_SEE_MESSAGE,
    CANNOT_SEE_REPLY,
    EMPTY_MENTION,
    EMPTY_QUESTION,
    RESTARTING,
)
from app.bot.streaming import NO_PINGS, ChannelReply, InteractionReply
from app.conversation.turn_text import clean_text
from app.engines import HUGGINGFACE
from app.safe_text import error_cause

log = logging.getLogger(__name__)

# What people write; joins, pins, boosts, thread starts and the like are not spoken to the bot.
ANSWERED_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class Conversation(commands.Cog):
    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot
        self._notices = per_user(max(bot.cooldown_seconds, NOTICE_INTERVAL_MIN_S))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None:
            return
        if message.type not in ANSWERED_TYPES or not self._is_addressed(message):
            return
        bot = self.bot
        if not bot.accepting_turns:  # the grace is for the turns already running; silence would look like a crash
            await self._notify(message, RESTARTING)
            return
        if self._text_is_hidden(message):
            await self._notify(message, CANNOT_SEE_REPLY if message.reference else CANNOT_SEE_MESSAGE)
            return
        text = self._without_own_mentions(message.content)
        if not clean_text(text):
            await self._notify(message, ATTACHMENTS_ONLY if message.attachments or message.stickers else EMPTY_MENTION)
            return
        key = bot.key_for(message.author.id, message.guild, message.channel.id)
        place = bot.accept_turn(key)  # before any await: this message's turn keeps its order of arrival
        if isinstance(place, str):
            await self._notify(message, place)
            return
        turn = Turn(ChannelReply(message), key, message.author.display_name, text)
        await bot.take_turn(place, turn, typing=message.channel)

    @app_commands.command(name="ask", description="Ask Kor'tana something, with our conversation as context")
    @app_commands.describe(question="What would you like to ask?")
    async def ask(self, interaction: discord.Interaction, question: app_commands.Range[str, 1, 4000]) -> None:
        bot = self.bot
        if not bot.accepting_turns:
            await interaction.response.send_message(RESTARTING, ephemeral=True)
            return
        key = bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)
        place = bot.accept_turn(key)  # before any await: the question keeps its order of arrival
        if isinstance(place, str):
            await interaction.response.send_message(place, ephemeral=True)  # private: costs the channel nothing
            return
        turn = Turn(
            InteractionReply(interaction),
            key,
            interaction.user.display_name,
            question,
            prefer=HUGGINGFACE,
            empty_reply=EMPTY_QUESTION,
        )
        await bot.take_turn(place, turn, acknowledge=lambda: interaction.response.defer(thinking=True))

    def _is_addressed(self, message: discord.Message) -> bool:
        if message.guild is None or message.channel.id in self.bot.chat_channel_ids:
            return True
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
