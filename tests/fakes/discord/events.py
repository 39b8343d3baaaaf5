"""What users do, injected as gateway events: a message (with mentions, a reply, a webhook, attachments), a
DM, an edit, a delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.state import DiscordState, now_iso
from tests.fakes.discord.wire import error_body, json_response


class UserEvents(DiscordState):
    async def user_message(
        self,
        channel_id: int,
        content: str,
        *,
        author: dict[str, Any] | None = None,
        reply_to: int | None = None,
        reply_ping: bool = True,
        webhook_id: int | None = None,
        attachments: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Post a message as a user (default alice) and send MESSAGE_CREATE; returns the payload.

        ``webhook_id``: posted by a webhook (author is a bot user named after it).
        ``attachments``: e.g. [{"filename": "a.py", "content": b"print(1)", "content_type": "text/x-python"}]:
        the fake keeps ``content`` and serves it at the attachment's url (``{cdn_base_url}/{id}/{filename}``;
        ``size`` is its length unless given). Without ``content`` (e.g. [{"filename": "a.png", "size": 10}])
        the url answers 404. ``fail("GET", r"/attachments/.*", 404)`` and ``delay(...)`` script the download.
        """
        if webhook_id is not None and author is None:
            author = {
                "id": str(webhook_id),
                "username": "Captain Hook",
                "discriminator": "0000",
                "avatar": None,
                "bot": True,
            }
        author = author or self.alice
        data = self._message_payload(
            int(channel_id), author, content, reply_to=reply_to, reply_ping=reply_ping, webhook_id=webhook_id
        )
        for attachment in attachments or []:
            aid = self._snowflake()
            described = dict(attachment)
            content = described.pop("content", None)
            filename = described.get("filename", "file.bin")
            if content is not None:
                self._attachment_bytes[aid] = bytes(content)
            url = f"{self.cdn_base_url}/{aid}/{filename}"
            data["attachments"].append(
                {
                    "id": str(aid),
                    "filename": filename,
                    "size": len(content) if content is not None else 0,
                    "url": url,
                    "proxy_url": url,
                    **described,
                }
            )
        data.update(extra)
        self._store(data)
        await self.dispatch("MESSAGE_CREATE", data)
        return data

    async def dm_message(self, user: dict[str, Any], content: str, **kwargs: Any) -> dict[str, Any]:
        return await self.user_message(self.dm_channel(user), content, author=user, **kwargs)

    async def edit_user_message(self, message_id: int, content: str) -> dict[str, Any]:
        """Edit a stored message (as its author) and send MESSAGE_UPDATE."""
        msg = self._messages[int(message_id)]
        guild_id = int(msg.data["guild_id"]) if msg.data.get("guild_id") else None
        mentions, roles, everyone = self._mentions(content, guild_id)
        msg.data.update(
            content=content,
            edited_timestamp=now_iso(),
            mentions=mentions,
            mention_roles=roles,
            mention_everyone=everyone,
        )
        msg.versions.append(content)
        await self.dispatch("MESSAGE_UPDATE", dict(msg.data))
        return msg.data

    async def delete_message(self, message_id: int) -> None:
        """Delete a stored message and send MESSAGE_DELETE."""
        msg = self._messages[int(message_id)]
        msg.deleted = True
        data = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.data.get("guild_id"):
            data["guild_id"] = msg.data["guild_id"]
        await self.dispatch("MESSAGE_DELETE", data)


    async def _get_attachment(self, request: web.Request) -> web.Response:
        """GET {cdn_base_url}/{id}/{filename}: the bytes a user attached (no Authorization, as the CDN)."""
        content = self._attachment_bytes.get(int(request.match_info["attachment_id"]))
        if content is None:
            return json_response(error_body(0, "404: Not Found"), status=404)
        return web.Response(body=content, content_type="application/octet-stream")
