"""What server admins set, merged over the environment (channel over server over environment; a thread follows its
parent channel), who may talk where (blocked wins), bad settings refused, and how soon a change applies: at once in
the process that made it, within SETTINGS_CACHE_SECONDS in another one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.config import AllowedModel
from app.conversation.server_settings import (
    CHANNEL,
    ENVIRONMENT,
    PARENT_CHANNEL,
    SERVER,
    Access,
    Defaults,
    ServerSettings,
    SettingRefused,
    Sourced,
)
from app.storage import ServerSettingsStore, StorageUnavailable, create_engine
from tests import workers

GUILD, OTHER_GUILD = 111, 222
CHANNEL_A, CHANNEL_B, THREAD = 1001, 1002, 5001
ADMIN, MEMBER, ROLE, OTHER_ROLE = 9, 10, 20, 21
DEFAULTS = Defaults(
    persona="the environment's persona", open_channels=frozenset({CHANNEL_B}), cooldown_s=2.0, daily_tokens=None
)
IN_A, IN_THREAD = (CHANNEL_A, None), (THREAD, CHANNEL_A)  # a channel, and a thread under it
MODEL = AllowedModel("huggingface", "Qwen/Qwen2.5-7B-Instruct")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator:  # type: ignore[type-arg]
    opened = create_engine(migrated_url)
    yield opened
    await opened.dispose()


def settings_on(engine, clock: Clock | None = None, **options) -> ServerSettings:  # type: ignore[no-untyped-def]
    return ServerSettings(
        ServerSettingsStore(engine), options.pop("defaults", DEFAULTS), clock=clock or Clock(),
        allowed_models=[MODEL], **options,
    )  # fmt: skip


async def test_with_nothing_set_the_environment_applies(engine) -> None:  # type: ignore[no-untyped-def]
    effective = await settings_on(engine).effective(GUILD, CHANNEL_A)
    assert effective.persona == Sourced("the environment's persona", ENVIRONMENT)
    assert effective.open == Sourced(False, ENVIRONMENT)
    assert effective.cooldown_s == Sourced(2.0, ENVIRONMENT)
    assert effective.daily_tokens == Sourced(None, ENVIRONMENT) and effective.model == Sourced(None, ENVIRONMENT)
    assert (await settings_on(engine).effective(GUILD, CHANNEL_B)).open == Sourced(True, ENVIRONMENT)


async def test_a_channel_wins_over_its_server_and_a_thread_follows_its_parent(engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_on(engine)
    await settings.change(GUILD, None, {"persona": "the server's persona", "daily_tokens": 500}, by=ADMIN)
    await settings.change(GUILD, CHANNEL_A, {"persona": "channel A's persona", "open": True}, by=ADMIN)
    await settings.change(GUILD, THREAD, {"persona": "never used: a thread follows its parent"}, by=ADMIN)
    await settings.change(GUILD, CHANNEL_B, {"open": False}, by=ADMIN)  # closes what CHAT_CHANNEL_IDS opened

    in_a = await settings.effective(GUILD, CHANNEL_A)
    assert in_a.persona == Sourced("channel A's persona", CHANNEL) and in_a.open == Sourced(True, CHANNEL)
    assert in_a.daily_tokens == Sourced(500, SERVER)
    in_thread = await settings.effective(GUILD, THREAD, parent_id=CHANNEL_A)
    assert in_thread.persona == Sourced("channel A's persona", PARENT_CHANNEL)
    assert in_thread.open == Sourced(True, PARENT_CHANNEL)
    in_b = await settings.effective(GUILD, CHANNEL_B)
    assert in_b.persona == Sourced("the server's persona", SERVER) and in_b.open == Sourced(False, CHANNEL)

    await settings.change(GUILD, CHANNEL_A, {"persona": None}, by=ADMIN)  # "reset to default"
    assert (await settings.effective(GUILD, CHANNEL_A)).persona == Sourced("the server's persona", SERVER)
    await settings.change(GUILD, None, {"daily_tokens": 0}, by=ADMIN)  # a server's 0: no limit
    assert (await settings.effective(GUILD, CHANNEL_A)).daily_tokens == Sourced(None, SERVER)


async def test_one_servers_settings_never_apply_in_another(engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_on(engine)
    await settings.change(GUILD, None, {"persona": "server A's persona", "model": str(MODEL)}, by=ADMIN)
    await settings.change(GUILD, CHANNEL_A, {"open": True}, by=ADMIN)
    await settings.set_rule(GUILD, "user", MEMBER, "block", by=ADMIN)
    elsewhere = await settings.effective(OTHER_GUILD, CHANNEL_A)
    assert elsewhere.persona.source == ENVIRONMENT and elsewhere.open == Sourced(False, ENVIRONMENT)
    assert elsewhere.model == Sourced(None, ENVIRONMENT)
    assert await settings.access(OTHER_GUILD, CHANNEL_A, None, MEMBER) == Access(True)


@pytest.mark.parametrize(
    ("rules", "where", "roles", "expected"),
    [
        ([], IN_A, [], Access(True)),
        ([("channel", CHANNEL_A, "block")], IN_A, [], Access(False, "blocked channel")),
        ([("channel", CHANNEL_A, "block")], IN_THREAD, [], Access(False, "blocked channel")),
        ([("channel", CHANNEL_B, "allow")], IN_A, [], Access(False, "channel not allowed")),
        ([("channel", CHANNEL_A, "allow")], IN_THREAD, [], Access(True)),
        ([("user", MEMBER, "block")], IN_A, [ROLE], Access(False, "blocked user")),
        ([("role", ROLE, "block")], IN_A, [OTHER_ROLE, ROLE], Access(False, "blocked role")),
        ([("role", OTHER_ROLE, "allow")], IN_A, [ROLE], Access(False, "not allowed")),
        ([("role", ROLE, "allow")], IN_A, [ROLE], Access(True)),
        ([("user", MEMBER, "allow")], IN_A, [], Access(True)),
        # Blocked wins: an allowed role does not let a blocked user in, nor an allowed user a blocked role.
        ([("role", ROLE, "allow"), ("user", MEMBER, "block")], IN_A, [ROLE], Access(False, "blocked user")),
        ([("user", MEMBER, "allow"), ("role", ROLE, "block")], IN_A, [ROLE], Access(False, "blocked role")),
    ],
)
async def test_who_may_talk_where(engine, rules, where, roles, expected) -> None:  # type: ignore[no-untyped-def]
    settings = settings_on(engine)
    for kind, target, rule in rules:
        await settings.set_rule(GUILD, kind, target, rule, by=ADMIN)
    assert await settings.access(GUILD, where[0], where[1], MEMBER, roles) == expected


async def test_direct_messages_are_the_operators_switch(engine) -> None:  # type: ignore[no-untyped-def]
    assert await settings_on(engine).access(None, 1, None, MEMBER) == Access(True)
    closed = settings_on(engine, defaults=Defaults("persona", dm_enabled=False))
    assert await closed.access(None, 1, None, MEMBER) == Access(False, "dms off")


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        ({"persona": ""}, "visible text"),
        ({"persona": "\u200b\u200d \ufe0f\u2060"}, "visible text"),
        ({"persona": "x" * 101}, "the most is 100"),
        ({"persona": "fine", "model": "huggingface:gpt-5"}, "not among the models"),
        ({"daily_tokens": -1}, "daily limit"),
        ({"cooldown_s": 7200}, "cooldown"),
    ],
)
async def test_a_bad_setting_is_refused_with_one_sentence_and_nothing_changes(engine, changes, sentence) -> None:  # type: ignore[no-untyped-def]
    settings = settings_on(engine, persona_max_chars=100)
    await settings.change(GUILD, None, {"persona": "kept"}, by=ADMIN)
    with pytest.raises(SettingRefused, match=sentence):
        await settings.change(GUILD, None, changes, by=ADMIN)
    assert (await settings.record(GUILD)).server.persona == "kept"


async def test_a_persona_that_leaves_no_room_for_the_conversation_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_on(engine, persona_fits=lambda persona: len(persona) < 10)
    assert settings.check_persona("  short  ") == "short"
    with pytest.raises(SettingRefused, match="no room"):
        settings.check_persona("far too long for this budget")


async def test_a_change_applies_at_once_here_and_after_the_cache_time_in_another_process(engine, migrated_url) -> None:  # type: ignore[no-untyped-def]
    here_clock, there_clock = Clock(), Clock()
    here = settings_on(engine, here_clock, cache_s=5.0)
    other_engine = create_engine(migrated_url)  # another process's connections and cache
    there = settings_on(other_engine, there_clock, cache_s=5.0)
    try:
        assert (await there.effective(GUILD, CHANNEL_A)).persona.source == ENVIRONMENT
        await here.change(GUILD, None, {"persona": "new"}, by=ADMIN)
        assert (await here.effective(GUILD, CHANNEL_A)).persona.value == "new"
        there_clock.now += 4.9
        assert (await there.effective(GUILD, CHANNEL_A)).persona.source == ENVIRONMENT, "still its cached copy"
        there_clock.now += 0.2
        # Expired: this turn still gets the old copy at once, and a read in the background replaces it.
        assert (await there.effective(GUILD, CHANNEL_A)).persona.source == ENVIRONMENT
        assert await _eventually(lambda: there.effective(GUILD, CHANNEL_A)) == Sourced("new", SERVER)
    finally:
        await there.aclose()
        await other_engine.dispose()


async def _eventually(effective, within_s: float = 5.0) -> Sourced:  # type: ignore[no-untyped-def]
    """The persona in effect once it is not the environment's any more (a background read replaced the copy)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while (persona := (await effective()).persona).source == ENVIRONMENT:
        assert asyncio.get_running_loop().time() < deadline, "the background read never replaced the copy"
        await asyncio.sleep(0.01)
    return persona


