"""The slash commands' one error handler: whatever a command raises, its caller gets a short private sentence
and the log gets the cause."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from app.conversation.events import failure_sentence
from app.safe_text import error_cause
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)


class KortanaTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        name = interaction.command.name if interaction.command else "?"
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(original, StorageUnavailable):  # the database's short cause; its driver error may quote SQL
            log.error("Slash command /%s failed: the database is unavailable (%s)", name, error_cause(original))
        else:
            log.error("Slash command /%s failed", name, exc_info=error)
        reply = failure_sentence(original)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(reply, ephemeral=True)
            else:
                await interaction.response.send_message(reply, ephemeral=True)
        except discord.HTTPException:
            pass  # the interaction expired or the channel refused: nothing more to tell
