"""Showing a streamed answer in Discord: first text at once, throttled edits, the final text without delay.

Discord allows about 5 edits per 5 s per channel, so edits in the middle of an answer are spaced by
`edit_interval`; the final text is sent as soon as the answer is complete. An answer longer than one message
continues in further messages (see splitting). Sending never blocks the consumer of the answer: chunks are
collected while an edit is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol, cast

import discord

from app.bot.splitting import split_message
from app.safe_text import error_cause

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()
PLACEHOLDER = "…"


class ReplySurface(Protocol):
    """Where the pages of one answer go: a reply in a channel, or an interaction's response. A page carries the
    answer's buttons (`view`) or none (None: any it had go)."""

    async def send(self, content: str, first: bool, view: discord.ui.View | None = None) -> Any: ...

    async def edit(self, page: Any, content: str, view: discord.ui.View | None = None) -> None: ...

    async def apologise(self, text: str) -> bool:
        """Show an error privately, if this surface can (then True); else the stream shows it as the answer."""
        ...


class ChannelReply:
    """Pages in a channel: the first replies to the user's message (even if it was deleted meanwhile). Or pages
    in the thread started from the message (`into`): the thread itself says what they answer."""

    def __init__(self, origin: discord.Message, into: discord.Thread | None = None) -> None:
        self._origin = origin
        self._into = into

    async def send(self, content: str, first: bool, view: discord.ui.View | None = None) -> discord.Message:
        buttons = {} if view is None else {"view": view}
        if self._into is not None:
            return await self._into.send(content, allowed_mentions=NO_PINGS, **buttons)
        reference = self._origin.to_reference(fail_if_not_exists=False) if first else None
        return await self._origin.channel.send(content, reference=reference, allowed_mentions=NO_PINGS, **buttons)

    async def edit(self, page: discord.Message, content: str, view: discord.ui.View | None = None) -> None:
        await page.edit(content=content, allowed_mentions=NO_PINGS, view=view)

    async def apologise(self, text: str) -> bool:
        return False  # a channel has no private replies: the apology is the answer


class InteractionReply:
    """Pages of a deferred slash command: the first fills the original response, the rest are followups."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self._interaction = interaction

    async def send(
        self, content: str, first: bool, view: discord.ui.View | None = None
    ) -> discord.InteractionMessage | discord.WebhookMessage:
        if first:
            return await self._interaction.edit_original_response(content=content, allowed_mentions=NO_PINGS, view=view)
        buttons = {} if view is None else {"view": view}
        return await self._interaction.followup.send(content, allowed_mentions=NO_PINGS, wait=True, **buttons)

    async def edit(
        self,
        page: discord.InteractionMessage | discord.WebhookMessage,
        content: str,
        view: discord.ui.View | None = None,
    ) -> None:
        await page.edit(content=content, allowed_mentions=NO_PINGS, view=view)

    async def apologise(self, text: str) -> bool:
        """Errors of a slash command are for the caller only: drop the public "thinking…", answer ephemerally."""
        with contextlib.suppress(discord.HTTPException):  # already gone, or expired: the apology still goes
            await self._interaction.delete_original_response()
        await self._interaction.followup.send(text, ephemeral=True)
        return True


class ReplacedReply:
    """The pages of an answer asked again with a button under it (Regenerate): edited in place, the pressed page
    through the press's interaction; a longer answer continues in the channel. Errors go to the presser only."""

    def __init__(self, press: discord.Interaction) -> None:
        self._press = press

    async def send(self, content: str, first: bool, view: discord.ui.View | None = None) -> discord.Message:
        channel = cast(discord.abc.Messageable, self._press.channel)
        buttons = {} if view is None else {"view": view}
        return await channel.send(content, allowed_mentions=NO_PINGS, **buttons)

    async def edit(self, page: Any, content: str, view: discord.ui.View | None = None) -> None:
        pressed = self._press.message
        if pressed is not None and page.id == pressed.id:
            await self._press.edit_original_response(content=content, allowed_mentions=NO_PINGS, view=view)
        else:
            await page.edit(content=content, allowed_mentions=NO_PINGS, view=view)

    async def apologise(self, text: str) -> bool:
        await self._press.followup.send(text, ephemeral=True)
        return True


