"""The REST API: the routes discord.py calls, the middleware that logs every call and applies faults, auth
and rate limits, and the handlers for identity, application commands, guilds, channels and messages."""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.discord.state import DiscordState, FakeMessage, RestCall
from tests.fakes.discord.wire import API_PREFIX, BODY, BUCKET, CALL, CDN_PREFIX, HttpError, error_body, json_response


class RestApi(DiscordState):
    def _add_routes(self, router: web.UrlDispatcher) -> None:
        p = API_PREFIX
        routes = [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/users/{user_id}", self._get_user),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/applications/{application_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/commands", self._post_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command),
            ("GET", "/guilds/{guild_id}", self._get_guild),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", "/channels/{channel_id}/messages", self._get_messages),
            ("POST", "/channels/{channel_id}/messages", self._post_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._no_content),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._no_content),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self._start_thread_from_message),
            ("POST", "/channels/{channel_id}/threads", self._start_thread),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback),
            ("POST", "/webhooks/{application_id}/{token}", self._followup),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_get),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_edit),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self._webhook_delete),
        ]
        for method, path, handler in routes:
            router.add_route(method, p + path, handler)
        router.add_get(CDN_PREFIX + "/{attachment_id}/{filename}", self._get_attachment)
        router.add_route("*", "/{tail:.*}", self._not_found)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path == "/gateway":
            return await handler(request)
        path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path
        body, files = await self._read_body(request)
        call = RestCall(request.method, path, dict(request.query), body, files, time.monotonic())
        self.calls.append(call)
        request[BODY] = body
        request[CALL] = call
        await self._hold_if_delayed(request.method, path)
        try:
            response = self._scripted(request.method, path)
            if response is None:
                response = self._check_auth(request, path) or self._check_rate_limit(request, call)
            if response is None:
                response = await handler(request)
                bucket_headers = request.get(BUCKET)
                if bucket_headers:
                    response.headers.update(bucket_headers)
        except HttpError as exc:
            response = json_response(error_body(exc.code, exc.message, exc.errors), status=exc.status)
        except Exception:  # noqa: BLE001 - never answer 5xx: discord.py would sleep and retry
            self.internal_errors.append(traceback.format_exc())
            response = json_response(error_body(0, "fake internal error (see fake.internal_errors)"), status=400)
        call.status = response.status
        if isinstance(response, web.Response) and response.body:
            with contextlib.suppress(Exception):
                call.response = json.loads(response.body)
        self._notify()
        return response

    async def _read_body(self, request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        if not request.body_exists:
            return None, []
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            payload, files = None, []
            reader = await request.multipart()
            async for part in reader:
                raw = await part.read()
                if part.name == "payload_json":
                    payload = json.loads(raw)
                else:
                    files.append({"name": part.name, "filename": part.filename, "size": len(raw), "data": bytes(raw)})
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    def _check_auth(self, request: web.Request, path: str) -> web.Response | None:
        if path.startswith(("/webhooks/", "/interactions/", CDN_PREFIX + "/")):
            return None  # token-in-URL routes need no Authorization header
        auth = request.headers.get("Authorization", "")
        token = auth[4:] if auth.startswith("Bot ") else ""
        if self._token_ok(token):
            return None
        return json_response(error_body(0, "401: Unauthorized"), status=401)

    async def _not_found(self, request: web.Request) -> web.Response:
        self.unhandled.append(request[CALL])
        return json_response(error_body(0, "404: Not Found"), status=404)

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    # ---- lookups

    def _channel_or_404(self, channel_id: Any) -> dict[str, Any]:
        channel = self._channels.get(int(channel_id))
        if channel is None:
            raise HttpError(404, 10003, "Unknown Channel")
        return channel

    def _message_or_404(self, message_id: Any, channel_id: Any = None) -> FakeMessage:
        msg = self._messages.get(int(message_id)) if str(message_id).isdigit() else None
        if msg is None or msg.deleted or (channel_id is not None and msg.channel_id != int(channel_id)):
            raise HttpError(404, 10008, "Unknown Message")
        return msg

    def _check_app(self, request: web.Request) -> None:
        if request.match_info.get("application_id") != str(self.application_id):
            raise HttpError(404, 10002, "Unknown Application")

    # ---- gateway / identity

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.gateway_url,
                "shards": self.recommended_shards,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            }
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if user_id == "@me":
            return json_response({**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0})
        user = self._users.get(int(user_id)) if user_id.isdigit() else None
        if user is None:
            raise HttpError(404, 10013, "Unknown User")
        return json_response(user)

    async def _get_application(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "bot": self.bot_user,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.alice,
                "team": None,
                "flags": 0,
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "tags": [],
            }
        )

    async def _create_dm(self, request: web.Request) -> web.Response:
        recipient = int(request[BODY]["recipient_id"])
        if recipient not in self._users:
            raise HttpError(400, 50007, "Cannot send messages to this user")
        return json_response(self._channels[self.dm_channel(recipient)])

    # ---- application commands

    def _command_out(self, raw: dict[str, Any], guild_id: int | None, existing: list[dict]) -> dict[str, Any]:
        kind = raw.get("type", 1)
        old = next((c for c in existing if c["name"] == raw["name"] and c["type"] == kind), None)
        out = {
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **raw,
            "id": old["id"] if old else str(self._snowflake()),
            "application_id": str(self.application_id),
            "type": kind,
            "version": str(self._snowflake()),
        }
        if guild_id is not None:
            out["guild_id"] = str(guild_id)
        return out

    @staticmethod
    def _guild_key(request: web.Request) -> int | None:
        guild_id = request.match_info.get("guild_id")
        return int(guild_id) if guild_id else None

    async def _get_commands(self, request: web.Request) -> web.Response:
        self._check_app(request)
        return json_response(self.commands.get(self._guild_key(request), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._check_app(request)
        guild_id = self._guild_key(request)
        if guild_id is not None and guild_id not in self._guilds:
            raise HttpError(403, 50001, "Missing Access")
        existing = self.commands.get(guild_id, [])
        self.commands[guild_id] = [self._command_out(c, guild_id, existing) for c in request[BODY] or []]
        return json_response(self.commands[guild_id])

    async def _post_command(self, request: web.Request) -> web.Response:
        self._check_app(request)
        guild_id = self._guild_key(request)
        existing = self.commands.setdefault(guild_id, [])
        out = self._command_out(request[BODY], guild_id, existing)
        existing[:] = [c for c in existing if c["id"] != out["id"]] + [out]
        return json_response(out)

    # ---- guilds / channels / messages

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild = self._guilds.get(int(request.match_info["guild_id"]))
        if guild is None:
            raise HttpError(404, 10004, "Unknown Guild")
        return json_response(self._guild_payload(guild))

    async def _get_member(self, request: web.Request) -> web.Response:
        guild = self._guilds.get(int(request.match_info["guild_id"]))
        user_id = int(request.match_info["user_id"])
        if guild is None or (user_id not in guild.member_ids and user_id != self.bot_id):
            raise HttpError(404, 10007, "Unknown Member")
        return json_response(self._member_payload(guild, user_id))

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel_or_404(request.match_info["channel_id"]))

    async def _get_messages(self, request: web.Request) -> web.Response:
        channel_id = int(self._channel_or_404(request.match_info["channel_id"])["id"])
        limit = int(request.query.get("limit", 50))
        before = int(request.query.get("before", 0)) or None
        after = int(request.query.get("after", 0)) or None
        msgs = [
            m
            for m in self.messages(channel_id)
            if (before is None or m.id < before) and (after is None or m.id > after)
        ]
        msgs = sorted(msgs, key=lambda m: m.id, reverse=True)[:limit]
        return json_response([m.data for m in msgs])

    async def _get_message(self, request: web.Request) -> web.Response:
        msg = self._message_or_404(request.match_info["message_id"], request.match_info["channel_id"])
        return json_response(msg.data)

    async def _post_message(self, request: web.Request) -> web.Response:
        channel = self._channel_or_404(request.match_info["channel_id"])
        channel_id = int(channel["id"])
        if not self.can_send(channel_id):
            raise HttpError(403, 50013, "Missing Permissions")
        body = request[BODY] or {}
        files = request[CALL].files
        self._validate_content(body, files, creating=True)
        msg = self._bot_message(channel_id, body, files)
        self._echo("MESSAGE_CREATE", msg)
        return json_response(msg.data)

    async def _patch_message(self, request: web.Request) -> web.Response:
        msg = self._message_or_404(request.match_info["message_id"], request.match_info["channel_id"])
        if msg.author_id != self.bot_id:
            raise HttpError(403, 50005, "Cannot edit a message authored by another user")
        self._edit(msg, request[BODY] or {}, request[CALL].files)
        self._echo("MESSAGE_UPDATE", msg)
        return json_response(msg.data)

    async def _delete_message(self, request: web.Request) -> web.Response:
        msg = self._message_or_404(request.match_info["message_id"], request.match_info["channel_id"])
        if msg.author_id != self.bot_id:
            raise HttpError(403, 50013, "Missing Permissions")
        msg.deleted = True
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.data.get("guild_id"):
            data["guild_id"] = msg.data["guild_id"]
        if self.echo_own_messages:
            self._spawn(self.dispatch("MESSAGE_DELETE", data))
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        channel_id = int(self._channel_or_404(request.match_info["channel_id"])["id"])
        if not self.can_send(channel_id):
            raise HttpError(403, 50013, "Missing Permissions")
        self.typing.append(channel_id)
        return web.Response(status=204)

