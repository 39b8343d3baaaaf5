"""Slash commands and button clicks: INTERACTION_CREATE, the 3 s acknowledgement rule, callbacks (respond, defer,
update the clicked message), followups (the first after a defer replaces the "thinking" message) and the interaction
webhook's message routes."""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from tests.fakes.discord.state import (
    DEFAULT_PERMISSIONS,
    MESSAGE_FLAG_LOADING,
    DiscordState,
    FakeInteraction,
    FakeMessage,
)
from tests.fakes.discord.wire import BODY, CALL, HttpError, json_response

DM_APP_PERMISSIONS = DEFAULT_PERMISSIONS  # what an app may do in a DM (Discord sends a fixed set)
MODAL_TITLE_MAX, MODAL_COMPONENTS_MAX, CUSTOM_ID_MAX, LABEL_MAX, TEXT_INPUT_MAX = 45, 5, 100, 45, 4000


class Interactions(DiscordState):
    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | list[dict[str, Any]] | None = None,
        *,
        user: dict[str, Any] | None = None,
        channel_id: int | None = None,
        dm: bool = False,
        resolved: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Invoke an application (slash) command: INTERACTION_CREATE type 2.

        ``name`` is the command's path: "ask", or "settings channel open" for a subcommand of a group.
        ``options``: {"question": "hi", "channel": channel_id, "role": role_id, "who": fake.bob}, typed by the
        synced command's schema (without one: str 3, int 4, bool 5, float 10, a user dict 6), with ``resolved``
        filled in for users (and their members), channels (a deleted one as it was; one of another guild too)
        and roles (of any guild); or raw option dicts of the (sub)command. ``resolved`` is merged in as given.
        ``channel_id`` defaults to ``fake.channel`` (a thread works); ``dm=True`` invokes it in the user's DM.
        """
        user = user or self.alice
        if dm:
            channel_id = self.dm_channel(user)
        channel_id = int(channel_id or self.channel)
        channel = self._channels[channel_id]
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        data = self._command_data(name, options, guild_id=guild_id, channel_id=channel_id, user_id=int(user["id"]))
        for key, objects in (resolved or {}).items():
            data.setdefault("resolved", {}).setdefault(key, {}).update(objects)
        path = " ".join(name.split())
        return await self._interact(2, data, user=user, channel_id=channel_id, name=path, locale=locale)

    async def click(self, message: FakeMessage, label: str, *, user: dict[str, Any] | None = None) -> FakeInteraction:
        """Press the button labelled ``label`` on one of the bot's messages: INTERACTION_CREATE type 3.

        The interaction's ``original`` is the message the button is on (what an UPDATE_MESSAGE callback, type 7,
        or a PATCH of @original edits). A disabled button cannot be pressed: AssertionError, as a test's mistake.
        """
        buttons = [c for row in message.data.get("components") or [] for c in row.get("components", [])]
        button = next((b for b in buttons if b.get("type") == 2 and b.get("label") == label), None)
        assert button is not None, f"no button {label!r} on the message; buttons: {[b.get('label') for b in buttons]}"
        assert not button.get("disabled"), f"the button {label!r} is disabled"
        parent = self.interaction(message.interaction_id) if message.interaction_id else None
        return await self._interact(
            3,
            {"custom_id": button["custom_id"], "component_type": 2},
            user=user or self.alice,
            channel_id=message.channel_id,
            name=parent.name if parent else label,
            message=message,
        )

    async def submit_modal(
        self, interaction: FakeInteraction, values: dict[str, str], *, user: dict[str, Any] | None = None
    ) -> FakeInteraction:
        """Submit the modal the bot answered ``interaction`` with: INTERACTION_CREATE type 5, its text inputs
        carrying ``values`` (by custom_id; one left out is sent empty). The new interaction is answered like
        any other (respond, defer, followups; from a button's modal, also UPDATE_MESSAGE of that message).

        As Discord's client would not let it through: AssertionError for a second submission (the modal
        closed), a value of no text input, a required one left empty, or a value outside min/max_length.
        """
        modal = interaction.modal
        assert modal is not None, f"/{interaction.name} was not answered with a modal: {interaction.callbacks}"
        assert not interaction.modal_submitted, f"the modal of /{interaction.name} was submitted already"
        inputs = modal.text_inputs
        unknown = set(values) - set(inputs)
        assert not unknown, f"the modal has no text input {sorted(unknown)}; it has {list(inputs)}"
        for custom_id, text_input in inputs.items():
            value = values.get(custom_id, "")
            assert value or not text_input.get("required", True), f"the text input {custom_id!r} is required"
            if value:
                low, high = text_input.get("min_length") or 0, text_input.get("max_length") or 4000
                assert low <= len(value) <= high, f"{custom_id!r}: {len(value)} characters, not {low}..{high}"
        interaction.modal_submitted = True
        components = []
        for top in modal.components:
            if top.get("type") == 18:
                inner = top["component"]
                components.append({"type": 18, "component": self._submitted(inner, values)})
            elif top.get("type") == 1:
                components.append({"type": 1, "components": [self._submitted(c, values) for c in top["components"]]})
        return await self._interact(
            5,
            {"custom_id": modal.custom_id, "components": components},
            user=user or self.user(interaction.user_id),
            channel_id=interaction.channel_id,
            name=interaction.name,
            message=interaction.original if interaction.kind == 3 else None,
        )

    @staticmethod
    def _submitted(component: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
        if component.get("type") != 4:  # e.g. a select: the fake sends what it is, with no choice made
            return {key: component[key] for key in ("type", "custom_id") if key in component} | {"values": []}
        return {"type": 4, "custom_id": component["custom_id"], "value": values.get(component["custom_id"], "")}

    async def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        user: dict[str, Any],
        channel_id: int,
        name: str,
        message: FakeMessage | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Record an interaction of ``kind`` by ``user`` in the channel and send its INTERACTION_CREATE."""
        channel = self._channels[channel_id]
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        interaction_id = self._snowflake()
        token = "interaction-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel_id),
            "channel": dict(channel),
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": self.attachment_size_limit,
        }
        if message is not None:
            payload["message"] = dict(message.data)
        if guild_id is not None:
            member = self._member_payload(self._guilds[guild_id], int(user["id"]))
            member["permissions"] = str(self.member_permissions(guild_id, int(user["id"]), channel_id))
            payload.update(
                guild_id=str(guild_id),
                member=member,
                guild_locale="en-US",
                guild={"id": str(guild_id), "locale": "en-US", "features": []},
                context=0,
                authorizing_integration_owners={"0": str(guild_id)},
                app_permissions=str(self.member_permissions(guild_id, self.bot_id, channel_id)),
            )
        else:
            payload.update(
                user=user,
                context=1,
                authorizing_integration_owners={"1": str(user["id"])},
                app_permissions=str(DM_APP_PERMISSIONS),
            )
        inter = FakeInteraction(
            id=interaction_id,
            token=token,
            name=name,
            channel_id=channel_id,
            guild_id=guild_id,
            user_id=int(user["id"]),
            payload=payload,
            created=time.monotonic(),
            original_id=message.id if message is not None else None,
            _fake=self,
        )
        self.interactions.append(inter)
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    def _interaction_by_token(self, token: str) -> FakeInteraction:
        for inter in self.interactions:
            if inter.token == token:
                return inter
        raise HttpError(404, 10015, "Unknown Webhook")

    def _interaction_extra(self, inter: FakeInteraction, original: bool) -> dict[str, Any]:
        return {
            "type": 20 if original else 0,
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
            "interaction_metadata": {
                "id": str(inter.id),
                "type": inter.kind,
                **({"name": inter.name} if inter.kind == 2 else {}),
                "user": self._users[inter.user_id],
                "authorizing_integration_owners": inter.payload.get("authorizing_integration_owners", {}),
            },
        }

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        inter = self._interaction_by_token(request.match_info["token"])
        if str(inter.id) != request.match_info["interaction_id"]:
            raise HttpError(404, 10062, "Unknown interaction")
        if inter.callbacks:
            raise HttpError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - inter.created > self.interaction_ack_timeout:
            raise HttpError(404, 10062, "Unknown interaction")
        body = request[BODY] or {}
        kind = body.get("type")
        data = body.get("data") or {}
        message: FakeMessage | None = None
        if kind in (4, 5):
            if kind == 4:
                self._validate_content(data, request[CALL].files, creating=True)
            flags = int(data.get("flags") or 0) | (MESSAGE_FLAG_LOADING if kind == 5 else 0)
            if kind == 4:
                payload = {**data, "flags": 0}
            else:
                payload = {"content": "", "allowed_mentions": data.get("allowed_mentions")}
            message = self._bot_message(
                inter.channel_id,
                payload,
                request[CALL].files,
                flags=flags,
                extra=self._interaction_extra(inter, original=True),
                interaction_id=inter.id,
            )
            inter.original_id = message.id
            self._echo("MESSAGE_CREATE", message)
        elif kind == 7:  # UPDATE_MESSAGE: a component's interaction edits the message the component is on
            if inter.kind not in (3, 5) or inter.original is None:
                raise HttpError(400, 50035, "Invalid Form Body", {"type": {"_errors": [{"code": "INTERACTION_TYPE"}]}})
            message = inter.original
            self._edit(message, data, request[CALL].files)
            self._echo("MESSAGE_UPDATE", message)
        elif kind == 9:
            if inter.kind == 5:  # a modal cannot answer a modal
                raise HttpError(400, 50035, "Invalid Form Body", {"type": {"_errors": [{"code": "INTERACTION_TYPE"}]}})
            self._validate_modal(data)
        elif kind not in (1, 6, 8, 10, 12):
            raise HttpError(400, 50035, "Invalid Form Body", {"type": {"_errors": [{"code": "BASE_TYPE_CHOICES"}]}})
        inter.callbacks.append(body)
        inter.callback_times.append(time.monotonic())
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        out: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.kind,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.ephemeral),
            }
        }
        if message is not None:
            out["interaction"]["response_message_id"] = str(message.id)
            out["resource"] = {"type": kind, "message": message.data}
        return json_response(out)

    @staticmethod
    def _validate_modal(data: dict[str, Any]) -> None:
        """Discord's limits on a modal: a custom_id and a title, 1 to 5 rows or labels, each holding one text
        input (or a select) with a custom_id, labels of at most 45 characters, lengths within 0..4000."""
        errors: dict[str, Any] = {}

        def bad(key: str, code: str) -> None:
            errors.setdefault(key, {"_errors": []})["_errors"].append({"code": code})

        if not 1 <= len(data.get("custom_id") or "") <= CUSTOM_ID_MAX:
            bad("custom_id", "BASE_TYPE_BAD_LENGTH")
        if not 1 <= len(data.get("title") or "") <= MODAL_TITLE_MAX:
            bad("title", "BASE_TYPE_BAD_LENGTH")
        components = data.get("components") or []
        if not 1 <= len(components) <= MODAL_COMPONENTS_MAX:
            bad("components", "BASE_TYPE_BAD_LENGTH")
        for n, top in enumerate(components):
            if top.get("type") == 10:  # a text display: no input
                continue
            inner = top.get("components") if top.get("type") == 1 else [top.get("component")]
            if not inner or len(inner) != 1 or not isinstance(inner[0], dict) or not inner[0].get("custom_id"):
                bad(f"components.{n}", "COMPONENT_LAYOUT_WIDTH_EXCEEDED")
                continue
            label = top.get("label") if top.get("type") == 18 else inner[0].get("label")
            if inner[0].get("type") == 4 and not 1 <= len(label or "") <= LABEL_MAX:
                bad(f"components.{n}.label", "BASE_TYPE_BAD_LENGTH")
            for key in ("min_length", "max_length"):
                if not 0 <= int(inner[0].get(key) or 0) <= TEXT_INPUT_MAX:
                    bad(f"components.{n}.{key}", "NUMBER_TYPE_MAX")
            if len(inner[0].get("value") or "") > int(inner[0].get("max_length") or TEXT_INPUT_MAX):
                bad(f"components.{n}.value", "BASE_TYPE_BAD_LENGTH")
        if errors:
            raise HttpError(400, 50035, "Invalid Form Body", {"data": errors})

    def _interaction_message(self, inter: FakeInteraction, message_id: str) -> FakeMessage:
        if message_id == "@original":
            if inter.original_id is None:
                raise HttpError(404, 10008, "Unknown Message")
            return self._message_or_404(inter.original_id)
        msg = self._message_or_404(message_id)
        if msg.interaction_id != inter.id:
            raise HttpError(404, 10008, "Unknown Message")
        return msg

    async def _followup(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        if not inter.callbacks:
            raise HttpError(404, 10015, "Unknown Webhook")
        body = request[BODY] or {}
        files = request[CALL].files
        self._validate_content(body, files, creating=True)
        original = inter.original
        if original is not None and original.loading and not original.deleted:
            # After a defer, the first followup replaces the "thinking" message.
            self._edit(original, body, files)
            msg = original
            self._echo("MESSAGE_UPDATE", msg)
        else:
            msg = self._bot_message(
                inter.channel_id,
                body,
                files,
                extra=self._interaction_extra(inter, original=False),
                interaction_id=inter.id,
            )
            inter.followup_ids.append(msg.id)
            self._echo("MESSAGE_CREATE", msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(msg.data)
        return web.Response(status=204)

    async def _webhook_get(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        return json_response(self._interaction_message(inter, request.match_info["message_id"]).data)

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        msg = self._interaction_message(inter, request.match_info["message_id"])
        self._edit(msg, request[BODY] or {}, request[CALL].files)
        self._echo("MESSAGE_UPDATE", msg)
        return json_response(msg.data)

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        self._check_app(request)
        inter = self._interaction_by_token(request.match_info["token"])
        msg = self._interaction_message(inter, request.match_info["message_id"])
        msg.deleted = True
        return web.Response(status=204)
