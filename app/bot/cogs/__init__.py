"""Kor'tana's features on Discord, one cog each; `FEATURES` is what the bot loads in its setup_hook."""

from __future__ import annotations

from app.bot.cogs.answer_buttons import AnswerButtons
from app.bot.cogs.conversation import Conversation
from app.bot.cogs.memory import Memory
from app.bot.cogs.settings import ServerSettingsCommands
from app.bot.cogs.status import Status
from app.bot.cogs.usage import Usage

FEATURES = (Conversation, Memory, Status, Usage, ServerSettingsCommands, AnswerButtons)

__all__ = ["FEATURES", "AnswerButtons", "Conversation", "Memory", "ServerSettingsCommands", "Status", "Usage"]