class ReplyStream:
    def __init__(
        self,
        surface: ReplySurface,
        *,
        edit_interval: float = 1.0,
        conversation: str = "?",
        pages: Sequence[Any] = (),
    ) -> None:
        """`pages`: the messages of an answer this one replaces (Regenerate), edited in place."""
        self._surface = surface
        self._interval = edit_interval
        self._conversation = conversation  # its log id, for log lines
        self._text = ""
        self._pages: list[Any] = list(pages)
        self._shown: list[str | None] = [None] * len(self._pages)  # None: what the page shows is not ours yet
        self._buttons: discord.ui.View | None = None  # on the last page
        self._shown_buttons: list[discord.ui.View | None] = [None] * len(self._pages)
        self._last_flush = float("-inf")
        self._flush_lock = asyncio.Lock()
        self._scheduled: asyncio.Task[None] | None = None
        self.broken = False  # the channel refused us; the answer is still stored, just not shown

    def add(self, chunk: str) -> None:
        """Append a chunk; its text shows at once if nothing is shown yet, else with the next edit."""
        self._text += chunk
        self._schedule()

    @property
    def pages(self) -> tuple[Any, ...]:
        """The messages that show the answer, first to last."""
        return tuple(self._pages)

    def set_buttons(self, view: discord.ui.View | None) -> None:
        """The buttons the answer's last page carries from the next edit on (they move when a page is added)."""
        self._buttons = view
        self._schedule()

    def restart(self) -> None:
        """The engine failed mid-answer and another takes over: the text shown so far will be replaced."""
        self._text = ""

    async def finish(self, text: str, buttons: discord.ui.View | None = None) -> None:
        """Show the complete answer now (even if the turn is cancelled meanwhile: the edit is not cut), with
        `buttons` on its last page (None: no buttons)."""
        self._text = text
        self._buttons = buttons
        if self._scheduled is not None and not self._scheduled.done():
            self._scheduled.cancel()
        await asyncio.shield(self._flush())
        await asyncio.shield(self._drop_spare_pages())

    async def fail(self, text: str) -> None:
        """The turn failed: say so privately where the surface can, else as the answer."""
        if self._scheduled is not None and not self._scheduled.done():
            self._scheduled.cancel()
        async with self._flush_lock:  # after any edit in flight
            if await self._surface.apologise(text):
                return
        await self.finish(text)

    async def close(self) -> None:
        """Stop updating; an edit already in flight ends first, so nothing reaches Discord after the turn."""
        if self._scheduled is not None:
            self._scheduled.cancel()
        async with self._flush_lock:
            pass

    def stop_showing(self) -> None:
        """Nothing more of this answer reaches Discord (its question was deleted); an edit in flight ends."""
        self.broken = True
        if self._scheduled is not None:
            self._scheduled.cancel()

    async def delete_shown(self) -> None:
        """Stop showing the answer and delete what was shown of it, after any edit in flight."""
        self.stop_showing()
        async with self._flush_lock:
            pages, self._pages, self._shown, self._shown_buttons = self._pages, [], [], []
        for page in pages:
            with contextlib.suppress(discord.HTTPException):  # already gone
                await page.delete()

    async def _drop_spare_pages(self) -> None:
        """Delete the pages past the complete answer's end: the answer that replaced a longer one (another engine's
        after a failure, or a regenerated one) came out shorter, and they show only a placeholder."""
        async with self._flush_lock:
            if self.broken or not self._text.strip():
                return
            needed = len(split_message(self._text))
            spare, self._pages = self._pages[needed:], self._pages[:needed]
            del self._shown[needed:], self._shown_buttons[needed:]
        for page in spare:
            with contextlib.suppress(discord.HTTPException):  # already gone
                await page.delete()

    def _schedule(self) -> None:
        if self.broken or (self._scheduled is not None and not self._scheduled.done()):
            return
        delay = max(0.0, self._last_flush + self._interval - time.monotonic())
        self._scheduled = asyncio.create_task(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        # Once started, an edit is never cancelled: discord.py can keep a rate-limit bucket locked when a
        # request is cancelled in flight, and the final edit would then wait on it forever.
        await asyncio.shield(self._flush())

    async def _flush(self) -> None:
        async with self._flush_lock:  # an edit in flight finishes before the next one starts
            if self.broken or not self._text.strip():
                return
            pages = split_message(self._text)
            try:
                for index, content in enumerate(pages):
                    await self._show(index, content, self._buttons if index == len(pages) - 1 else None)
                for index in range(len(pages), len(self._shown)):  # a replaced answer got shorter
                    await self._show(index, PLACEHOLDER, None)
            except discord.Forbidden:
                log.warning(
                    "No permission to write the answer in conversation %s's channel; it is stored but not shown",
                    self._conversation,
                )
                self.broken = True
            except discord.HTTPException as error:  # the next flush (or the final one) tries again
                log.warning(
                    "Discord refused an answer update in conversation %s: HTTP %s (code %s)",
                    self._conversation, error.status, error.code,
                )  # fmt: skip
            except Exception as error:  # noqa: BLE001 - runs detached from the turn: nobody else would see it
                log.warning(
                    "Could not update an answer on Discord in conversation %s: %s",
                    self._conversation, error_cause(error),
                )  # fmt: skip
            finally:
                self._last_flush = time.monotonic()

    async def _show(self, index: int, content: str, view: discord.ui.View | None) -> None:
        if index < len(self._pages):
            if self._shown[index] == content and self._shown_buttons[index] is view:
                return
            try:
                await self._surface.edit(self._pages[index], content, view)
            except discord.NotFound:  # someone deleted our message mid-answer: post the page again
                self._pages[index] = await self._surface.send(content, first=index == 0, view=view)
            self._shown[index] = content
            self._shown_buttons[index] = view
        else:
            self._pages.append(await self._surface.send(content, first=index == 0, view=view))
            self._shown.append(content)
            self._shown_buttons.append(view)
