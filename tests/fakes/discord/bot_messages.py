"""What the bot posts and edits: content rules (2,000 characters, not empty; at most 10 files and
``attachment_size_limit`` bytes of them), replies, who a message pings
under ``allowed_mentions``, and the echo of the bot's own messages over the gateway."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.discord.state import MESSAGE_FLAG_EPHEMERAL, MESSAGE_FLAG_LOADING, DiscordState, FakeMessage, now_iso
from tests.fakes.discord.wire import HttpError

TOO_LONG = "Must be 2000 or fewer in length."
MAX_ATTACHMENTS = 10
UNKNOWN_REFERENCE = {"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}


class BotMessages(DiscordState):
    @staticmethod
    def _validate_content(body: dict[str, Any], files: list[dict[str, Any]], *, creating: bool) -> None:
        content = body.get("content")
        if content is not None and len(content) > 2000:
            raise HttpError(
                400,
                50035,
                "Invalid Form Body",
                {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": TOO_LONG}]}},
            )
        something = ("embeds", "sticker_ids", "components", "poll")
        if creating and not (content or files or any(body.get(key) for key in something)):
            raise HttpError(400, 50006, "Cannot send an empty message")

    def _check_files(self, files: list[dict[str, Any]]) -> None:
        if len(files) > MAX_ATTACHMENTS:
            raise HttpError(
                400, 50035, "Invalid Form Body", {"files": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
            )
        if sum(f["size"] for f in files) > self.attachment_size_limit:
            raise HttpError(413, 40005, "Request entity too large")

    def _attachments(self, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"id": str(self._snowflake()), "filename": f["filename"], "size": f["size"], "url": "", "proxy_url": ""}
            for f in files
        ]

    def _pings(self, msg: FakeMessage, allowed: dict[str, Any] | None, reply_author: str | None) -> set[str]:
        content = msg.content
        if allowed is None:
            parse, users, roles, replied = {"users", "roles", "everyone"}, set(), set(), True
        else:
            parse = set(allowed.get("parse") or [])
            users = {str(u) for u in allowed.get("users") or []}
            roles = {str(r) for r in allowed.get("roles") or []}
            replied = bool(allowed.get("replied_user", False))
        out = set()
        if "everyone" in parse:
            out |= {name for name in ("everyone", "here") if f"@{name}" in content}
        out |= {f"user:{u}" for u in re.findall(r"<@!?(\d+)>", content) if "users" in parse or u in users}
        out |= {f"role:{r}" for r in re.findall(r"<@&(\d+)>", content) if "roles" in parse or r in roles}
        if reply_author and replied:
            out.add(f"user:{reply_author}")
        return out

    def _bot_message(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: list[dict[str, Any]],
        *,
        flags: int = 0,
        extra: dict[str, Any] | None = None,
        interaction_id: int | None = None,
    ) -> FakeMessage:
        self._check_files(files)
        reference = body.get("message_reference")
        reply_to = None
        if reference and reference.get("message_id"):
            target = self._messages.get(int(reference["message_id"]))
            if target is None or target.deleted:
                if reference.get("fail_if_not_exists", True):
                    raise HttpError(
                        400,
                        50035,
                        "Invalid Form Body",
                        {"message_reference": {"_errors": [UNKNOWN_REFERENCE]}},
                    )
            else:
                reply_to = target.id
        data = self._message_payload(
            channel_id,
            self.bot_user,
            body.get("content") or "",
            reply_to=reply_to,
            reply_ping=False,
            mentions_from_content=False,
        )
        data.update(
            tts=bool(body.get("tts")),
            embeds=body.get("embeds") or [],
            components=body.get("components") or [],
            flags=flags | int(body.get("flags") or 0),
            attachments=self._attachments(files),
        )
        if body.get("nonce") is not None:
            data["nonce"] = body["nonce"]
        data.update(extra or {})
        allowed = body.get("allowed_mentions")
        msg = self._store(data, allowed, interaction_id=interaction_id)
        self._apply_mentions(msg, allowed)
        return msg

    def _apply_mentions(self, msg: FakeMessage, allowed: dict[str, Any] | None) -> None:
        ref = msg.data.get("referenced_message")
        pings = self._pings(msg, allowed, ref["author"]["id"] if ref else None)
        msg.pings |= pings
        guild_id = int(msg.data["guild_id"]) if msg.data.get("guild_id") else None
        mentioned = {p[5:] for p in pings if p.startswith("user:")}
        msg.data["mentions"] = [u for u in self._mentions(msg.content, guild_id)[0] if u["id"] in mentioned]
        replied = ref["author"]["id"] if ref else None
        if replied and f"user:{replied}" in pings and all(u["id"] != replied for u in msg.data["mentions"]):
            msg.data["mentions"].append(dict(ref["author"]))
        msg.data["mention_roles"] = [p[5:] for p in pings if p.startswith("role:")]
        msg.data["mention_everyone"] = bool(pings & {"everyone", "here"})

    def _edit(self, msg: FakeMessage, body: dict[str, Any], files: list[dict[str, Any]]) -> None:
        self._validate_content(body, files, creating=False)
        self._check_files(files)
        if files:  # the new files join the attachments the edit keeps (all of them unless it lists which)
            kept = body.get("attachments")
            old = msg.data.get("attachments") or []
            if kept is not None:
                old = [a for a in old if any(str(k.get("id")) == a["id"] for k in kept)]
            msg.data["attachments"] = old + self._attachments(files)
        for key in ("content", "embeds", "components"):
            if key in body:
                msg.data[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            msg.data["flags"] = (msg.flags & MESSAGE_FLAG_EPHEMERAL) | int(body["flags"])
        msg.data["flags"] = msg.flags & ~MESSAGE_FLAG_LOADING
        msg.data["edited_timestamp"] = now_iso()
        msg.versions.append(msg.content)
        allowed = body.get("allowed_mentions")
        msg.allowed_mentions.append(allowed)
        self._apply_mentions(msg, allowed)

    def _echo(self, event: str, msg: FakeMessage) -> None:
        if self.echo_own_messages and not msg.ephemeral:
            self._spawn(self.dispatch(event, dict(msg.data)))

