"""What Kor'tana remembers of a user, and their say over it: /reset."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from app.bot.bot import KortanaBot


class Memory(commands.Cog):
    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot

    @app_commands.command(name="reset", description="Forget our conversation here and start fresh")
    async def reset(self, interaction: discord.Interaction) -> None:
        # Deferred: a reset waits for a turn of this conversation that is still answering.
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = self.bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)
        forgotten = await self.bot.service.reset(key)
        noun = "message" if forgotten == 1 else "messages"
        await interaction.followup.send(f"Done — I forgot {forgotten} {noun}. Fresh start! ✨", ephemeral=True)
