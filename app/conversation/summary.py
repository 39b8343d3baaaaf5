"""The rolling summary: in the background, extend a conversation's summary with the turns that fell out of its window.

The service calls `SummaryWriter.after_turn` once a turn's answer is committed. It never blocks and never raises: it
counts the turns that fell out of the window since the conversation's last summary and, once `every_turns` did,
starts a job in the background. The job reads the summary as it is (`start_summary`: its version too), the messages
after the one it last covered that are older than the window, asks an engine to extend the summary with them, and
saves it with the id of the newest message it covers, if the summary's version is still the one it read: a reset, a
/forget or another process's job meanwhile makes the save a no-op and the result is thrown away.

Bounds, so a busy bot or one busy user cannot run away with it:
- one job per conversation and per user at a time, and at most `max_jobs` at once (a trigger that finds no room is
  not queued: the conversation's next turn triggers again);
- turns are counted for at most `MAX_TRACKED_CONVERSATIONS`, the most recently active (a forgotten count only
  delays that conversation's summary; the job always counts the real backlog before it writes);
- a job writes at most `MAX_ROUNDS_PER_JOB` summaries in a row to catch up on a long backlog.

A failure loses nothing: the turns stay unsummarised and the next trigger tries again, after a back-off that
doubles with each failure in a row (an engine that is down is not hammered). A job never delays a turn: it asks
the chain through `EngineChain.complete`, which never queues for an engine and gives its call up to a turn that
needs the slot. `cancel`/`cancel_user` (and `paused` around an erase) stop a running job and wait for it, so what
/reset or /forget erases is never sent to an engine afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from app.config import Settings, SettingsError
from app.conversation.tokens import NeverFailingCounter, TokenCounter
from app.conversation.turn_images import as_sent
from app.conversation.window import (
    ANSWER_HEADER_TOKENS,
    PER_MESSAGE_TOKENS,
    PREAMBLE_TOKENS,
    defuse_chat_syntax,
)
from app.engines import ChatMessage, Engine, EngineError, ErrorKind
from app.engines.chain import EngineChain
from app.storage import (
    ConversationKey,
    HistoryStore,
    StorageUnavailable,
    StoredMessage,
    Summary,
    SummaryDraft,
)

log = logging.getLogger(__name__)

__all__ = ["SummaryWriter", "cap_summary", "open_summary_writer", "summary_engine_order", "summary_request"]

MAX_JOBS = 2  # summary jobs at once, over all conversations: background work on a shared engine
MAX_TRACKED_CONVERSATIONS = 10_000
MAX_ROUNDS_PER_JOB = 3
FIRST_BACKOFF_S = 30.0
MAX_BACKOFF_S = 15 * 60.0
BUSY_BACKOFF_S = 10.0  # every engine was busy with turns: not broken, so no doubling
CANCEL_WITHIN_S = 5.0
SUMMARY_ENGINES = ("auto", "brain", "huggingface")
REQUEST_SPECIFIC = (ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_TOO_LONG)  # pause that conversation only

INSTRUCTIONS = (
    "You keep the long-term memory of a conversation between a user and an AI companion. You are given the "
    "summary so far and the next part of the conversation. Write the new summary: the summary so far, extended "
    "with what matters from the new part. Keep every fact the user stated about themselves and their life (names, "
    "people, pets, places, dates, work, plans, likes and dislikes), decisions, and what the companion promised. "
    "When the new part corrects or updates an earlier fact, keep only the new value. Write plain sentences in the "
    'third person ("The user ..."), without headings, lists or greetings, and invent nothing. '
    "Use at most {words} words."
)
NOTHING_YET = "(nothing yet)"
CUT_MARK = " […]"
_SPEAKERS = {"user": "User", "assistant": "Companion"}
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*(?=\s|$)")
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:(?:updated|new)\s+)?summary(?:\*\*)?\s*:\s*(?:\*\*)?", re.IGNORECASE)


def summary_engine_order(settings: Settings, brain: Engine | None, hf: Engine | None) -> tuple[str, ...]:
    """The names of the engines that may write summaries, strongest first; empty when none may. One clear
    `SettingsError` line for a SUMMARY_ENGINE that is unknown or names an engine that is not configured.

    auto: the brain, then Hugging Face (the order of the chain: the brain is the operator's own first choice),
    except the local model (BRAIN=local, a small model that is weak at summaries), which writes them only when no
    other engine is configured. Echo never writes one.
    """
    choice = settings.summary_engine.strip().lower()
    if choice not in SUMMARY_ENGINES:
        raise SettingsError(
            f"Invalid setting SUMMARY_ENGINE: {settings.summary_engine!r} is not one of {', '.join(SUMMARY_ENGINES)}"
        )
    if choice == "brain":
        if brain is None:
            raise SettingsError("Invalid setting SUMMARY_ENGINE: brain, but no brain is configured (BRAIN)")
        return (brain.name,)
    if choice == "huggingface":
        if hf is None:
            raise SettingsError(
                "Invalid setting SUMMARY_ENGINE: huggingface, but Hugging Face is not configured "
                "(HUGGINGFACE_API_KEY or HF_BASE_URL)"
            )
        return (hf.name,)
    strong = [engine.name for engine in (brain, hf) if engine is not None and not _is_local_model(engine)]
    if strong:
        return tuple(strong)
    return (brain.name,) if brain is not None else ()


def _is_local_model(engine: Engine) -> bool:
    from app.engines.local import LocalModelEngine

    return isinstance(engine, LocalModelEngine)


def open_summary_writer(
    settings: Settings,
    store: HistoryStore,
    chain: EngineChain,
    counter: TokenCounter,
    engines: Sequence[str],
) -> SummaryWriter | None:
    """The service's summary writer from the settings; None when summaries are off or no engine may write them.
    `engines`: the chain's engines that may, strongest first (`summary_engine_order`)."""
    if not settings.summary_enabled:
        return None
    if not engines:
        log.info("No engine can write conversation summaries (echo never does): summaries are off")
        return None
    return SummaryWriter(
        store,
        chain,
        counter,
        engines=engines,
        every_turns=settings.summary_every_turns,
        max_tokens=settings.summary_max_tokens,
        prompt_budget=settings.history_token_budget,
    )


@dataclass(slots=True)
class _Progress:
    conversation_id: int
    horizon: int  # the newest window horizon seen (turn id): turns before it fell out
    fallen: int  # turns counted as fallen out since the last summary
    not_before: float = 0.0  # this conversation's own pause, after an engine refused its request


class SummaryWriter:
    """Extends conversations' summaries in the background; owned by the ConversationService."""

    def __init__(
        self,
        store: HistoryStore,
        chain: EngineChain,
        counter: TokenCounter,
        *,
        engines: Sequence[str],
        every_turns: int,
        max_tokens: int,
        prompt_budget: int,
        max_jobs: int = MAX_JOBS,
        max_tracked: int = MAX_TRACKED_CONVERSATIONS,
        first_backoff_s: float = FIRST_BACKOFF_S,
        cancel_within_s: float = CANCEL_WITHIN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`engines`: the chain's engines that may write, in order (`summary_engine_order`). `prompt_budget`: the
        most tokens one request may take (the history budget: a summary's request is no bigger than a turn's, so a
        deadline or a failure says the same about the engine)."""
        self._store = store
        self._chain = chain
        self._counter = NeverFailingCounter(counter)
        self._engines = tuple(engines)
        self._every_turns = every_turns
        self._max_tokens = max_tokens
        self._prompt_budget = prompt_budget
        self._max_jobs = max_jobs
        self._max_tracked = max_tracked
        self._first_backoff_s = first_backoff_s
        self._cancel_within_s = cancel_within_s
        self._clock = clock
        self._progress: OrderedDict[ConversationKey, _Progress] = OrderedDict()  # most recently active last
        self._jobs: dict[ConversationKey, asyncio.Task[None]] = {}
        self._paused_users: Counter[int] = Counter()
        self._failures_in_a_row = 0
        self._not_before = 0.0
        self._closed = False

    @property
    def running(self) -> int:
        return len(self._jobs)

    def after_turn(self, key: ConversationKey, conversation_id: int, horizon_turn: int | None) -> None:
        """A turn's answer is committed; `horizon_turn` is the oldest turn that stays in the recent window (None:
        the whole conversation fits it, nothing fell out). Starts a summary job when enough turns fell out."""
        try:
            if self._closed or horizon_turn is None:
                return
            progress = self._progress.pop(key, None)
            if progress is None or progress.conversation_id != conversation_id:
                progress = _Progress(conversation_id, horizon_turn, 1)  # at least this turn pushed one out
            elif horizon_turn > progress.horizon:
                progress.horizon = horizon_turn
                progress.fallen += 1
            self._progress[key] = progress
            while len(self._progress) > self._max_tracked:
                self._progress.popitem(last=False)
            if progress.fallen >= self._every_turns:
                self._start(key, progress)
        except Exception:  # a bookkeeping bug must not fail the turn that called
            log.exception("Could not schedule a summary for conversation %s", key.log_id)

    async def cancel(self, key: ConversationKey) -> None:
        """Stop the conversation's running job, if any, and wait for it (at most `cancel_within_s`); forget its
        count. Call it before the conversation is erased."""
        self._progress.pop(key, None)
        await self._stop([key])

    async def cancel_user(self, user_id: int) -> None:
        """`cancel` for every conversation of the user."""
        for key in [key for key in self._progress if key.user_id == user_id]:
            del self._progress[key]
        await self._stop([key for key in self._jobs if key.user_id == user_id])

    @contextlib.asynccontextmanager
    async def paused(self, user_id: int) -> AsyncIterator[None]:
        """`cancel_user`, and no new job for the user's conversations until the block ends: an erase of every
        scope (/forget) runs inside, while the user's turns in other scopes may still end and trigger."""
        self._paused_users[user_id] += 1
        try:
            await self.cancel_user(user_id)
            yield
        finally:
            self._paused_users[user_id] -= 1
            if not self._paused_users[user_id]:
                del self._paused_users[user_id]

    async def idle(self) -> None:
        """Wait until no job runs (tests, benchmarks)."""
        while self._jobs:
            await asyncio.wait(list(self._jobs.values()))

    async def aclose(self) -> None:
        """Start no more jobs; stop the running ones (a summary left unwritten is written after the restart)."""
        self._closed = True
        await self._stop(list(self._jobs))

    def _start(self, key: ConversationKey, progress: _Progress) -> None:
        now = self._clock()
        if key in self._jobs or key.user_id in self._paused_users or now < max(self._not_before, progress.not_before):
            return
        if len(self._jobs) >= self._max_jobs or any(running.user_id == key.user_id for running in self._jobs):
            return  # not queued: this conversation's next turn asks again
        job = asyncio.create_task(
            self._run(key, progress.conversation_id, progress.horizon), name=f"summary {key.log_id}"
        )
        self._jobs[key] = job
        job.add_done_callback(lambda done: self._forget_job(key, done))

    def _forget_job(self, key: ConversationKey, job: asyncio.Task[None]) -> None:
        if self._jobs.get(key) is job:
            del self._jobs[key]

    async def _stop(self, keys: Sequence[ConversationKey]) -> None:
        jobs = [job for key in keys if (job := self._jobs.get(key)) is not None]
        for job in jobs:
            job.cancel()
        if not jobs:
            return
        _, still_running = await asyncio.wait(jobs, timeout=self._cancel_within_s)
        if still_running:
            log.warning("%d summary job(s) did not stop within %g s", len(still_running), self._cancel_within_s)

    async def _run(self, key: ConversationKey, conversation_id: int, horizon: int) -> None:
        try:
            for _ in range(MAX_ROUNDS_PER_JOB):
                if not await self._extend_once(key, conversation_id, horizon):
                    break
            else:
                self._set_fallen(key, conversation_id, self._every_turns)  # more may wait: the next turn goes on
            self._failures_in_a_row = 0
        except (EngineError, StorageUnavailable) as error:
            self._back_off(key, error)
        except Exception:
            log.exception("Summary job for conversation %s failed", key.log_id)
            self._back_off(key, None)

    async def _extend_once(self, key: ConversationKey, conversation_id: int, horizon: int) -> bool:
        """Write one summary; True if it was saved (more may wait), False if there was not enough to summarise or
        the result was thrown away."""
        draft: SummaryDraft = await self._store.start_summary(conversation_id)
        after_id = draft.summary.through_id if draft.summary is not None else 0
        backlog = await self._store.unsummarised(
            conversation_id, after_id=after_id, before_turn=horizon, limit=4 * self._every_turns
        )
        turns = len({message.turn for message in backlog})
        if turns < self._every_turns:
            self._set_fallen(key, conversation_id, turns)
            return False
        covered: list[StoredMessage] = []

        def build_request(budget: int) -> list[ChatMessage]:
            request, included = summary_request(draft.summary, backlog, budget, self._counter, self._max_tokens)
            covered[:] = included
            return request

        completion = await self._chain.complete(
            build_request, engines=self._engines, max_tokens=self._max_tokens, history_budget=self._prompt_budget
        )
        content = cap_summary(completion.text, self._max_tokens, self._counter)
        if not content:
            raise EngineError(ErrorKind.UNAVAILABLE, f"{completion.engine} wrote an empty summary")
        through_id = covered[-1].id
        assert through_id is not None  # what a store reads back has its id
        summary = Summary(
            content, self._counter.count(defuse_chat_syntax(content)), through_id, engine=completion.engine
        )
        if not await self._store.save_summary(conversation_id, draft.version, summary):
            log.info("Summary of conversation %s discarded: reset or summarised meanwhile", key.log_id)
            self._set_fallen(key, conversation_id, 0)
            return False
        log.debug(
            "Summary of conversation %s extended by %s with %d message(s)", key.log_id, completion.engine, len(covered)
        )
        self._set_fallen(key, conversation_id, 0)
        return True

    def _set_fallen(self, key: ConversationKey, conversation_id: int, fallen: int) -> None:
        progress = self._progress.get(key)
        if progress is not None and progress.conversation_id == conversation_id:
            progress.fallen = fallen

    def _back_off(self, key: ConversationKey, error: Exception | None) -> None:
        """Nothing is lost (the count stays, the next trigger tries again); a broken engine or database gets a
        doubling pause."""
        if isinstance(error, EngineError) and error.kind in REQUEST_SPECIFIC:
            # This conversation's request (a content policy, a message too long): the others go on.
            if (progress := self._progress.get(key)) is not None:
                progress.not_before = self._clock() + MAX_BACKOFF_S
            log.warning("Summary of conversation %s refused (%s); next try in %g s", key.log_id, error, MAX_BACKOFF_S)
            return
        if isinstance(error, EngineError) and error.kind is ErrorKind.BUSY:
            pause = BUSY_BACKOFF_S
        else:
            self._failures_in_a_row += 1
            pause = min(self._first_backoff_s * 2 ** (self._failures_in_a_row - 1), MAX_BACKOFF_S)
        self._not_before = max(self._not_before, self._clock() + pause)
        cause = "a bug" if error is None else type(error).__name__ + ": " + str(error)
        log.warning("Summary of conversation %s not written (%s); next try in %g s", key.log_id, cause, pause)


def summary_request(
    summary: Summary | None,
    backlog: Sequence[StoredMessage],
    budget: int,
    counter: TokenCounter,
    max_tokens: int,
) -> tuple[list[ChatMessage], list[StoredMessage]]:
    """The request that asks for `summary` extended with the oldest of `backlog` that fit in `budget` tokens (the
    chat template's overhead included), and those messages (always at least one: a message too long for the
    budget goes in cut, so a summary never stalls on it). Everything sent is defused."""
    system = INSTRUCTIONS.format(words=max(20, int(max_tokens * 0.7)))
    so_far = defuse_chat_syntax(summary.content) if summary is not None else NOTHING_YET
    head = f"Summary so far:\n{so_far}\n\nNext part of the conversation (oldest first):\n"
    tail = "\n\nWrite the new summary now."
    overhead = PREAMBLE_TOKENS + ANSWER_HEADER_TOKENS + 2 * PER_MESSAGE_TOKENS
    room = budget - overhead - counter.count(system) - counter.count(head) - counter.count(tail)
    lines: list[str] = []
    included: list[StoredMessage] = []
    for message in backlog:
        line = _transcript_line(message)
        cost = counter.count(line) + 1  # the line break
        if cost > room:
            if not included:
                lines.append(_cut_to(line, max(room, 0), counter))
                included.append(message)
            break
        room -= cost
        lines.append(line)
        included.append(message)
    request: list[ChatMessage] = [
        {"role": "system", "content": system},
        {"role": "user", "content": head + "\n".join(lines) + tail},
    ]
    return request, included


def _transcript_line(message: StoredMessage) -> str:
    date = f"[{message.created_at:%Y-%m-%d}] " if message.created_at is not None else ""
    speaker = _SPEAKERS.get(message.role, message.role.capitalize())
    text = " ".join(defuse_chat_syntax(as_sent(message)).split())
    return f"{date}{speaker}: {text}"


def _cut_to(text: str, room: int, counter: TokenCounter) -> str:
    """The longest prefix of `text` that fits in `room` tokens with the cut mark."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if counter.count(text[:middle] + CUT_MARK) <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low] + CUT_MARK


def cap_summary(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """The engine's summary, cleaned (no NUL, no "Summary:" label) and at most `max_tokens` tokens; one that ran
    into the cap is cut after its last whole sentence."""
    text = _LABEL.sub("", text.replace("\x00", "")).strip()
    ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    whole = bool(ends) and ends[-1] == len(text)
    tokens = counter.count(text)
    if tokens <= max_tokens and (whole or tokens < 0.8 * max_tokens):
        return text  # it stopped on its own (a last sentence without a full stop included)
    fitting = [end for end in ends if counter.count(text[:end]) <= max_tokens]
    if fitting:
        return text[: fitting[-1]].strip()
    words = text.split()
    while words and counter.count(" ".join(words) + "…") > max_tokens:
        words.pop()
    return " ".join(words) + "…" if words else ""
