"""The buttons under Kor'tana's answers (app/bot/answer_buttons): Stop ends the answer being streamed, Regenerate
asks the newest turn again, Another engine does so without the engine that answered (if another is healthy).

A regenerated turn goes through the bot's turn line like any turn: the conversation's turns stay one at a
time, and the user's queue, cooldown and daily limit apply. Its answer replaces the old one in the same
message(s) and in the history. Presses by anyone but the asker are refused by the button itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
from discord.ext import commands

from app.bot.answer_buttons import ANSWER_BUTTONS_COG, Action, AnswerButton
from app.bot.bot import COMMAND_CHECKS_BOUND_S, KortanaBot, Turn
from app.bot.place_rules import Here
from app.bot.sentences import (
    NOTHING_TO_STOP,
    SLOW_RIGHT_NOW,
)
from app.bot.streaming import ReplacedReply
from app.bot.turns import Place
from app.conversation.events import NOT_NEWEST
from app.storage import ConversationKey

log = logging.getLogger(__name__)


class AnswerButtons(commands.Cog, name=ANSWER_BUTTONS_COG):
    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AnswerButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AnswerButton)

    async def pressed(self, interaction: discord.Interaction, action: Action, turn_id: int) -> None:
        """The asker pressed a button under the answer of `turn_id`."""
        if action == "stop":
            if self.bot.stop_turn(turn_id, interaction.user.id):
                await interaction.response.defer()  # the answer's own edits show that it stopped
            else:
                await interaction.response.send_message(NOTHING_TO_STOP, ephemeral=True)
            return
        await self._regenerate(interaction, turn_id, another_engine=action == "another")

    async def _regenerate(self, interaction: discord.Interaction, turn_id: int, *, another_engine: bool) -> None:
        bot = self.bot
        pressed = interaction.message
        assert pressed is not None  # a button is always on a message
        key = bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)
        if not bot.answers.is_newest(key, pressed.id):
            await interaction.response.send_message(NOT_NEWEST, ephemeral=True)
            with contextlib.suppress(discord.HTTPException):
                await pressed.edit(view=None)
            return
        try:  # Discord wants the press acknowledged within 3 s: the checks before it are bounded, as /ask's
            async with asyncio.timeout(COMMAND_CHECKS_BOUND_S):
                refusal = await self._refusal(interaction, key)
        except TimeoutError:  # no place was taken (that step has no await)
            log.warning("A Regenerate's checks took over %g s: the press is refused", COMMAND_CHECKS_BOUND_S)
            refusal = SLOW_RIGHT_NOW
        if isinstance(refusal, str):
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        place, here = refusal
        turn = Turn(
            ReplacedReply(interaction),
            key,
            interaction.user.display_name,
            "",  # the stored question is asked again
            persona=here.persona,
            model=here.model,
            guild_id=here.guild_id,
            daily_tokens=here.daily_tokens,
            regenerate=turn_id,
            another_engine=another_engine,
            pages=bot.answers.pages_of(key, pressed),
        )
        await bot.take_turn(place, turn, acknowledge=interaction.response.defer)

    async def _refusal(self, interaction: discord.Interaction, key: ConversationKey) -> tuple[Place, Here] | str:
        """The turn's place and the rules here, or why the press is refused (as for /ask)."""
        here = await self.bot.rules_for_command(interaction, "a Regenerate")
        if isinstance(here, str):
            return here
        place = self.bot.accept_turn(key, guild_id=here.guild_id, cooldown_s=here.cooldown_s)
        return place if isinstance(place, str) else (place, here)
