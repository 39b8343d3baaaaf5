"""/settings show: everything in effect where it is asked, and where each value comes from, in one message."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from app.bot.quoting import quoted_within
from app.bot.sentences import seconds, target_text, tokens_noun
from app.conversation.server_settings import Effective, Sourced
from app.storage import AccessRule, GuildSettingsRecord

MESSAGE_LIMIT = 2000
PERSONA_PREVIEW = 700  # characters of the persona shown; the rest is "…"
TARGETS_SHOWN = 15  # per list; beyond it, "and N more"

SOURCES = {
    "channel": "set for this channel",
    "parent channel": "from the parent channel",
    "server": "server-wide",
    "environment": "the operator's default",
}


def settings_text(
    channel_id: int,
    parent_id: int | None,
    effective: Effective,
    record: GuildSettingsRecord,
    environment_open: Collection[int],
) -> str:
    """`environment_open`: the server's channels in CHAT_CHANNEL_IDS."""
    place = f"<#{channel_id}>" if parent_id is None else f"this thread (it follows <#{parent_id}>)"
    lines = [
        f"⚙️ **My settings in {place}**, and where each comes from:",
        f"• Every message answered, no mention needed: **{_yes(effective.open.value)}** — {_from(effective.open)}",
        f"• A thread for each new message: **{_yes(effective.threads.value)}** — {_from(effective.threads)}",
        f"• Daily tokens per member: **{_daily(effective.daily_tokens.value)}** — {_from(effective.daily_tokens)}",
        f"• Cooldown: **{seconds(effective.cooldown_s.value)}** between messages — {_from(effective.cooldown_s)}",
        f"• Model: **{effective.model.value or 'the default models'}** — {_from(effective.model)}",
        f"• Open channels: {_open_channels(record, environment_open)}",
        *_access_lines(record.rules),
        f"• Persona — {_from(effective.persona)}:",
    ]
    head = "\n".join(lines) + "\n"
    return head + quoted_within(effective.persona.value, min(PERSONA_PREVIEW, MESSAGE_LIMIT - len(head)))


def _from(value: Sourced[object]) -> str:
    return f"*{SOURCES[value.source]}*"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _daily(limit: int | None) -> str:
    return "no limit" if limit is None else tokens_noun(limit)


def _open_channels(record: GuildSettingsRecord, environment_open: Collection[int]) -> str:
    opened = {channel_id: place.threads for channel_id, place in record.channels.items() if place.open}
    closed = {channel_id for channel_id, place in record.channels.items() if place.open is False}
    shown = [f"<#{channel_id}>" + (" (threads)" if threads else "") for channel_id, threads in sorted(opened.items())]
    shown += [f"<#{channel_id}> (operator's)" for channel_id in sorted(environment_open) if channel_id not in opened
              and channel_id not in closed]  # fmt: skip
    return _listed(shown) if shown else "none"


def _access_lines(rules: Sequence[AccessRule]) -> list[str]:
    if not rules:
        return ["• Access: everyone, in every channel (no rules)"]
    lines = []
    for rule, label in (("block", "Blocked"), ("allow", "Allowed")):
        targets = [target_text(r.kind, r.target_id) for r in rules if r.rule == rule]
        if targets:
            lines.append(f"• {label}: {_listed(targets)}")
    return lines


def _listed(items: list[str]) -> str:
    if len(items) <= TARGETS_SHOWN:
        return ", ".join(items)
    return ", ".join(items[:TARGETS_SHOWN]) + f" and {len(items) - TARGETS_SHOWN} more"
