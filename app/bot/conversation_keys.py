"""Which conversation a Discord message belongs to, by HISTORY_SCOPE."""

from __future__ import annotations

from app.config import HistoryScope as Scope
from app.storage import ConversationKey


def conversation_key(scope: Scope, user_id: int, guild_id: int | None, channel_id: int) -> ConversationKey:
    """guild: per user per server; channel: per user per channel; global: one per user. DMs are their own scope."""
    if scope == "global":
        return ConversationKey(user_id, "global")
    if guild_id is None:
        return ConversationKey(user_id, "dm")
    if scope == "channel":
        return ConversationKey(user_id, f"channel:{channel_id}")
    return ConversationKey(user_id, f"guild:{guild_id}")
