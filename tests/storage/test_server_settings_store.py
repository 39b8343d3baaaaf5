"""What server admins set, stored on real migrated databases: settings per server and per channel, cleared back
to their fallback, access rules, a deleted channel forgotten — and nothing of one server visible in another."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.storage import AccessRule, PlaceSettings, ServerSettingsStore, create_engine

GUILD = 111
OTHER_GUILD = 222
CHANNEL = 1001
ADMIN = 9


@pytest.fixture
async def store(migrated_url: str) -> AsyncIterator[ServerSettingsStore]:
    engine = create_engine(migrated_url)
    yield ServerSettingsStore(engine)
    await engine.dispose()


async def test_a_server_with_nothing_set_has_empty_settings(store: ServerSettingsStore) -> None:
    record = await store.load(GUILD)
    assert record.server == PlaceSettings() and record.channels == {} and record.rules == ()


async def test_settings_of_the_server_and_of_a_channel_are_kept_apart(store: ServerSettingsStore) -> None:
    await store.change(GUILD, None, {"persona": "You are Captain Hook.", "daily_tokens": 5000}, by=ADMIN)
    await store.change(GUILD, CHANNEL, {"persona": "You are a pirate parrot.", "open": True}, by=ADMIN)
    await store.change(GUILD, None, {"cooldown_s": 1.5, "model": "huggingface:Qwen/Qwen2.5-7B-Instruct"}, by=ADMIN)

    record = await store.load(GUILD)
    assert record.server == PlaceSettings(
        persona="You are Captain Hook.",
        daily_tokens=5000,
        cooldown_s=1.5,
        model="huggingface:Qwen/Qwen2.5-7B-Instruct",
    )
    assert record.channels == {CHANNEL: PlaceSettings(persona="You are a pirate parrot.", open=True)}


async def test_clearing_every_setting_of_a_place_removes_it(store: ServerSettingsStore) -> None:
    await store.change(GUILD, CHANNEL, {"persona": "Arr.", "open": True}, by=ADMIN)
    await store.change(GUILD, CHANNEL, {"persona": None}, by=ADMIN)
    assert (await store.load(GUILD)).channels == {CHANNEL: PlaceSettings(open=True)}
    await store.change(GUILD, CHANNEL, {"open": None}, by=ADMIN)
    assert (await store.load(GUILD)).channels == {}


async def test_an_unknown_setting_changes_nothing(store: ServerSettingsStore) -> None:
    with pytest.raises(ValueError, match="not a setting"):
        await store.change(GUILD, None, {"persona": "kept?", "owner": 1}, by=ADMIN)
    assert (await store.load(GUILD)).server == PlaceSettings()


async def test_rules_are_set_replaced_and_removed(store: ServerSettingsStore) -> None:
    await store.set_rule(GUILD, "user", 5, "block", by=ADMIN)
    await store.set_rule(GUILD, "role", 6, "allow", by=ADMIN)
    await store.set_rule(GUILD, "channel", CHANNEL, "block", by=ADMIN)
    await store.set_rule(GUILD, "user", 5, "allow", by=ADMIN)  # replaces the block
    assert set((await store.load(GUILD)).rules) == {
        AccessRule("user", 5, "allow"),
        AccessRule("role", 6, "allow"),
        AccessRule("channel", CHANNEL, "block"),
    }
    assert await store.set_rule(GUILD, "role", 6, None, by=ADMIN)
    assert AccessRule("role", 6, "allow") not in (await store.load(GUILD)).rules
    assert not await store.set_rule(GUILD, "role", 6, None, by=ADMIN), "nothing left to remove"
    with pytest.raises(ValueError):
        await store.set_rule(GUILD, "emoji", 1, "block", by=ADMIN)


async def test_a_deleted_channel_takes_its_settings_and_rule_with_it(store: ServerSettingsStore) -> None:
    await store.change(GUILD, CHANNEL, {"open": True}, by=ADMIN)
    await store.change(GUILD, CHANNEL + 1, {"open": True}, by=ADMIN)
    await store.set_rule(GUILD, "channel", CHANNEL, "block", by=ADMIN)
    await store.forget_channel(GUILD, CHANNEL)
    record = await store.load(GUILD)
    assert record.channels == {CHANNEL + 1: PlaceSettings(open=True)} and record.rules == ()


async def test_nothing_set_in_one_server_is_visible_in_another(store: ServerSettingsStore) -> None:
    await store.change(GUILD, None, {"persona": "Server A's persona"}, by=ADMIN)
    await store.change(GUILD, CHANNEL, {"open": True}, by=ADMIN)
    await store.set_rule(GUILD, "user", 5, "block", by=ADMIN)
    other = await store.load(OTHER_GUILD)
    assert other.server == PlaceSettings() and other.channels == {} and other.rules == ()
    # The same channel id in another server (ids are global, but the rows are the server's).
    await store.forget_channel(OTHER_GUILD, CHANNEL)
    assert (await store.load(GUILD)).channels == {CHANNEL: PlaceSettings(open=True)}
