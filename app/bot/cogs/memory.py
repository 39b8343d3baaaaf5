"""What Kor'tana remembers of a user, and their say over it: /memory shows it, /export hands it over as files,
/reset forgets this conversation, /forget erases every conversation of the user. Every answer is private."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from datetime import UTC, datetime

import discord
from discord import app_commands
from discord.ext import commands

from app.bot.bot import KortanaBot
from app.bot.forget_confirmation import ForgetConfirmation
from app.bot.quoting import quoted_within
from app.bot.sentences import (
    FORGET_QUESTION,
    NOTHING_REMEMBERED,
    NOTHING_TO_EXPORT,
    export_continued,
    export_sent,
    messages_noun,
    reset_done,
)
from app.conversation.export import Export, ExportFile, export_files
from app.conversation.service import MemoryReport
from app.storage import ConversationKey

# Discord's limit for a bot's attachments where the server has no boosts (10 MiB). Each message carries at most
# this many bytes in all (a boosted server's higher limit is not used: the parts only get fewer).
ATTACHMENT_LIMIT_BYTES = 10 * 1024 * 1024
ATTACHMENTS_PER_MESSAGE = 10  # Discord's limit
MESSAGE_LIMIT = 2000


class Memory(commands.Cog):
    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot

    def _key(self, interaction: discord.Interaction) -> ConversationKey:
        return self.bot.key_for(interaction.user.id, interaction.guild, interaction.channel_id or 0)

    @app_commands.command(name="memory", description="See what I remember of our conversation here")
    async def memory(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.bot.service.memory(self._key(interaction))
        await interaction.followup.send(memory_text(report), ephemeral=True)

    @app_commands.command(name="export", description="Get our whole conversation here as files (Markdown and JSON)")
    async def export(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = self._key(interaction)
        messages = await self.bot.service.export(key)
        if not messages:
            await interaction.followup.send(NOTHING_TO_EXPORT, ephemeral=True)
            return
        limit = min(ATTACHMENT_LIMIT_BYTES, interaction.filesize_limit)
        # A long history takes a while to render: off the event loop, which serves every other user meanwhile.
        files = await asyncio.to_thread(export_files, Export(key.scope, datetime.now(UTC), messages), max_bytes=limit)
        batches = attachment_batches(files, max_bytes=limit)
        for number, batch in enumerate(batches, start=1):
            await interaction.followup.send(
                export_sent(len(messages), len(files)) if number == 1 else export_continued(number, len(batches)),
                files=[discord.File(io.BytesIO(file.data), filename=file.name) for file in batch],
                ephemeral=True,
            )

    @app_commands.command(name="reset", description="Forget our conversation here and start fresh")
    async def reset(self, interaction: discord.Interaction) -> None:
        # Deferred: a reset waits for a turn of this conversation that is still answering.
        await interaction.response.defer(ephemeral=True, thinking=True)
        key = self._key(interaction)
        forgotten = await self.bot.service.reset(key)
        self.bot.retire_buttons(key)
        await interaction.followup.send(reset_done(forgotten), ephemeral=True)

    @app_commands.command(name="forget", description="Erase everything I remember of you, in every server and DM")
    async def forget(self, interaction: discord.Interaction) -> None:
        user_id = interaction.user.id
        view = ForgetConfirmation(self.bot.service, interaction, lambda: self.bot.retire_buttons_of(user_id))
        await interaction.response.send_message(FORGET_QUESTION, view=view, ephemeral=True)


def memory_text(report: MemoryReport) -> str:
    """/memory's answer: the count and age of the stored messages, what is switched on, the summary (cut to fit)."""
    if report.messages:
        since = f", since {discord.utils.format_dt(report.first_at, 'R')}" if report.first_at else ""
        lines = [f"🧠 I remember **{messages_noun(report.messages)}** of our conversation here{since}."]
    else:
        lines = [NOTHING_REMEMBERED]
    lines.append(f"• Recall of older messages: **{'on' if report.recall_enabled else 'off'}**")
    summary = report.summary
    if summary is None:
        lines.append(f"• Summary of older messages: **{'on' if report.summary_enabled else 'off'}** — none yet")
        return "\n".join(lines)
    updated = f", updated {discord.utils.format_dt(summary.updated_at, 'R')}" if summary.updated_at else ""
    lines.append(f"• Summary of older messages: **{'on' if report.summary_enabled else 'off'}**{updated}:")
    head = "\n".join(lines) + "\n"
    return head + quoted_within(summary.content, MESSAGE_LIMIT - len(head))


def attachment_batches(
    files: Sequence[ExportFile], *, max_bytes: int, per_message: int = ATTACHMENTS_PER_MESSAGE
) -> list[list[ExportFile]]:
    """The files in order, grouped into messages of at most `per_message` files and `max_bytes` bytes in all
    (each file is at most `max_bytes` itself)."""
    batches: list[list[ExportFile]] = []
    size = 0
    for file in files:
        if batches and len(batches[-1]) < per_message and size + len(file.data) <= max_bytes:
            batches[-1].append(file)
            size += len(file.data)
        else:
            batches.append([file])
            size = len(file.data)
    return batches
