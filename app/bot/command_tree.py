"""The slash commands' one error handler: whatever a command raises, its caller gets a short private sentence
and the log gets the cause. A refusal (`Refusal`: no permission, bad input) is its own sentence and no error."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from app.conversation.events import failure_sentence
from app.conversation.server_settings import SettingRefused
from app.safe_text import error_cause
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)


class Refusal(app_commands.CheckFailure):
    """A command that will not do what was asked; `str()` is the one sentence its caller sees."""


class KortanaTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        name = interaction.command.qualified_name if interaction.command else "?"
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(original, Refusal | SettingRefused):
            log.debug("Slash command /%s refused: %s", name, original)
            await tell_privately(interaction, str(original))
            return
        if isinstance(original, StorageUnavailable):  # the database's short cause; its driver error may quote SQL
            log.error("Slash command /%s failed: the database is unavailable (%s)", name, error_cause(original))
        else:
            log.error("Slash command /%s failed", name, exc_info=error)
        await tell_privately(interaction, failure_sentence(original))


async def tell_privately(interaction: discord.Interaction, sentence: str) -> None:
    """The caller's private answer, whether the command was acknowledged already or not."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(sentence, ephemeral=True)
        else:
            await interaction.response.send_message(sentence, ephemeral=True)
    except discord.HTTPException:
        pass  # the interaction expired or the channel refused: nothing more to tell
