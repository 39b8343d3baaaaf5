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
    PERM_SEND_MESSAGES,
    DiscordState,
    FakeInteraction,
    FakeMessage,
)
from tests.fakes.discord.wire import BODY, CALL, HttpError, json_response


class Interactions(DiscordState):
    @staticmethod
    def _option(name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            kind = 5
        elif isinstance(value, int):
            kind = 4
        elif isinstance(value, float):
            kind = 10
        else:
            kind = 3
        return {"name": name, "type": kind, "value": value}

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

        ``options``: {"question": "hi"} (types inferred: str 3, int 4, bool 5, float 10) or raw option dicts.
        ``channel_id`` defaults to ``fake.channel``; ``dm=True`` invokes it in the user's DM.
        The command id (and data.guild_id for guild-synced commands) come from the synced commands.
        """
        user = user or self.alice
        if dm:
            channel_id = self.dm_channel(user)
        channel_id = int(channel_id or self.channel)
        channel = self._channels[channel_id]
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        if isinstance(options, dict):
            options = [self._option(k, v) for k, v in options.items()]
        command = next(
            (c for c in self.commands.get(guild_id, []) if c["name"] == name),
            None,
        ) or next((c for c in self.commands.get(None, []) if c["name"] == name), None)
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self._snowflake()),
            "name": name,
            "type": 1,
            "options": options or [],
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        interaction_id = self._snowflake()
        token = "interaction-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": 2,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel_id),
            "channel": dict(channel),
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": self.attachment_size_limit,
            "app_permissions": str(
                DEFAULT_PERMISSIONS & ~(0 if self.can_send(channel_id) else PERM_SEND_MESSAGES)
            ),
        }
        if guild_id is not None:
            member = self._member_payload(self._guilds[guild_id], int(user["id"]))
            member["permissions"] = str(DEFAULT_PERMISSIONS)
            payload.update(
                guild_id=str(guild_id),
                member=member,
                guild_locale="en-US",
                guild={"id": str(guild_id), "locale": "en-US", "features": []},
                context=0,
                authorizing_integration_owners={"0": str(guild_id)},
            )
        else:
            payload.update(user=user, context=1, authorizing_integration_owners={"1": str(user["id"])})
        inter = FakeInteraction(
            id=interaction_id,
            token=token,
            name=name,
            channel_id=channel_id,
            guild_id=guild_id,
            user_id=int(user["id"]),
            payload=payload,
            created=time.monotonic(),
            _fake=self,
        )
        self.interactions.append(inter)
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    async def click(self, message: FakeMessage, label: str, *, user: dict[str, Any] | None = None) -> FakeInteraction:
        """Press the button labelled ``label`` on one of the bot's messages: INTERACTION_CREATE type 3.

        The interaction's ``original`` is the message the button is on (what an UPDATE_MESSAGE callback, type 7,
        or a PATCH of @original edits). A disabled button cannot be pressed: AssertionError, as a test's mistake.
        """
        user = user or self.alice
        buttons = [c for row in message.data.get("components") or [] for c in row.get("components", [])]
        button = next((b for b in buttons if b.get("type") == 2 and b.get("label") == label), None)
        assert button is not None, f"no button {label!r} on the message; buttons: {[b.get('label') for b in buttons]}"
        assert not button.get("disabled"), f"the button {label!r} is disabled"
        channel = self._channels[message.channel_id]
        parent = self.interaction(message.interaction_id) if message.interaction_id else None
        interaction_id = self._snowflake()
        token = "interaction-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": 3,
            "token": token,
            "version": 1,
            "data": {"custom_id": button["custom_id"], "component_type": 2},
            "message": dict(message.data),
            "channel_id": str(message.channel_id),
            "channel": dict(channel),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.attachment_size_limit,
            "app_permissions": str(DEFAULT_PERMISSIONS),
        }
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        if guild_id is not None:
            member = self._member_payload(self._guilds[guild_id], int(user["id"]))
            member["permissions"] = str(DEFAULT_PERMISSIONS)
            payload.update(guild_id=str(guild_id), member=member, guild_locale="en-US", context=0)
        else:
            payload.update(user=user, context=1)
        inter = FakeInteraction(
            id=interaction_id,
            token=token,
            name=parent.name if parent else label,
            channel_id=message.channel_id,
            guild_id=guild_id,
            user_id=int(user["id"]),
            payload=payload,
            created=time.monotonic(),
            original_id=message.id,
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
                "type": 2,
                "name": inter.name,
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
            if inter.payload.get("type") != 3 or inter.original is None:
                raise HttpError(400, 50035, "Invalid Form Body", {"type": {"_errors": [{"code": "INTERACTION_TYPE"}]}})
            message = inter.original
            self._edit(message, data, request[CALL].files)
            self._echo("MESSAGE_UPDATE", message)
        elif kind not in (1, 6, 8, 9, 10, 12):
            raise HttpError(400, 50035, "Invalid Form Body", {"type": {"_errors": [{"code": "BASE_TYPE_CHOICES"}]}})
        inter.callbacks.append(body)
        inter.callback_times.append(time.monotonic())
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        out: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": 2,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.ephemeral),
            }
        }
        if message is not None:
            out["interaction"]["response_message_id"] = str(message.id)
            out["resource"] = {"type": kind, "message": message.data}
        return json_response(out)

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
