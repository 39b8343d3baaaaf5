"""/settings persona's form: a long text box, prefilled with the persona in effect there, capped at
PERSONA_MAX_CHARS. What is submitted is checked (permission, channel still there, the persona itself) before
anything is stored; a refusal is one private sentence."""

from __future__ import annotations

import logging

import discord

from app.bot.admin_checks import own_channel, require_manager
from app.bot.command_tree import Refusal, tell_privately
from app.bot.sentences import PERSONA_FORM_TITLE, persona_saved
from app.conversation.events import failure_sentence
from app.conversation.server_settings import ServerSettings, SettingRefused
from app.safe_text import error_cause
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)

FORM_TIMEOUT_S = 15 * 60.0  # long text takes a while to write
TEXT_INPUT_MAX = 4000  # Discord's limit for one text input


class PersonaForm(discord.ui.Modal):
    def __init__(self, settings: ServerSettings, channel_id: int | None, current: str) -> None:
        super().__init__(title=PERSONA_FORM_TITLE, timeout=FORM_TIMEOUT_S)
        self._settings = settings
        self._channel_id = channel_id  # None: the whole server
        cap = min(settings.persona_max_chars, TEXT_INPUT_MAX)
        self.persona: discord.ui.TextInput[PersonaForm] = discord.ui.TextInput(
            custom_id="persona",
            style=discord.TextStyle.paragraph,
            default=current[:cap] or None,
            max_length=cap,
            required=True,
        )
        place = "the whole server" if channel_id is None else "this channel and its threads"
        self.add_item(
            discord.ui.Label(
                text="Who is Kor'tana here, and how does she speak?",
                description=f"The system prompt for {place}, up to {cap:,} characters.",
                component=self.persona,
            )
        )

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        guild = require_manager(interaction)  # a form stays open a while: who submits it may have lost the right
        if self._channel_id is not None:
            own_channel(interaction.client, guild, self._channel_id)  # deleted while the form was open?
        persona = self._settings.check_persona(self.persona.value)
        await self._settings.change(guild.id, self._channel_id, {"persona": persona}, by=interaction.user.id)
        await interaction.response.send_message(persona_saved(self._channel_id), ephemeral=True)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        if isinstance(error, Refusal | SettingRefused):
            sentence = str(error)
        else:
            if isinstance(error, StorageUnavailable):  # the database's short cause; its driver error may quote SQL
                log.error("/settings persona failed: the database is unavailable (%s)", error_cause(error))
            else:
                log.error("/settings persona failed", exc_info=error)
            sentence = failure_sentence(error)
        await tell_privately(interaction, sentence)
