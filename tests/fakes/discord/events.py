"""What users do, injected as gateway events: a message (with mentions, a reply, a webhook, attachments), a
DM, an edit, a delete."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord.state import DiscordState, now_iso


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
        ``attachments``: e.g. [{"filename": "a.png", "size": 10}] (ids/urls are filled in).
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
            data["attachments"].append(
                {
                    "id": str(aid),
                    "filename": "file.bin",
                    "size": 0,
                    "url": f"https://cdn.example.invalid/{aid}",
                    "proxy_url": f"https://cdn.example.invalid/{aid}",
                    **attachment,
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

