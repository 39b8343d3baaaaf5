"""The buttons under Kor'tana's answers: Stop while an answer streams, then Regenerate and Another engine.

Each is a `discord.ui.DynamicItem`: its custom id carries the asker and the turn (`kortana:<action>:<asker
id>:<turn id>`), so a press is understood after a restart with no view kept in memory (the views are sent
finished, so discord.py does not keep them either). Only the asker may press them; the press itself is
handled by the AnswerButtons cog (app/bot/cogs/answer_buttons.py).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Protocol, cast

import discord

from app.bot.sentences import ONLY_THE_ASKER

Action = Literal["stop", "regenerate", "another"]
ANSWER_BUTTONS_COG = "AnswerButtons"
LABELS: dict[Action, str] = {"stop": "Stop", "regenerate": "Regenerate", "another": "Another engine"}
STYLES: dict[Action, discord.ButtonStyle] = {
    "stop": discord.ButtonStyle.danger,
    "regenerate": discord.ButtonStyle.secondary,
    "another": discord.ButtonStyle.secondary,
}
EMOJIS: dict[Action, str] = {"stop": "⏹", "regenerate": "🔄", "another": "🔀"}


class ButtonPresses(Protocol):
    """What handles a press by the asker (the AnswerButtons cog)."""

    async def pressed(self, interaction: discord.Interaction, action: Action, turn_id: int) -> None: ...


class AnswerButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"kortana:(?P<action>stop|regenerate|another):(?P<asker>[0-9]{1,20}):(?P<turn>[0-9]{1,18})",
):
    def __init__(self, action: Action, asker_id: int, turn_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=LABELS[action],
                style=STYLES[action],
                emoji=EMOJIS[action],
                custom_id=f"kortana:{action}:{asker_id}:{turn_id}",
            )
        )
        self.action: Action = action
        self.asker_id = asker_id
        self.turn_id = turn_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AnswerButton:
        return cls(cast(Action, match["action"]), int(match["asker"]), int(match["turn"]))

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.user.id == self.asker_id:
            return True
        await interaction.response.send_message(ONLY_THE_ASKER, ephemeral=True)
        return False

    async def callback(self, interaction: discord.Interaction) -> None:
        presses = cast(ButtonPresses | None, interaction.client.get_cog(ANSWER_BUTTONS_COG))  # type: ignore[attr-defined]
        if presses is not None:
            await presses.pressed(interaction, self.action, self.turn_id)


def streaming_buttons(asker_id: int, turn_id: int) -> discord.ui.View:
    """Under an answer being streamed: Stop."""
    return _finished_view(AnswerButton("stop", asker_id, turn_id))


def answer_buttons(asker_id: int, turn_id: int) -> discord.ui.View:
    """Under the newest complete answer: Regenerate and Another engine."""
    return _finished_view(AnswerButton("regenerate", asker_id, turn_id), AnswerButton("another", asker_id, turn_id))


def _finished_view(*items: discord.ui.Item[Any]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    view.stop()  # sent as components only: the registered dynamic items answer the presses, now or after a restart
    return view
