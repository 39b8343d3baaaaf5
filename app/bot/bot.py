"""KortanaBot: discord.py's Bot with Kor'tana's features as cogs, the line its turns wait in, and its shutdown.

The cogs (app/bot/cogs) turn messages, slash commands and button presses into turns through the bot's public
interface: `accepting_turns`, `rules_here` (`rules_for_command`), `daily_limit_notice`, `key_for`, `accept_turn` (or
`turn_refusal` then `join_line`), `take_turn`, `edit_turn`, `withdraw_turn`, `stop_turn`, `retire_buttons` (and
`_of` a user), `answers`, `active_turns`, `service`, `file_rules`, `image_rules`. There are no text commands: a
message is never parsed as a prefix command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass
from typing import Any

import discord
from discord.ext import commands

from app.bot.answer_buttons import answer_buttons, streaming_buttons
from app.bot.answer_registry import AnswerRegistry, NewestAnswer
from app.bot.attachments import FileRules, turn_text
from app.bot.command_sync import sync_commands
from app.bot.command_tree import KortanaTree
from app.bot.conversation_keys import Scope, conversation_key
from app.bot.cooldown import CooldownKey, per_user_and_server
from app.bot.images import ImageRules
from app.bot.in_flight import TurnInFlight, TurnsInFlight
from app.bot.place_rules import DM_GUILD_ID, Here, rules_here
from app.bot.reply_display import ReplyDisplay
from app.bot.sentences import (
    DMS_OFF,
    EMPTY_MENTION,
    NOT_FOR_YOU_HERE,
    RESTARTING,
    STILL_ANSWERING,
    cooldown_notice,
    daily_limit_reached,
)
from app.bot.streaming import NO_PINGS, ReplyStream, ReplySurface
from app.bot.turns import Place, TurnLine
from app.bot.typing_indicator import typing_in_background
from app.conversation.events import NO_MEMORY, NotNewestTurn, TurnEvent, TurnGone
from app.conversation.log_context import turn_logging
from app.conversation.metrics import Metrics, TurnRecord
from app.conversation.service import ConversationService
from app.conversation.stopping import StopSignal
from app.conversation.turn_display import show_turn
from app.conversation.turn_images import TurnImage
from app.safe_text import error_cause
from app.storage import ConversationKey, StorageUnavailable

log = logging.getLogger(__name__)

# How long a turn cut by shutdown may take to say so before the connection closes anyway.
RESTART_NOTICE_BOUND_S = 5.0
# How long an edit waits for its running turn to store the user's message, and how long a deleted message's
# turn may take to delete its reply and erase its stored turn.
IN_FLIGHT_BOUND_S = 5.0
# A slash command's or a button's checks (settings, usage, the wait behind the user's earlier message) come before
# its acknowledgement, which Discord wants within 3 s: past this bound it gets a private "try again" instead.
COMMAND_CHECKS_BOUND_S = 2.0

Feature = Callable[["KortanaBot"], commands.Cog]  # a cog class, or anything that makes one for the bot


@dataclass(frozen=True, slots=True)
class Turn:
    """One accepted message or question, and where its answer goes."""

    surface: ReplySurface
    key: ConversationKey
    author: str
    text: str
    prefer: str | None = None  # the engine to ask first (/ask prefers Hugging Face)
    empty_reply: str = EMPTY_MENTION  # what to say if the text turns out to be empty once cleaned
    persona: str | None = None  # the server's or channel's persona; None: SYSTEM_PROMPT
    model: str | None = None  # the server's model (an ALLOWED_MODELS string); None: the operator's
    guild_id: int = DM_GUILD_ID  # where the answer's tokens are charged
    daily_tokens: int | None = None  # the member's daily limit there; None: no limit
    notices: tuple[str, ...] = ()  # told under the answer (e.g. about the message's files)
    message_id: int | None = None  # the Discord message it answers: its edits and deletion reach the turn
    files: tuple[str, ...] = ()  # the text's file blocks, kept after an edited text
    images: tuple[TurnImage, ...] = ()  # the message's images, for the engines (app/bot/images)
    regenerate: int | None = None  # Regenerate: the stored turn to answer again (in place of its answer)
    another_engine: bool = False  # Another engine: not the engine that gave that answer, if another is healthy
    pages: tuple[Any, ...] = ()  # Regenerate: the answer's messages, edited in place


class KortanaBot(commands.AutoShardedBot):
    def __init__(
        self,
        service: ConversationService,
        *,
        features: Iterable[Feature] = (),
        history_scope: Scope = "guild",
        guild_ids: list[int] | None = None,
        cooldown_seconds: float = 2.0,
        message_content: bool = True,
        shutdown_grace_s: float | None = None,
        show_engine_footer: bool = True,
        version: str = "dev",
        edit_interval: float = 1.0,
        file_rules: FileRules | None = None,
        image_rules: ImageRules | None = None,
        metrics: Metrics | None = None,
        **client_options: object,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        # Privileged: without it, replies that don't ping the bot and open-channel messages arrive without text.
        intents.message_content = message_content
        super().__init__(
            command_prefix=(),  # no text commands (and no warning about prefixes without the content intent)
            help_command=None,
            tree_cls=KortanaTree,
            intents=intents,
            allowed_mentions=NO_PINGS,
            **client_options,  # type: ignore[arg-type]
        )
        self.service = service
        self.version = version
        self.cooldown_seconds = cooldown_seconds
        self._features = list(features)
        self._scope: Scope = history_scope
        self._guild_ids = list(guild_ids or [])
        self._cooldown = per_user_and_server()
        self._line = TurnLine()
        self._grace_s = service.answer_bound_s if shutdown_grace_s is None else shutdown_grace_s
        self._show_footer = show_engine_footer
        self._edit_interval = edit_interval
        self.file_rules = file_rules or FileRules()  # how much of a message's attached files is read
        self.image_rules = image_rules or ImageRules()  # how a message's images reach the engines
        self._turn_tasks: set[asyncio.Task[object]] = set()  # accepted turns not yet ended: running or waiting
        self._in_flight = TurnsInFlight()  # those that answer a message, by its id
        self.answers = AnswerRegistry()  # what the buttons under answers need: stops, each conversation's newest
        self._button_edits: set[asyncio.Task[None]] = set()  # older answers losing their buttons
        self._shutdown: asyncio.Task[None] | None = None
        self.metrics = metrics  # the operator's figures (None: none kept)
        if metrics is not None:
            service.watch_engines(metrics)

    async def setup_hook(self) -> None:
        for feature in self._features:
            await self.add_cog(feature(self))
        if self.shard_ids is None or 0 in self.shard_ids:
            await sync_commands(self.tree, self._guild_ids, self.service)
        else:  # processes of one deployment share the database; one of them is enough
            log.info("Slash commands are synced by the process that runs shard 0")

    async def on_ready(self) -> None:
        log.info("Connected to Discord as %s in %d servers", self.user, len(self.guilds))

    async def on_message(self, message: discord.Message, /) -> None:
        """Messages are the conversation cog's: nothing here is a prefix command ("@Kor'tana help" is a question)."""

    # --- turns: what the cogs use -----------------------------------------------------------------------

    @property
    def accepting_turns(self) -> bool:
        """False once the shutdown began: the grace is for the turns already running."""
        return self._shutdown is None

    @property
    def active_turns(self) -> int:
        return len(self._turn_tasks)

    def key_for(self, user_id: int, guild: discord.Guild | None, channel_id: int) -> ConversationKey:
        return conversation_key(self._scope, user_id, guild.id if guild else None, channel_id)

    async def rules_here(self, guild: discord.Guild | None, channel: object, user: discord.abc.User) -> Here:
        """What applies to `user` writing in `channel`: the server's settings over the environment's."""
        return await rules_here(self.service.server_settings, guild, channel, user)

    async def rules_for_command(self, interaction: discord.Interaction, what: str) -> Here | str:
        """What applies to a slash command's or a button's turn, or the private sentence refusing it (shutting
        down, the settings unreadable, no access here, the daily limit reached). `what` names it in log lines."""
        if not self.accepting_turns:
            return RESTARTING
        try:
            here = await self.rules_here(interaction.guild, interaction.channel, interaction.user)
        except StorageUnavailable as error:
            log.warning("Cannot read the settings for %s: %s", what, error.cause)
            return NO_MEMORY
        if not here.access.allowed:
            return DMS_OFF if here.access.reason == "dms off" else NOT_FOR_YOU_HERE
        if (over := await self.daily_limit_notice(here.guild_id, interaction.user.id, here.daily_tokens)):
            return over
        return here

    def accept_turn(
        self, key: ConversationKey, *, guild_id: int = DM_GUILD_ID, cooldown_s: float | None = None
    ) -> Place | str:
        """Take the turn's place now, or say why not (the user's queue is full, or they write too fast: one
        turn per `cooldown_s` in this server, USER_COOLDOWN_SECONDS when None). Call it before any await (or
        in arrival order, see ArrivalOrder): the turn keeps its order of arrival."""
        refusal = self.turn_refusal(key.user_id, guild_id=guild_id, cooldown_s=cooldown_s)
        return refusal if refusal is not None else self.join_line(key)

    def turn_refusal(self, user_id: int, *, guild_id: int = DM_GUILD_ID, cooldown_s: float | None = None) -> str | None:
        """Why the user's next turn is refused, or None: then the cooldown's token is taken and `join_line` must
        follow (with no other message of the user in between: the conversation cog's ArrivalOrder keeps it)."""
        if not self._line.has_room(user_id):
            return STILL_ANSWERING
        period = self.cooldown_seconds if cooldown_s is None else cooldown_s
        wait = self._cooldown.update_rate_limit(CooldownKey(user_id, guild_id, period))
        return cooldown_notice(wait) if wait else None

    def join_line(self, key: ConversationKey) -> Place:
        """Take the next place in the conversation's line, after `turn_refusal` said None."""
        return self._line.join(key)

    async def daily_limit_notice(self, guild_id: int, user_id: int, daily_tokens: int | None) -> str | None:
        """The notice for a member who used their `daily_tokens` in the server (DM_GUILD_ID: DMs), or None.
        Once the member's use today was read, it is kept up to date in memory: asking again costs nothing."""
        if daily_tokens is None:
            return None
        usage = self.service.usage
        try:
            used = await usage.used_today(guild_id, user_id)
        except StorageUnavailable as error:  # the turn could not be stored either
            log.warning("Cannot read a member's usage: %s", error.cause)
            return NO_MEMORY
        return None if used < daily_tokens else daily_limit_reached(daily_tokens, usage.resets_at())

    async def take_turn(
        self,
        place: Place,
        turn: Turn,
        *,
        typing: discord.abc.Messageable | None = None,
        acknowledge: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Wait for the turn's place, then run it. Call it right after `accept_turn`, before any other await:
        it counts the turn at once, so a shutdown that starts meanwhile waits for it. `acknowledge` (a slash
        command's defer) is awaited first; `typing` is where to show "typing…" while the answer is made."""
        # Every log line of the turn, the chain's and the storage's too, carries its id and shard.
        with turn_logging(self.shard_of(turn.guild_id)), self._counted_turn() as record:
            await self._take_turn(place, turn, record, typing=typing, acknowledge=acknowledge)
            log.debug("Turn %s in conversation %s", record.outcome, turn.key.log_id)

    def shard_of(self, guild_id: int) -> int:
        """The shard that receives the guild's events (DMs: shard 0), as Discord assigns them."""
        return (guild_id >> 22) % self.shard_count if guild_id != DM_GUILD_ID and self.shard_count else 0

    def _counted_turn(self) -> AbstractContextManager[TurnRecord]:
        return nullcontext(TurnRecord()) if self.metrics is None else self.metrics.turn("discord")

    async def _take_turn(
        self,
        place: Place,
        turn: Turn,
        record: TurnRecord,
        *,
        typing: discord.abc.Messageable | None,
        acknowledge: Callable[[], Awaitable[object]] | None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._turn_tasks.add(task)
        in_flight = TurnInFlight(task, turn.key, turn.text, turn.files, images=len(turn.images))
        if turn.message_id is not None:
            self._in_flight.track(turn.message_id, in_flight)
        try:
            if acknowledge is not None:
                await acknowledge()
            async with place:
                if not self.accepting_turns:  # its place came up after shutdown began
                    record.outcome = "refused"
                    await _say_instead(turn, RESTARTING)
                    return
                # The turns before this one (the member's own, in this conversation) may have used the limit.
                if (over := await self.daily_limit_notice(turn.guild_id, turn.key.user_id, turn.daily_tokens)):
                    record.outcome = "refused"
                    await _say_instead(turn, over)
                    return
                bound_s = self.service.answer_bound_s
                async with nullcontext() if typing is None else typing_in_background(typing, bound_s):
                    if not await self._run(turn, in_flight):
                        record.outcome = "failed"
        except asyncio.CancelledError:
            if in_flight.withdrawn:  # before the place is left: the next turn must not read the erased one
                await self._erase(turn, in_flight)
            elif not place.reached:  # cut by shutdown while waiting: say so too
                await _say_instead(turn, RESTARTING)
            raise
        finally:
            place.leave()
            self._turn_tasks.discard(task)
            if turn.message_id is not None:
                self._in_flight.end(turn.message_id, in_flight)

    async def edit_turn(self, message_id: int, words: str) -> None:
        """The user edited a message being answered (`words`: its new text, cleaned): a turn still waiting asks
        the edited text; one that started keeps its answer, and its stored message becomes the edited text. An
        edit to nothing changes nothing; a message not being answered is not ours to follow."""
        in_flight = self._in_flight.get(message_id)
        if in_flight is None or in_flight.withdrawn:
            return
        text = turn_text(words, in_flight.files)
        if not text:
            return
        if not in_flight.started:
            in_flight.text = text
            return
        turn_id = await in_flight.stored_turn(IN_FLIGHT_BOUND_S)
        if turn_id is None:
            return
        try:
            await self.service.edit_user_message(
                in_flight.key, turn_id, text, with_files=bool(in_flight.files), images=in_flight.images
            )
        except StorageUnavailable as error:
            log.warning("Could not store an edited message: %s", error.cause)

    async def withdraw_turn(self, message_id: int) -> None:
        """The user deleted a message being answered: the turn stops, its reply is deleted and nothing of it
        stays stored. Once its message is stored (waited for, bounded) the turn is cut; it erases itself."""
        in_flight = self._in_flight.get(message_id)
        if in_flight is None or in_flight.withdrawn:
            return
        in_flight.withdrawn = True
        if in_flight.stream is not None:
            in_flight.stream.stop_showing()
        await in_flight.stored_turn(IN_FLIGHT_BOUND_S)  # cut while storing, the turn could not erase its message
        in_flight.task.cancel()

    def stop_turn(self, turn_id: int, user_id: int) -> bool:
        """The user pressed Stop: the turn's answer ends where it is. False: no answer of theirs with that turn id is
        being made."""
        return self.answers.stop(turn_id, user_id)

    def retire_buttons(self, key: ConversationKey) -> None:
        """The conversation's newest answer is no longer one to regenerate (a newer question was stored, or the
        conversation was erased): its buttons go, in the background, each page within IN_FLIGHT_BOUND_S."""
        older = self.answers.take_newest(key)
        if older is not None:
            task = asyncio.create_task(_set_buttons(older.pages, None))
            self._button_edits.add(task)
            task.add_done_callback(self._button_edits.discard)

    def retire_buttons_of(self, user_id: int) -> None:
        """The user's every conversation was erased (/forget): their answers' buttons go."""
        for key in self.answers.keys_of(user_id):
            self.retire_buttons(key)

    async def _run(self, turn: Turn, in_flight: TurnInFlight) -> bool:
        """Run one turn and show it as a streamed reply (see the turn ladder, app/conversation/turn_display), with
        Stop under it while it streams and Regenerate once it is complete; returns False when it failed (no answer
        shown)."""
        key = turn.key
        stream = ReplyStream(turn.surface, edit_interval=self._edit_interval, conversation=key.log_id, pages=turn.pages)
        display = ReplyDisplay(stream, empty_sentence=turn.empty_reply)
        for notice in turn.notices:
            display.notice(notice)
        in_flight.stream = stream
        in_flight.started = True  # from here on an edit goes to the stored message
        stop = StopSignal()

        def stored(turn_id: int) -> None:
            in_flight.note_stored(turn_id)
            if turn.regenerate is None:  # a newer question: the older answer is no longer the newest
                self.retire_buttons(key)
            self.answers.running(turn_id, key.user_id, stop)
            stream.set_buttons(streaming_buttons(key.user_id, turn_id))
            display.final_buttons = answer_buttons(key.user_id, turn_id)

        refusal = Refusal()
        if turn.regenerate is None:
            events = self.service.respond(
                key,
                turn.author,
                in_flight.text,
                prefer=turn.prefer,
                persona=turn.persona,
                model=turn.model,
                guild_id=turn.guild_id,
                with_files=bool(turn.files),
                on_stored=stored,
                images=turn.images,
                stop=stop,
            )
        else:
            stored(turn.regenerate)
            events = refusal.noted(
                self.service.regenerate(
                    key,
                    turn.regenerate,
                    turn.author,
                    another_engine=turn.another_engine,
                    resend_images=self.image_rules.delivery == "url",
                    prefer=turn.prefer,
                    persona=turn.persona,
                    model=turn.model,
                    guild_id=turn.guild_id,
                    stop=stop,
                )
            )
        try:
            return await show_turn(
                events,
                display,
                log_id=key.log_id,
                brain_name=self.service.brain_name,
                engine_footer=self._show_footer,
                cut_sentence=RESTARTING,
            )
        finally:
            await stream.close()
            if in_flight.turn_id is not None:
                self.answers.ended(in_flight.turn_id, stop)
            if in_flight.turn_id is not None and display.answered and not in_flight.withdrawn:
                self.answers.answered(key, NewestAnswer(in_flight.turn_id, tuple(map(_lasting, stream.pages))))
            if refusal.refused:  # the pressed answer is no longer one to regenerate
                await _set_buttons(turn.pages, None)
            elif turn.regenerate is not None and not display.answered and not in_flight.withdrawn:
                # Failed or cut (told privately): the stored answer stands, and may be asked again.
                await _set_buttons(stream.pages[-1:], answer_buttons(key.user_id, turn.regenerate))

    async def _erase(self, turn: Turn, in_flight: TurnInFlight) -> None:
        """A withdrawn turn's end: its reply deleted and its stored turn erased, within IN_FLIGHT_BOUND_S."""
        try:
            async with asyncio.timeout(IN_FLIGHT_BOUND_S):
                if in_flight.stream is not None:
                    await in_flight.stream.delete_shown()
                if in_flight.turn_id is not None:
                    await self.service.withdraw_turn(turn.key, in_flight.turn_id)
        except Exception as error:  # noqa: BLE001 - the turn is cut anyway: one log line, never a traceback
            log.warning(
                "Could not erase a turn whose message was deleted in conversation %s: %s",
                turn.key.log_id, error_cause(error),
            )  # fmt: skip

    # --- shutdown -------------------------------------------------------------------------------------

    def begin_shutdown(self) -> asyncio.Task[None]:
        """Start the shutdown (once; later calls return the same task). From now on no turn is accepted."""
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self._shut_down(), name="kortana-shutdown")
        return self._shutdown

    async def shutdown(self) -> None:
        """Stop taking turns, let the running ones finish within the grace (answers shown and stored), end
        the rest visibly ("I'm restarting"), then disconnect."""
        await asyncio.shield(self.begin_shutdown())

    async def _shut_down(self) -> None:
        unfinished: set[asyncio.Task[object]] = set()
        if self._turn_tasks:
            _, late = await asyncio.wait(set(self._turn_tasks), timeout=self._grace_s)
            if late:
                log.warning("Shutting down: %d turn(s) still running after %g s are cut", len(late), self._grace_s)
                for task in late:
                    task.cancel()
                # Each says so ("I'm restarting") while the connection is still open.
                _, unfinished = await asyncio.wait(late, timeout=RESTART_NOTICE_BOUND_S)
        await self.close()
        if unfinished:  # stuck in a Discord call (a rate limit): with the session closed, it fails and ends
            _, stuck = await asyncio.wait(unfinished, timeout=RESTART_NOTICE_BOUND_S)
            if stuck:
                log.warning("Shutting down: %d turn(s) did not end after the connection closed", len(stuck))


class Refusal:
    """Whether a regenerated turn was refused (erased, or no longer the newest)."""

    def __init__(self) -> None:
        self.refused = False

    async def noted(self, events: AsyncGenerator[TurnEvent, None]) -> AsyncGenerator[TurnEvent, None]:
        async with aclosing(events):
            try:
                async for event in events:
                    yield event
            except (NotNewestTurn, TurnGone):
                self.refused = True
                raise


def _lasting(page: Any) -> Any:
    """The page edited with the bot's own token: an interaction's (/ask's) expires 15 minutes after the command."""
    if isinstance(page, discord.InteractionMessage | discord.WebhookMessage):
        return page.channel.get_partial_message(page.id)
    return page


async def _set_buttons(pages: Iterable[Any], view: discord.ui.View | None) -> None:
    """Put `view` on an answer's pages (None: remove their buttons), each within IN_FLIGHT_BOUND_S (a page gone,
    or its token expired: nothing to change)."""
    for page in pages:
        try:
            async with asyncio.timeout(IN_FLIGHT_BOUND_S):
                await page.edit(view=view)
        except (discord.HTTPException, TimeoutError) as error:
            log.info("Could not change the buttons of an answer: %s", error_cause(error))


async def _say_instead(turn: Turn, text: str) -> None:
    """A turn that never ran says why (`text`), in a reply of its own (a slash command: its private answer)."""
    try:
        await ReplyStream(turn.surface, conversation=turn.key.log_id).fail(text)
    except Exception as error:  # noqa: BLE001 - maybe shutting down: one log line, never a traceback
        log.warning("Could not tell a user why their turn did not run: %s", error_cause(error))
