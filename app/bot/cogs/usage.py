"""/usage: what a member used today in this server (or in DMs), the daily limit here, and when it renews."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from app.bot.bot import KortanaBot
from app.bot.sentences import usage_text


class Usage(commands.Cog):
    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="How much of Kor'tana you used today here, and your daily limit")
    async def usage(self, interaction: discord.Interaction) -> None:
        here = await self.bot.rules_here(interaction.guild, interaction.channel, interaction.user)
        ledger = self.bot.service.usage
        used = await ledger.used_today(here.guild_id, interaction.user.id)
        text = usage_text(used, here.daily_tokens, ledger.resets_at(), in_dms=interaction.guild is None)
        await interaction.response.send_message(text, ephemeral=True)
