"""The plain values the stores take and hand out: a conversation's key, a stored message (and its images), the
start of a turn, one message a search found, a conversation's summary, what server admins set, and what answers
cost."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class ConversationKey:
    user_id: int
    scope: str  # "guild:<id>", "channel:<id>", "dm", "global", or a front end's own (e.g. "terminal")

    @property
    def log_id(self) -> str:
        """An opaque, stable name of the conversation for log lines: no user id or scope in clear."""
        return hashlib.blake2b(f"{self.user_id}:{self.scope}".encode(), digest_size=6).hexdigest()


def user_log_id(user_id: int) -> str:
    """An opaque, stable name of a user for log lines (of what concerns all their conversations)."""
    return "user " + hashlib.blake2b(str(user_id).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image a user attached, by reference: its file name, size in bytes, content type and URL (Discord's CDN).
    Its bytes are never stored."""

    name: str
    size: int
    content_type: str
    url: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: str
    content: str
    token_count: int  # of a user message with images, IMAGE_TOKENS each included
    engine: str | None = None
    # By keyword only: `id`, `turn` and `created_at` keep their places after `engine`.
    images: tuple[StoredImage, ...] = field(default=(), kw_only=True)  # a user message's attached images
    stopped: bool = field(default=False, kw_only=True)  # an answer its asker stopped mid-stream: the text shown then
    # Which stored copy it is and when it was stored: set on what a store reads back (`turn` is the id of the
    # question the message belongs to, its own id for a question). Two messages compare by what they say.
    id: int | None = field(default=None, compare=False)
    turn: int | None = field(default=None, compare=False)
    created_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What a stored turn was asked with (`HistoryStore.turn_context`): its user message, the messages before it
    (oldest first, newest within the budget asked for) and whether it is the conversation's newest turn."""

    question: StoredMessage
    history: list[StoredMessage]
    has_older: bool  # older messages are stored beyond `history`
    newest: bool
    answered_by: str | None = None  # the engine of its stored answer; None: it has none

    def within(self, token_budget: int, overhead_per_message: int = 0) -> tuple[list[StoredMessage], bool]:
        """The newest part of `history` that fits `token_budget`, and whether older messages are stored."""
        spent = 0
        kept = 0
        for message in reversed(self.history):
            spent += message.token_count + overhead_per_message
            if spent > token_budget:
                break
            kept += 1
        fitting = self.history[len(self.history) - kept :]
        return fitting, self.has_older or kept < len(self.history)


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What `start_turn` hands out: the newest history that fits the budget (oldest first, without the new message;
    each with its id and turn), the new message's id, and whether older messages are stored beyond that history
    (False: the whole conversation fits, and there is nothing to recall)."""

    history: list[StoredMessage]
    turn_id: int
    has_older: bool


@dataclass(frozen=True, slots=True)
class FoundMessage:
    """A stored message that a search found (with its id, turn and time). A found user message brings `answer`,
    the reply stored after it in the same turn (None if there is none, or only a never-sent one)."""

    message: StoredMessage
    answer: StoredMessage | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """A conversation's rolling summary: of every message up to `through_id` that fell out of the window."""

    content: str
    token_count: int
    through_id: int
    engine: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SummaryDraft:
    """Where a summary job starts: the summary as it is (None: none yet) and the version a save must still find
    (a reset, a /forget or another job's save changes it, and the job's result is then thrown away)."""

    version: int
    summary: Summary | None


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """What a conversation's memory holds, for /memory."""

    messages: int
    first_at: datetime | None
    summary: Summary | None


@dataclass(frozen=True, slots=True)
class PlaceSettings:
    """What a server's admins set for the whole server or for one channel; None: not set here (the channel falls
    back to the server, the server to the environment). `persona`, `open` and `threads` are set per server or per
    channel; `daily_tokens`, `cooldown_s` and `model` per server."""

    persona: str | None = None
    open: bool | None = None  # every message there is answered, without a mention
    threads: bool | None = None  # an open channel starts a thread for each new message there
    daily_tokens: int | None = None  # each member's daily budget; 0: no limit
    cooldown_s: float | None = None  # between one member's turns
    model: str | None = None  # an ALLOWED_MODELS entry, tier:model


PLACE_SETTING_NAMES = PlaceSettings.__slots__  # the names `ServerSettingsStore.change` takes


@dataclass(frozen=True, slots=True)
class AccessRule:
    """A server's rule for a user, a role or a channel: `kind` user | role | channel, `rule` allow | block."""

    kind: str
    target_id: int
    rule: str


@dataclass(frozen=True, slots=True)
class GuildSettingsRecord:
    """Everything a server's admins set: the server's own settings, each channel's, and the access rules."""

    guild_id: int
    server: PlaceSettings = PlaceSettings()
    channels: Mapping[int, PlaceSettings] = field(default_factory=dict)
    rules: tuple[AccessRule, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageCharge:
    """What an answer costs, charged to its user in a server (0: DMs and the terminal) on a UTC day."""

    day: date
    guild_id: int
    user_id: int
    tokens: int


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """The tokens and answers of one UTC day, in one server (0: DMs and the terminal), from one engine."""

    day: date
    guild_id: int
    engine: str
    tokens: int
    answers: int
