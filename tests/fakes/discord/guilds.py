"""What a server is made of beyond its text channels: roles and who has them, permissions computed as Discord
computes them, threads (added by a test or started by the bot over REST), and channel deletion."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.discord.state import (
    ALL_PERMISSIONS,
    CHANNEL_DM,
    CHANNEL_PRIVATE_THREAD,
    CHANNEL_PUBLIC_THREAD,
    CHANNEL_TEXT,
    MESSAGE_FLAG_HAS_THREAD,
    PERM_ADMINISTRATOR,
    PERM_CREATE_PRIVATE_THREADS,
    PERM_CREATE_PUBLIC_THREADS,
    PERM_SEND_MESSAGES,
    PERM_SEND_MESSAGES_IN_THREADS,
    PERM_VIEW_CHANNEL,
    THREAD_TYPES,
    DiscordState,
    FakeGuild,
    now_iso,
    role_payload,
)
from tests.fakes.discord.wire import BODY, HttpError, json_response

THREAD_NAME_MAX = 100


def _user_id(user: dict[str, Any] | int) -> int:
    return int(user["id"]) if isinstance(user, dict) else int(user)


class Guilds(DiscordState):
    # ------------------------------------------------------------------------------------------- roles

    def add_role(self, guild_id: int, name: str, *, permissions: int = 0) -> int:
        """A role in the guild (above the others); live bots get GUILD_ROLE_CREATE. Returns its id."""
        guild = self._guilds[guild_id]
        role_id = self._snowflake()
        guild.roles[role_id] = role_payload(role_id, name, permissions, len(guild.roles))
        self._announce("GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": dict(guild.roles[role_id])})
        return role_id

    def give_role(self, user: dict[str, Any] | int, guild_id: int, role_id: int) -> None:
        """The member has the role from now on: in every member payload, and live bots get
        GUILD_MEMBER_UPDATE (with the Server Members intent, as Discord sends it)."""
        guild = self._guilds[guild_id]
        assert role_id in guild.roles and role_id != guild.everyone_role, f"no role {role_id} to give in {guild.name}"
        roles = guild.member_roles.setdefault(_user_id(user), [])
        if role_id not in roles:
            roles.append(role_id)
        self._member_changed(guild, _user_id(user))

    def take_role(self, user: dict[str, Any] | int, guild_id: int, role_id: int) -> None:
        """The member no longer has the role (GUILD_MEMBER_UPDATE to live bots)."""
        guild = self._guilds[guild_id]
        roles = guild.member_roles.get(_user_id(user), [])
        if role_id in roles:
            roles.remove(role_id)
        self._member_changed(guild, _user_id(user))

    def _member_changed(self, guild: FakeGuild, user_id: int) -> None:
        self._announce("GUILD_MEMBER_UPDATE", {"guild_id": str(guild.id), **self._member_payload(guild, user_id)})

    # ------------------------------------------------------------------------------------- permissions

    def member_permissions(self, guild_id: int, user_id: int, channel_id: int | None = None) -> int:
        """@everyone's permissions | the member's roles'; the owner and an administrator have all of them.
        In a channel (a thread: its parent's), the overwrites apply in Discord's order: @everyone's, then the
        member's roles' together, then the member's own; without View Channel there is nothing."""
        guild = self._guilds[int(guild_id)]
        user_id = int(user_id)
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        role_ids = [guild.everyone_role, *guild.member_roles.get(user_id, [])]
        permissions = 0
        for role_id in role_ids:
            if role_id in guild.roles:
                permissions |= int(guild.roles[role_id]["permissions"])
        if permissions & PERM_ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel_id is None:
            return permissions
        channel = self.channel_payload(channel_id)
        if channel["type"] in THREAD_TYPES:
            channel = self.channel_payload(int(channel["parent_id"]))
        overwrites = {(o["type"], o["id"]): o for o in channel.get("permission_overwrites", [])}

        def apply(*keys: tuple[int, str]) -> None:
            nonlocal permissions
            found = [overwrites[key] for key in keys if key in overwrites]
            deny = allow = 0
            for overwrite in found:
                deny |= int(overwrite["deny"])
                allow |= int(overwrite["allow"])
            permissions = (permissions & ~deny) | allow

        apply((0, str(guild.everyone_role)))
        apply(*((0, str(role_id)) for role_id in role_ids[1:]))
        apply((1, str(user_id)))
        return permissions if permissions & PERM_VIEW_CHANNEL else 0

    def can_send(self, channel_id: int) -> bool:
        channel = self.channel_payload(channel_id)
        if channel["type"] == CHANNEL_DM:
            return True
        needed = PERM_SEND_MESSAGES_IN_THREADS if channel["type"] in THREAD_TYPES else PERM_SEND_MESSAGES
        return bool(self.member_permissions(int(channel["guild_id"]), self.bot_id, channel_id) & needed)

    def deny_send(self, channel_id: int) -> None:
        """From now on the bot may not send in this channel (403 / 50013); live bots get CHANNEL_UPDATE.
        For a thread (threads have no overwrites of their own): in every thread of its parent."""
        channel = self.channel_payload(channel_id)
        if channel["type"] in THREAD_TYPES:
            parent_id = int(channel["parent_id"])
            self._set_deny(parent_id, PERM_SEND_MESSAGES_IN_THREADS)
            self._announce("CHANNEL_UPDATE", self._channels[parent_id])
        else:
            self._set_deny(int(channel_id), PERM_SEND_MESSAGES)
            self._announce("CHANNEL_UPDATE", self._channels[int(channel_id)])

    def deny_bot(self, channel_id: int, permissions: int) -> None:
        """From now on the bot lacks ``permissions`` in this text channel (and its threads): a member overwrite,
        as a server admin would set it; live bots get CHANNEL_UPDATE."""
        self._set_deny(int(channel_id), permissions)
        self._announce("CHANNEL_UPDATE", self._channels[int(channel_id)])

    # ----------------------------------------------------------------------------------------- threads

    def add_thread(
        self,
        parent_channel_id: int,
        name: str,
        *,
        owner: dict[str, Any] | None = None,
        private: bool = False,
        archived: bool = False,
    ) -> int:
        """A thread under a text channel, started by ``owner`` (default alice); live bots get THREAD_CREATE,
        later ones find it in GUILD_CREATE. Returns its id (a channel id: ``user_message`` posts in it).
        ``archived``: an old thread discord.py has not cached (GUILD_CREATE lists active threads only, and no
        THREAD_CREATE is sent; nor the THREAD_UPDATE Discord sends when a message unarchives it, as if the bot
        missed it): a message in it reaches discord.py in a ``PartialMessageable``; GET /channels/{id} finds it."""
        kind = CHANNEL_PRIVATE_THREAD if private else CHANNEL_PUBLIC_THREAD
        owner_id = int((owner or self.alice)["id"])
        thread = self._new_thread(int(parent_channel_id), name, owner_id=owner_id, kind=kind, archived=archived)
        return int(thread["id"])

    def _new_thread(
        self,
        parent_id: int,
        name: str,
        *,
        owner_id: int,
        kind: int,
        thread_id: int | None = None,
        archived: bool = False,
    ) -> dict[str, Any]:
        parent = self._channels.get(parent_id)
        assert parent is not None and parent["type"] == CHANNEL_TEXT, f"{parent_id} is not a live text channel"
        guild = self._guilds[int(parent["guild_id"])]
        thread_id = thread_id or self._snowflake()
        created = now_iso()
        thread = {
            "id": str(thread_id),
            "type": kind,
            "guild_id": str(guild.id),
            "parent_id": str(parent_id),
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "total_message_sent": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": archived,
                "auto_archive_duration": 1440,
                "archive_timestamp": created,
                "locked": False,
                "create_timestamp": created,
                **({"invitable": True} if kind == CHANNEL_PRIVATE_THREAD else {}),
            },
        }
        self._channels[thread_id] = thread
        self._channel_messages[thread_id] = []
        guild.thread_ids.append(thread_id)
        if not archived:
            self._announce("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    async def _start_thread_from_message(self, request: web.Request) -> web.Response:
        parent = self._thread_parent_or_error(request.match_info["channel_id"], PERM_CREATE_PUBLIC_THREADS)
        message = self._message_or_404(request.match_info["message_id"], parent["id"])
        if int(message.id) in self._channels or message.data.get("thread"):
            raise HttpError(400, 160004, "A thread has already been created for this message")
        name = self._thread_name((request[BODY] or {}).get("name"))
        # A thread started from a message has the message's id (discord.py's Message.thread relies on it).
        thread = self._new_thread(
            int(parent["id"]), name, owner_id=self.bot_id, kind=CHANNEL_PUBLIC_THREAD, thread_id=message.id
        )
        message.data["thread"] = dict(thread)
        message.data["flags"] = message.flags | MESSAGE_FLAG_HAS_THREAD
        return json_response(thread)

    async def _start_thread(self, request: web.Request) -> web.Response:
        body = request[BODY] or {}
        kind = int(body.get("type") or CHANNEL_PRIVATE_THREAD)  # Discord's default for this route is private
        if kind not in (CHANNEL_PUBLIC_THREAD, CHANNEL_PRIVATE_THREAD):
            raise HttpError(400, 50035, "Invalid Form Body", {"type": {"_errors": [{"code": "BASE_TYPE_CHOICES"}]}})
        needed = PERM_CREATE_PUBLIC_THREADS if kind == CHANNEL_PUBLIC_THREAD else PERM_CREATE_PRIVATE_THREADS
        parent = self._thread_parent_or_error(request.match_info["channel_id"], needed)
        thread = self._new_thread(
            int(parent["id"]), self._thread_name(body.get("name")), owner_id=self.bot_id, kind=kind
        )
        return json_response(thread)

    def _thread_parent_or_error(self, channel_id: str, needed: int) -> dict[str, Any]:
        parent = self._channels.get(int(channel_id)) if channel_id.isdigit() else None
        if parent is None:
            raise HttpError(404, 10003, "Unknown Channel")
        if parent["type"] != CHANNEL_TEXT:
            raise HttpError(400, 50024, "Cannot execute action on this channel type")
        if not self.member_permissions(int(parent["guild_id"]), self.bot_id, int(parent["id"])) & needed:
            raise HttpError(403, 50013, "Missing Permissions")
        return parent

    @staticmethod
    def _thread_name(name: Any) -> str:
        if not isinstance(name, str) or not 1 <= len(name) <= THREAD_NAME_MAX:
            raise HttpError(400, 50035, "Invalid Form Body", {"name": {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH"}]}})
        return name

    # ---------------------------------------------------------------------------------------- deletion

    def delete_channel(self, channel_id: int) -> None:
        """The channel (or thread) is gone: REST answers 404 Unknown Channel, events in it cannot be made, and
        live bots get CHANNEL_DELETE (THREAD_DELETE for a thread). A text channel's threads go with it.
        ``channel_payload(id)`` and ``messages(id)`` still show what it was and held."""
        channel_id = int(channel_id)
        channel = self._channels.pop(channel_id)
        self._deleted_channels[channel_id] = channel
        guild = self._guilds[int(channel["guild_id"])]
        if channel["type"] in THREAD_TYPES:
            guild.thread_ids.remove(channel_id)
            self._announce(
                "THREAD_DELETE",
                {
                    "id": str(channel_id),
                    "guild_id": str(guild.id),
                    "parent_id": channel["parent_id"],
                    "type": channel["type"],
                },
            )
            return
        guild.channels = {name: cid for name, cid in guild.channels.items() if cid != channel_id}
        for thread_id in [t for t in guild.thread_ids if self._channels[t]["parent_id"] == str(channel_id)]:
            guild.thread_ids.remove(thread_id)
            self._deleted_channels[thread_id] = self._channels.pop(thread_id)  # discord.py drops them itself
        self._announce("CHANNEL_DELETE", channel)
