"""Is Kor'tana alive: /ping (latency, memory, engines, today's tokens), for anyone, without secrets."""

from __future__ import annotations

import math

import discord
from discord import app_commands
from discord.ext import commands

from app.bot.bot import KortanaBot
from app.conversation.status import format_status
from app.storage import StorageUnavailable


class Status(commands.Cog):
    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot

    @app_commands.command(name="ping", description="Is Kor'tana alive? Latency, memory, engines and today's tokens")
    async def ping(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        status = await bot.service.status()
        try:
            tokens = f"{await bot.service.usage.today_total():,} (all servers and DMs)"
        except StorageUnavailable:  # /ping is how one finds out: the rest of the report still comes
            tokens = "unknown (the database is unavailable)"
        gateway = "not measured yet" if math.isnan(bot.latency) else f"{bot.latency * 1000:.0f} ms"
        text = (
            f"🏓 Pong! Kor'tana {bot.version}\nGateway latency: {gateway}\nTurns in progress: {bot.active_turns}\n"
            f"Tokens today: {tokens}\n{format_status(status, public=True)}"
        )
        if bot.metrics is not None:  # the figures /metrics serves
            text += f"\n{bot.metrics.summary()}"
        await interaction.followup.send(f"```\n{text}\n```", ephemeral=True)
