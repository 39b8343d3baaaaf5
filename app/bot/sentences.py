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
