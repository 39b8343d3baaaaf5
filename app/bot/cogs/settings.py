"""/settings: how Kor'tana behaves in a server, decided by its admins from Discord and stored in the database.

Members with Manage Server use it (Discord's default member permissions, checked again on our side); every
answer is private. The subcommands: persona, channel open|close, allow, block, remove-rule, limits, model,
show. Bad input (an empty or too long persona, a role or channel of another server, a deleted channel, a
model the operator does not allow) gets one sentence and changes nothing. A channel deleted in Discord takes
its settings with it.
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from app.bot.admin_checks import own_channel, own_role, require_manager
from app.bot.bot import KortanaBot
from app.bot.command_tree import Refusal
from app.bot.persona_form import PersonaForm
from app.bot.place_rules import channel_and_parent
from app.bot.sentences import (
    NO_MODEL_CHOICE,
    ONE_TARGET,
    channel_closed,
    channel_opened,
    limits_text,
    model_not_allowed,
    model_saved,
    no_rule,
    persona_reset,
    rule_removed,
    rule_saved,
    thread_permissions_missing,
)
from app.bot.settings_display import settings_text
from app.conversation.server_settings import MAX_COOLDOWN_S, MAX_DAILY_TOKENS, ServerSettings

DEFAULT_MODEL = "default"
AUTOCOMPLETE_CHOICES = 25  # Discord's limit
# What a thread for each new message needs of Kor'tana in the channel, by Discord's names.
THREAD_PERMISSIONS = {
    "create_public_threads": "Create Public Threads",
    "send_messages_in_threads": "Send Messages in Threads",
}


class ChannelOption(app_commands.Transformer):
    """A channel people write in (no category, no thread: a thread follows its channel), passed on as Discord
    resolved it: `own_channel` checks it, so a deleted channel or another server's gets its own sentence."""

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        kinds = discord.ChannelType
        return [kinds.text, kinds.news, kinds.forum, kinds.media, kinds.voice, kinds.stage_voice]

    async def transform(self, interaction: discord.Interaction, value: object, /) -> object:
        return value


Member = discord.Member | discord.User | discord.Role  # Discord's "mentionable" option: a member or a role
Channel = app_commands.Transform[app_commands.AppCommandChannel, ChannelOption]


