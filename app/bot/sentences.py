"""What Kor'tana says on Discord when it does not answer a message: refusals, notices, the restart."""

from __future__ import annotations

RESTARTING = "I'm restarting — ask me again in a minute 🔄"
EMPTY_MENTION = "Hi! 👋 Mention me with a message and I'll answer."
EMPTY_QUESTION = "Ask me something with a few words in it 🙂"
ATTACHMENTS_ONLY = "I can only read text for now 📎 — tell me about it in words?"
CANNOT_SEE_REPLY = (
    "I can't see the text of replies that don't mention me 🙈 — turn the reply ping on (@ON), or mention me."
)
CANNOT_SEE_MESSAGE = "I can't see messages here that don't mention me 🙈 — mention me and I'll answer."
STILL_ANSWERING = "I'm still answering your earlier messages ⏳ — send this one again once I've replied."


def cooldown_notice(wait_s: float) -> str:
    return f"Easy there 🙂 give me {max(1, round(wait_s))} s between messages."
