"""What Kor'tana says on Discord when it does not answer a message: refusals, notices, the restart."""

from __future__ import annotations

from datetime import datetime

import discord

from app.safe_text import byte_size

RESTARTING = "I'm restarting — ask me again in a minute 🔄"
EMPTY_MENTION = "Hi! 👋 Mention me with a message and I'll answer."
EMPTY_QUESTION = "Ask me something with a few words in it 🙂"
ATTACHMENTS_ONLY = "I can only read text for now 📎 — tell me about it in words?"
CANNOT_SEE_REPLY = (
    "I can't see the text of replies that don't mention me 🙈 — turn the reply ping on (@ON), or mention me."
)
CANNOT_SEE_MESSAGE = "I can't see messages here that don't mention me 🙈 — mention me and I'll answer."
STILL_ANSWERING = "I'm still answering your earlier messages ⏳ — send this one again once I've replied."


# Files attached to a message
READABLE_KINDS = ".txt, .md, .log, .csv, .json, .py, .js and other code"


def names(files: list[str]) -> str:
    """File names as shown in the channel: bold, with their own markdown and mentions made plain text."""
    shown = ", ".join(f"**{_plain(name)}**" for name in files[:10])
    return shown if len(files) <= 10 else f"{shown} and {len(files) - 10} more"


def files_unreadable(files: list[str]) -> str:
    return f"I can read text files ({READABLE_KINDS}); I can't read {names(files)} 📎"


def files_failed(files: list[str]) -> str:
    return f"I couldn't download {names(files)} 😔 — attach it again in a moment?"


def files_skipped(files: list[str], max_files: int) -> str:
    return f"I read at most {max_files} files a message, so I skipped {names(files)}."


def images_too_large(files: list[str], max_bytes: int) -> str:
    one = len(files) == 1
    return (
        f"I look at images up to {byte_size(max_bytes)}: {names(files)} {'is' if one else 'are'} larger, "
        f"so I didn't see {'it' if one else 'them'} 🖼️"
    )


def file_cut(name: str, size: int, read: int) -> str:
    return f"**{_plain(name)}** is {byte_size(size)}: I read only its first {byte_size(read)}."


def _plain(name: str) -> str:
    return discord.utils.escape_markdown(discord.utils.escape_mentions(name))


DMS_OFF = "I don't chat in DMs here 🙂 — find me in a server we share."
SLOW_RIGHT_NOW = "I'm a bit slow right now ⏳ — try again in a moment."
NOT_FOR_YOU_HERE = "I can't answer you here — this server's admins have set me up that way."


def cooldown_notice(wait_s: float) -> str:
    return f"Easy there 🙂 give me {max(1, round(wait_s))} s between messages."


def daily_limit_reached(limit: int, resets_at: datetime) -> str:
    return (
        f"You've used today's {tokens_noun(limit)} with me here 🌙 — your share renews "
        f"{discord.utils.format_dt(resets_at, 'R')}."
    )


def tokens_noun(count: int) -> str:
    return "1 token" if count == 1 else f"{count:,} tokens"


# /usage, /ping
def usage_text(used: int, limit: int | None, resets_at: datetime, *, in_dms: bool) -> str:
    where = "in our DMs" if in_dms else "in this server"
    renews = discord.utils.format_dt(resets_at, "R")
    if limit is None:
        return f"📊 Today you've used **{tokens_noun(used)}** {where}. No daily limit here; the day ends {renews}."
    left = max(0, limit - used)
    return (
        f"📊 Today you've used **{tokens_noun(used)}** of your **{tokens_noun(limit)}** a day {where}: "
        f"**{tokens_noun(left)}** left. It renews {renews}."
    )


# /memory, /export, /forget
NOTHING_REMEMBERED = "We haven't talked here yet — there is nothing I remember 🙂"
NOTHING_TO_EXPORT = "There's nothing to export: we haven't talked here yet 🙂"
FORGET_QUESTION = (
    "This erases **everything** I remember of you — our conversations in every server and in DMs, and their "
    "summaries. It can't be undone. Are you sure?"
)
FORGETTING = "Erasing… 🧹"
FORGET_CANCELLED = "Cancelled — nothing was erased 🙂"
FORGET_TIMED_OUT = "No answer, so nothing was erased. Run /forget again whenever you like."
NOT_YOUR_BUTTON = "This choice belongs to someone else 🙂"

