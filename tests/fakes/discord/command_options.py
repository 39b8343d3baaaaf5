"""An application command's interaction ``data`` as Discord builds it: the subcommand path (``"settings channel
open"`` nests the options under the group and the subcommand), each option typed by the synced command's schema,
and ``resolved`` filled with the users, members, channels and roles the options name."""

from __future__ import annotations

from typing import Any

from tests.fakes.discord.state import DiscordState

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 3, 4, 5, 6, 7, 8, 9, 10


def _inferred_type(value: Any) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, dict) and "username" in value:
        return USER
    return STRING


def _snowflake_of(value: Any) -> int:
    return int(value["id"]) if isinstance(value, dict) else int(value)


class CommandOptions(DiscordState):
    def _synced_command(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        for scope in (guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    def _command_data(
        self,
        path: str,
        options: dict[str, Any] | list[dict[str, Any]] | None,
        *,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
    ) -> dict[str, Any]:
        name, *subpath = path.split()
        command = self._synced_command(name, guild_id)
        schema, kinds = self._leaf_schema(command, path, subpath)
        resolved: dict[str, dict[str, Any]] = {}
        if isinstance(options, dict):
            leaf = [
                self._typed_option(
                    key, value, schema, resolved, guild_id=guild_id, channel_id=channel_id, user_id=user_id
                )
                for key, value in options.items()
            ]
        else:
            leaf = list(options or [])
        if schema is not None:
            given = {option["name"] for option in leaf}
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in given]
            assert not missing, f"/{path} needs the option(s) {missing}"
        for sub, kind in zip(reversed(subpath), reversed(kinds), strict=True):
            leaf = [{"name": sub, "type": kind, "options": leaf}]
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self._snowflake()),
            "name": name,
            "type": 1,
            "options": leaf,
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return data

    @staticmethod
    def _leaf_schema(
        command: dict[str, Any] | None, path: str, subpath: list[str]
    ) -> tuple[list[dict[str, Any]] | None, list[int]]:
        """The options the invoked (sub)command takes, and the type (group or subcommand) of each path step.
        Without a synced command nothing is checked and the steps are groups then a subcommand."""
        if command is None:
            return None, [SUB_COMMAND_GROUP] * (len(subpath) - 1) + [SUB_COMMAND] * bool(subpath)
        schema = command.get("options") or []
        kinds = []
        for sub in subpath:
            step = next((o for o in schema if o["name"] == sub and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None)
            choices = [o["name"] for o in schema if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)]
            assert step is not None, f"/{path}: no subcommand {sub!r}; there are {choices}"
            kinds.append(step["type"])
            schema = step.get("options") or []
        nested = [o["name"] for o in schema if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)]
        assert not nested, f"/{path} is a group: name one of its subcommands {nested}"
        return schema, kinds

    def _typed_option(
        self,
        key: str,
        value: Any,
        schema: list[dict[str, Any]] | None,
        resolved: dict[str, dict[str, Any]],
        *,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
    ) -> dict[str, Any]:
        if schema is None:
            kind = _inferred_type(value)
        else:
            declared = next((o for o in schema if o["name"] == key), None)
            assert declared is not None, f"no option {key!r}; the command takes {[o['name'] for o in schema]}"
            kind = declared["type"]
        if kind == STRING:
            return {"name": key, "type": kind, "value": str(value)}
        if kind in (INTEGER, BOOLEAN, NUMBER):
            cast = {INTEGER: int, BOOLEAN: bool, NUMBER: float}[kind]
            return {"name": key, "type": kind, "value": cast(value)}
        snowflake = _snowflake_of(value)
        if kind == CHANNEL:
            resolved.setdefault("channels", {})[str(snowflake)] = self._resolved_channel(snowflake, user_id)
        elif kind == ROLE or (kind == MENTIONABLE and snowflake not in self._users):
            resolved.setdefault("roles", {})[str(snowflake)] = self._resolved_role(snowflake)
        elif kind in (USER, MENTIONABLE):
            self._resolve_user(snowflake, resolved, guild_id=guild_id, channel_id=channel_id)
        else:
            raise AssertionError(f"option {key!r} has type {kind}, which the fake does not fill in")
        return {"name": key, "type": kind, "value": str(snowflake)}

    def _resolve_user(
        self, user_id: int, resolved: dict[str, dict[str, Any]], *, guild_id: int | None, channel_id: int
    ) -> None:
        assert user_id in self._users, f"no user {user_id}"
        resolved.setdefault("users", {})[str(user_id)] = dict(self._users[user_id])
        guild = self._guilds.get(guild_id) if guild_id is not None else None
        if guild is not None and (user_id in guild.member_ids or user_id == self.bot_id):
            member = self._member_payload(guild, user_id)
            for absent in ("user", "deaf", "mute"):  # a resolved member is partial, as Discord sends it
                member.pop(absent)
            member["permissions"] = str(self.member_permissions(guild.id, user_id, channel_id))
            resolved.setdefault("members", {})[str(user_id)] = member

    def _resolved_channel(self, channel_id: int, user_id: int) -> dict[str, Any]:
        """The channel as Discord resolves it (a deleted one as it was): its fields less the overwrites, with
        the invoking member's permissions in it (0 where they are not a member)."""
        channel = self.channel_payload(channel_id)
        out = {k: v for k, v in channel.items() if k not in ("permission_overwrites", "recipients")}
        guild = self._guilds.get(int(channel["guild_id"])) if channel.get("guild_id") else None
        member = guild is not None and (user_id in guild.member_ids or user_id == guild.owner_id)
        out["permissions"] = str(self.member_permissions(guild.id, user_id, channel_id) if member else 0)
        return out

    def _resolved_role(self, role_id: int) -> dict[str, Any]:
        for guild in self._guilds.values():
            if role_id in guild.roles:
                return dict(guild.roles[role_id])
        raise AssertionError(f"no role {role_id} in any guild")
