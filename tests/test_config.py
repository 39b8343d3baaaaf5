"""Settings: names from the environment, the HF_TOKEN alias, lists, and secrets that never show."""

from __future__ import annotations

import pytest

from app.config import SettingsError, load_settings

SECRET = "hf_" + "s" * 34


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # a developer's own .env must not leak into these tests
    for name in ("HF_TOKEN", "HUGGINGFACE_API_KEY", "DISCORD_BOT_TOKEN", "BRAIN", "CHAT_CHANNEL_IDS",
                 "SHARD_COUNT", "SHARD_IDS"):
        monkeypatch.delenv(name, raising=False)


def test_hf_token_is_an_alias_of_huggingface_api_key(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert load_settings().huggingface_api_key.get_secret_value() == SECRET


def test_secrets_never_appear_in_repr_or_str(monkeypatch) -> None:
    monkeypatch.setenv("HUGGINGFACE_API_KEY", SECRET)
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "discord-token-value")
    settings = load_settings()
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert SECRET not in text and "discord-token-value" not in text


def test_id_lists_are_comma_separated(monkeypatch) -> None:
    monkeypatch.setenv("CHAT_CHANNEL_IDS", "123, 456,789")
    assert load_settings().chat_channel_ids == [123, 456, 789]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HISTORY_TOKEN_BUDGET", "-1"),
        ("MAX_TOKENS", "zero"),
        ("HF_BASE_URL", "localhost:8080"),
        ("HISTORY_SCOPE", "server"),
        ("BRAIN", "mymodule"),
        ("DATABASE_URL", "mysql://nope"),
        ("DISCORD_GUILD_IDS", "12,abc"),
    ],
)
def test_a_wrong_value_names_the_setting(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert name in message and "\n" not in message and SECRET not in message


def test_env_example_documents_every_setting_and_loads(monkeypatch, tmp_path) -> None:
    from pathlib import Path

    from app.config import Settings

    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    documented = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")}
    assert {name.upper() for name in Settings.model_fields} <= documented
    (tmp_path / ".env").write_text(example)
    assert load_settings().history_token_budget == 3000


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"SHARD_IDS": "0,1"}, "SHARD_IDS"),
        ({"SHARD_IDS": "2,4", "SHARD_COUNT": "4"}, "SHARD_IDS"),
        ({"DATABASE_URL": "sqlite+aiosqlite:///:memory:"}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite+aiosqlite://"}, "DATABASE_URL"),  # no file: SQLite's in-memory database
        ({"DATABASE_URL": "sqlite+aiosqlite:///"}, "DATABASE_URL"),
    ],
)
def test_settings_that_would_misbehave_later_are_refused_at_start_up(monkeypatch, values, named) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert named in str(raised.value)


def test_shards_split_between_processes(monkeypatch) -> None:
    monkeypatch.setenv("SHARD_COUNT", "4")
    monkeypatch.setenv("SHARD_IDS", "2,3")
    settings = load_settings()
    assert (settings.shard_count, settings.shard_ids) == (4, [2, 3])