async def test_settings_that_cannot_be_read_again_keep_the_last_copy_and_no_turn_waits(engine) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    settings = settings_on(engine, clock, cache_s=5.0)
    await settings.change(GUILD, None, {"persona": "kept"}, by=ADMIN)
    assert (await settings.effective(GUILD, CHANNEL_A)).persona.value == "kept"
    away = create_engine("postgresql+asyncpg://kortana@127.0.0.1:9/away", timeout_s=0.5)  # nothing listens there
    settings._store = ServerSettingsStore(away)  # the database went away
    try:
        clock.now += 6
        for _ in range(3):
            assert (await settings.effective(GUILD, CHANNEL_A)).persona.value == "kept"
            await asyncio.sleep(0.6)
        with pytest.raises(StorageUnavailable):  # a server never read has nothing to fall back on
            await settings.effective(OTHER_GUILD, CHANNEL_A)
    finally:
        await settings.aclose()
        await away.dispose()


async def test_a_model_the_operator_no_longer_allows_is_not_asked_for(engine) -> None:  # type: ignore[no-untyped-def]
    await settings_on(engine).change(GUILD, None, {"model": str(MODEL)}, by=ADMIN)
    assert (await settings_on(engine).effective(GUILD, CHANNEL_A)).model == Sourced(str(MODEL), SERVER)
    unlisted = ServerSettings(ServerSettingsStore(engine), DEFAULTS, allowed_models=[])
    assert (await unlisted.effective(GUILD, CHANNEL_A)).model == Sourced(None, ENVIRONMENT)


async def test_turns_waiting_for_a_servers_settings_share_one_read(engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_on(engine)
    reads = 0
    load = settings._store.load

    async def counted(guild_id: int):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await load(guild_id)

    settings._store.load = counted  # type: ignore[method-assign]
    await asyncio.gather(*(settings.effective(GUILD, CHANNEL_A) for _ in range(20)))
    assert reads == 1


postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgres_only
async def test_a_second_process_on_postgresql_sees_a_change_within_its_cache_time(engine, migrated_url) -> None:  # type: ignore[no-untyped-def]
    cache_s = 1.0
    other = await workers.start(
        "server_persona", migrated_url, str(GUILD), str(CHANNEL_A), str(cache_s), "from Discord", ready_within_s=60
    )
    await settings_on(engine).change(GUILD, None, {"persona": "from Discord"}, by=ADMIN)
    stdout, stderr = await asyncio.wait_for(other.communicate(workers.GO), 60)
    assert other.returncode == 0, stderr.decode()[-2000:]
    assert float(stdout.decode().strip()) <= cache_s + 0.5
