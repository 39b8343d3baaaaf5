"""/forget's question: erase everything, or cancel. The buttons are on the caller's private (ephemeral) message,
and only the caller may press them; unanswered, they are disabled after a while and nothing is erased."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import discord

from app.bot.sentences import FORGET_CANCELLED, FORGET_TIMED_OUT, FORGETTING, NOT_YOUR_BUTTON, forget_done
from app.conversation.events import failure_sentence
from app.conversation.service import ConversationService
from app.safe_text import error_cause
from app.storage import StorageUnavailable

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 120.0


class ForgetConfirmation(discord.ui.View):
    def __init__(
        self, service: ConversationService, origin: discord.Interaction, on_erased: Callable[[], object] = lambda: None
    ) -> None:
        """`on_erased` runs once everything of the user is erased (their answers' buttons go)."""
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self._service = service
        self._origin = origin  # the /forget command: its response carries the buttons
        self._on_erased = on_erased

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.user.id == self._origin.user.id:
            return True
        await interaction.response.send_message(NOT_YOUR_BUTTON, ephemeral=True)
        return False

    @discord.ui.button(label="Yes, erase everything", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        # The buttons go at once (within Discord's 3 s): erasing waits for the user's turns that are running.
        await interaction.response.edit_message(content=FORGETTING, view=None)
        erased = await self._service.forget(self._origin.user.id)
        self._on_erased()
        await interaction.edit_original_response(content=forget_done(erased))

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content=FORGET_CANCELLED, view=None)

    async def on_timeout(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        with contextlib.suppress(discord.HTTPException):  # the message is gone, or the token expired: nothing to show
            await self._origin.edit_original_response(content=FORGET_TIMED_OUT, view=self)

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any], /) -> None:
        if isinstance(error, StorageUnavailable):  # the database's short cause; its driver error may quote SQL
            log.error("/forget failed: the database is unavailable (%s)", error_cause(error))
        else:
            log.error("/forget failed", exc_info=error)
        sentence = failure_sentence(error)
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(content=sentence, view=None)
            else:
                await interaction.response.edit_message(content=sentence, view=None)
        except discord.HTTPException:
            pass  # the interaction expired: nothing more to tell