class ServerSettingsCommands(commands.Cog):
    settings = app_commands.Group(
        name="settings",
        description="How Kor'tana behaves in this server (Manage Server)",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )
    channel = app_commands.Group(
        name="channel", description="Channels where Kor'tana answers every message", parent=settings
    )

    def __init__(self, bot: KortanaBot) -> None:
        self.bot = bot

    @property
    def _settings(self) -> ServerSettings:
        return self.bot.service.server_settings

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        require_manager(interaction)
        return True

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self._settings.forget_channel(channel.guild.id, channel.id)

    # --- persona ---------------------------------------------------------------------------------------

    @settings.command(name="persona", description="Write the persona (system prompt) for this server or one channel")
    @app_commands.describe(
        channel="Only this channel and its threads (default: the whole server)",
        reset="Go back to the default instead (the server's, or the operator's)",
    )
    async def persona(
        self, interaction: discord.Interaction, channel: Channel | None = None, reset: bool = False
    ) -> None:
        guild = require_manager(interaction)
        channel_id = None if channel is None else own_channel(self.bot, guild, channel.id).id
        if reset:
            await self._settings.change(guild.id, channel_id, {"persona": None}, by=interaction.user.id)
            await interaction.response.send_message(persona_reset(channel_id), ephemeral=True)
            return
        # What is in effect there now: channel 0 is none of the server's, so it shows the server's or the default.
        current = await self._settings.effective(guild.id, channel_id or 0, None)
        await interaction.response.send_modal(PersonaForm(self._settings, channel_id, current.persona.value))

    # --- channels --------------------------------------------------------------------------------------

    @channel.command(name="open", description="Answer every message in a channel and its threads, no mention needed")
    @app_commands.describe(
        channel="The channel (default: this one)",
        threads="Start a thread for each new message there and answer in it, so the channel stays readable",
    )
    async def open_channel(
        self, interaction: discord.Interaction, channel: Channel | None = None, threads: bool = False
    ) -> None:
        guild, place = self._channel_here(interaction, channel)
        await self._settings.change(guild.id, place.id, {"open": True, "threads": threads}, by=interaction.user.id)
        text = channel_opened(place.id, threads)
        if threads and (missing := missing_thread_permissions(place, guild.me)):
            text += " " + thread_permissions_missing(missing)  # stored all the same: an admin may fix them later
        await interaction.response.send_message(text, ephemeral=True)

    @channel.command(name="close", description="Answer only mentions and replies in a channel and its threads")
    @app_commands.describe(channel="The channel (default: this one)")
    async def close_channel(self, interaction: discord.Interaction, channel: Channel | None = None) -> None:
        guild, place = self._channel_here(interaction, channel)
        await self._settings.change(guild.id, place.id, {"open": False, "threads": None}, by=interaction.user.id)
        await interaction.response.send_message(channel_closed(place.id), ephemeral=True)

    def _channel_here(
        self, interaction: discord.Interaction, channel: Channel | None
    ) -> tuple[discord.Guild, discord.abc.GuildChannel]:
        """The server and the named channel, or the one the command was used in (a thread: its parent)."""
        guild = require_manager(interaction)
        if channel is not None:
            channel_id = channel.id
        else:  # a thread discord.py has not cached is known only by its id and its parent's
            here, parent = channel_and_parent(interaction.channel)
            channel_id = parent or here
        return guild, own_channel(self.bot, guild, channel_id)

    # --- access ----------------------------------------------------------------------------------------

    @settings.command(name="allow", description="Allow a member, role or channel; then only what is allowed is")
    @app_commands.describe(who="A member or a role", channel="A channel (and its threads)")
    async def allow(
        self, interaction: discord.Interaction, who: Member | None = None, channel: Channel | None = None
    ) -> None:
        await self._rule(interaction, "allow", who, channel)

    @settings.command(name="block", description="Never answer a member, role or channel (blocking wins over allowing)")
    @app_commands.describe(who="A member or a role", channel="A channel (and its threads)")
    async def block(
        self, interaction: discord.Interaction, who: Member | None = None, channel: Channel | None = None
    ) -> None:
        await self._rule(interaction, "block", who, channel)

    @settings.command(name="remove-rule", description="Remove the allow or block rule of a member, role or channel")
    @app_commands.describe(who="A member or a role", channel="A channel")
    async def remove_rule(
        self, interaction: discord.Interaction, who: Member | None = None, channel: Channel | None = None
    ) -> None:
        await self._rule(interaction, None, who, channel)

    async def _rule(
        self,
        interaction: discord.Interaction,
        rule: Literal["allow", "block"] | None,
        who: Member | None,
        channel: Channel | None,
    ) -> None:
        guild = require_manager(interaction)
        kind, target_id = self._target(guild, who, channel)
        # The database says whether there was a rule: this process's copy may miss another process's change.
        changed = await self._settings.set_rule(guild.id, kind, target_id, rule, by=interaction.user.id)
        if rule is not None:
            text = rule_saved(rule, kind, target_id)
        else:
            text = rule_removed(kind, target_id) if changed else no_rule(kind, target_id)
        await interaction.response.send_message(text, ephemeral=True)

    def _target(
        self, guild: discord.Guild, who: Member | None, channel: Channel | None
    ) -> tuple[Literal["user", "role", "channel"], int]:
        if (who is None) == (channel is None):
            raise Refusal(ONE_TARGET)
        if channel is not None:
            return "channel", own_channel(self.bot, guild, channel.id).id
        if isinstance(who, discord.Role):
            return "role", own_role(self.bot, guild, who.id).id
        assert who is not None
        return "user", who.id

    # --- limits and model ------------------------------------------------------------------------------

    @settings.command(name="limits", description="Each member's daily tokens and cooldown here (no option: show them)")
    @app_commands.describe(
        daily_tokens="Tokens each member may use a day here (UTC days); 0 = no limit",
        cooldown_seconds="Seconds between one member's messages; 0 = the operator's default",
        reset="Put both back to the operator's defaults",
    )
    async def limits(
        self,
        interaction: discord.Interaction,
        daily_tokens: app_commands.Range[int, 0, MAX_DAILY_TOKENS] | None = None,
        cooldown_seconds: app_commands.Range[float, 0.0, MAX_COOLDOWN_S] | None = None,
        reset: bool = False,
    ) -> None:
        guild = require_manager(interaction)
        changes: dict[str, object] = {}
        if reset:
            changes = {"daily_tokens": None, "cooldown_s": None}
        if daily_tokens is not None:
            changes["daily_tokens"] = daily_tokens  # 0 is stored: no limit, even under the operator's default one
        if cooldown_seconds is not None:
            changes["cooldown_s"] = cooldown_seconds or None
        if changes:
            await self._settings.change(guild.id, None, changes, by=interaction.user.id)
        now = await self._settings.effective(guild.id, 0, None)
        prefix = "Done ✨ " if changes else ""
        text = prefix + limits_text(now.daily_tokens.value, now.cooldown_s.value)
        await interaction.response.send_message(text, ephemeral=True)

    @settings.command(name="model", description="The model Kor'tana answers with here, among those the operator allows")
    @app_commands.describe(model="One of the allowed models, or default")
    async def model(self, interaction: discord.Interaction, model: str) -> None:
        guild = require_manager(interaction)
        allowed = [str(choice) for choice in self._settings.allowed_models]
        chosen = model.strip()
        if chosen.lower() == DEFAULT_MODEL:  # also with none allowed: it clears a model the operator took away
            picked: str | None = None
        elif chosen in allowed:
            picked = chosen
        else:
            raise Refusal(model_not_allowed(allowed) if allowed else NO_MODEL_CHOICE)
        await self._settings.change(guild.id, None, {"model": picked}, by=interaction.user.id)
        await interaction.response.send_message(model_saved(picked), ephemeral=True)

    @model.autocomplete("model")
    async def _model_choices(self, interaction: discord.Interaction, typed: str) -> list[app_commands.Choice[str]]:
        names = [DEFAULT_MODEL, *(str(choice) for choice in self._settings.allowed_models)]
        matching = [name for name in names if typed.lower() in name.lower()]
        return [app_commands.Choice(name=name, value=name) for name in matching[:AUTOCOMPLETE_CHOICES]]

    # --- show ------------------------------------------------------------------------------------------

    @settings.command(name="show", description="Everything in effect here, and where each value comes from")
    async def show(self, interaction: discord.Interaction) -> None:
        guild = require_manager(interaction)
        channel_id, parent_id = channel_and_parent(interaction.channel)
        effective = await self._settings.effective(guild.id, channel_id, parent_id)
        record = await self._settings.record(guild.id)
        environment_open = [c for c in self._settings.defaults.open_channels if guild.get_channel(c) is not None]
        text = settings_text(channel_id, parent_id, effective, record, environment_open)
        await interaction.response.send_message(text, ephemeral=True)


def missing_thread_permissions(channel: discord.abc.GuildChannel, me: discord.Member) -> list[str]:
    """The permissions, of THREAD_PERMISSIONS, that `me` lacks in `channel`."""
    granted = channel.permissions_for(me)
    return [name for flag, name in THREAD_PERMISSIONS.items() if not getattr(granted, flag)]