# The buttons under an answer (Stop, Regenerate, Another engine)
ONLY_THE_ASKER = "Only the asker can use these buttons 🙂"
NOTHING_TO_STOP = "That answer is already complete."


def messages_noun(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


def reset_done(forgotten: int) -> str:
    return f"Done — I forgot {messages_noun(forgotten)}. Fresh start! ✨"


def forget_done(erased: int) -> str:
    return f"Done — I erased {messages_noun(erased)}, in every server and in our DMs. It's as if we never met 👋"


def export_sent(messages: int, files: int) -> str:
    return f"Here is our conversation here: {messages_noun(messages)}, in {files} files (Markdown and JSON) 📄"


def export_continued(number: int, of: int) -> str:
    return f"The export, continued ({number} of {of})"


# /settings
SERVERS_ONLY = "My settings belong to a server: use /settings in one 🙂"
NEED_MANAGE_SERVER = "Only members with the Manage Server permission can change my settings here 🔒"
CHANNEL_GONE = "That channel no longer exists, so nothing was changed."
CHANNEL_ELSEWHERE = "That channel belongs to another server: settings here only reach this server's channels."
ROLE_GONE = "That role no longer exists, so nothing was changed."
ROLE_ELSEWHERE = "That role belongs to another server: rules here only reach this server's roles."
ONE_TARGET = "Name exactly one member, role or channel for the rule."
NO_MODEL_CHOICE = "The operator hasn't listed any models to choose from, so I use their default models here."
PERSONA_FORM_TITLE = "Kor'tana's persona"


def where(channel_id: int | None) -> str:
    return "in this server" if channel_id is None else f"in <#{channel_id}>"


def persona_saved(channel_id: int | None) -> str:
    return f"Done ✨ From the next message on, I speak {where(channel_id)} as the persona you wrote."


def persona_reset(channel_id: int | None) -> str:
    inherited = "the operator's default" if channel_id is None else "the server's persona (or the operator's default)"
    return f"Done ✨ {where(channel_id).capitalize()} I speak with {inherited} again."


def channel_opened(channel_id: int, threads: bool) -> str:
    how = " Each new message there gets a thread of its own, where I answer." if threads else ""
    return f"Done ✨ In <#{channel_id}> and its threads I now answer every message, no mention needed.{how}"


def thread_permissions_missing(missing: list[str]) -> str:
    names = " and ".join(f"**{name}**" for name in missing)
    them = "it" if len(missing) == 1 else "them"
    return f"⚠️ But I don't have {names} there: until I'm given {them}, I answer in the channel or not at all."


def channel_closed(channel_id: int) -> str:
    return f"Done ✨ In <#{channel_id}> and its threads I answer only mentions and replies to me."


def target_text(kind: str, target_id: int) -> str:
    return {"user": f"<@{target_id}>", "role": f"<@&{target_id}>", "channel": f"<#{target_id}>"}[kind]


def rule_saved(rule: str, kind: str, target_id: int) -> str:
    target = target_text(kind, target_id)
    if rule == "block":
        return f"Done 🚫 {target} is blocked: I don't answer there, whatever else is allowed."
    if kind == "channel":
        return f"Done ✅ {target} is allowed: with a channel allowed, I answer only in allowed channels (blocks win)."
    return f"Done ✅ {target} is allowed: with a member or role allowed, I answer only those allowed (blocks win)."


def rule_removed(kind: str, target_id: int) -> str:
    return f"Done ✨ {target_text(kind, target_id)} has no rule any more."


def no_rule(kind: str, target_id: int) -> str:
    return f"{target_text(kind, target_id)} has no rule, so nothing was changed."


def limits_text(daily_tokens: int | None, cooldown_s: float) -> str:
    daily = "no daily limit" if daily_tokens is None else f"{tokens_noun(daily_tokens)} a day"
    return f"Each member here has **{daily}**, and **{seconds(cooldown_s)}** between messages."


def seconds(value: float) -> str:
    return f"{value:g} s"


def model_saved(model: str | None) -> str:
    if model is None:
        return "Done ✨ I use the operator's default models here again."
    return f"Done ✨ From the next message on, I answer here with **{model}** (the others still step in if it fails)."


def model_not_allowed(allowed: list[str]) -> str:
    return f"That model isn't one the operator allows. Choose one of: {', '.join(allowed)}, or default."
