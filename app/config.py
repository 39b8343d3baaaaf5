"""Every knob of Kor'tana, read once from the environment and a `.env` file, validated at start-up.

A wrong value stops start-up with one line naming the setting (`SettingsError`). Secrets are `SecretStr`,
so they never show in a repr, a log line or an error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are Kor'tana, a Sacred AI Companion. You are friendly, helpful, and thoughtful. "
    "Keep responses conversational and warm. Use emojis naturally. Be concise but personable."
)
DEFAULT_DATABASE_FILE = "kortana.db"
# HISTORY_SCOPE: one conversation per user per server, per channel, or one for all of them.
HistoryScope = Literal["guild", "channel", "global"]

IdList = Annotated[list[int], NoDecode]
MODEL_TIERS = ("brain", "huggingface")  # the tiers a server may pick a model of (the engines' names)


@dataclass(frozen=True, slots=True)
class AllowedModel:
    """A model that servers may pick (ALLOWED_MODELS): which tier asks for it, and its name on that tier."""

    tier: str
    model: str

    def __str__(self) -> str:
        return f"{self.tier}:{self.model}"

    @classmethod
    def parse(cls, text: str) -> AllowedModel:
        """`tier:model`, split at the first colon (`brain:llama3.1:8b` is the brain's `llama3.1:8b`)."""
        tier, sep, model = text.strip().partition(":")
        if not sep or tier not in MODEL_TIERS or not model.strip():
            raise ValueError(f"{text.strip()!r} is not tier:model with a tier among {', '.join(MODEL_TIERS)}")
        return cls(tier, model.strip())


class SettingsError(Exception):
    """A setting has a wrong value; the message is one line that names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore", populate_by_name=True)

    # Discord
    discord_bot_token: SecretStr | None = None
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_guild_ids: IdList = []
    chat_channel_ids: IdList = []
    user_cooldown_seconds: float = Field(2.0, ge=0)
    shard_count: int | None = Field(None, ge=1)
    shard_ids: IdList = []
    show_engine_footer: bool = True
    show_thinking_time: bool = False  # a line "thought for N s" under the answer of a reasoning model
    # auto: ask for it, and connect without it if the developer portal has it off; on: require it; off: never.
    message_content_intent: Literal["auto", "on", "off"] = "auto"
    dm_enabled: bool = True  # the operator's switch for direct messages (servers decide their own channels)
    # How long a process may answer from a server's cached settings before reading them again (its own changes
    # apply at once); with several processes on one PostgreSQL, the most a change takes to reach the others.
    settings_cache_seconds: float = Field(5.0, ge=0, le=300)
    persona_max_chars: int = Field(2000, ge=1, le=4000)  # a server's persona; 4,000 is a Discord text input's cap
    daily_token_limit: int = Field(0, ge=0)  # each member's tokens per UTC day, in each server and in DMs; 0: none
    # How long running turns may finish at shutdown; unset = the longest a turn can take (every tier's deadline).
    shutdown_grace_seconds: float | None = Field(None, ge=0)
    # Text files attached to a message: the bytes read of each (a larger one is cut), how many, how long to wait.
    attachment_max_bytes: int = Field(200_000, ge=1000, le=10_000_000)
    attachment_max_files: int = Field(5, ge=1, le=10)
    attachment_download_seconds: float = Field(10.0, gt=0, le=60)
    # Images attached to a message, for an engine that sees (BRAIN_VISION, HF_VISION): sent as the Discord CDN URL,
    # or inline (downloaded, at most IMAGE_MAX_BYTES, sent as a data: URL); each counts IMAGE_TOKENS in the budget.
    image_delivery: Literal["url", "inline"] = "url"
    image_max_bytes: int = Field(5_000_000, ge=1000, le=20_000_000)
    image_tokens: int = Field(765, ge=0, le=10_000)

    # Storage
    # repr=False: a URL may carry a password (user:password@host).
    database_url: str = Field(f"sqlite+aiosqlite:///{DEFAULT_DATABASE_FILE}", repr=False)
    database_pool_size: int = Field(10, ge=1)
    database_timeout_seconds: float = Field(10.0, gt=0)
    database_connect_retry_seconds: float = Field(30.0, ge=0)

    # Engines
    brain: str = "auto"
    brain_url: str | None = Field(None, repr=False)
    brain_model: str = "default"
    brain_api_key: SecretStr | None = None
    brain_timeout_seconds: float = Field(20.0, gt=0)
    brain_context_window: int = Field(8192, ge=256)
    local_model_path: Path | None = None
    local_context_window: int = Field(2048, ge=256)
    huggingface_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HUGGINGFACE_API_KEY", "HF_TOKEN")
    )
    hf_model: str = "meta-llama/Llama-3.2-3B-Instruct"
    hf_base_url: str | None = Field(None, repr=False)
    hf_timeout_seconds: float = Field(25.0, gt=0)
    hf_context_window: int = Field(8192, ge=256)
    max_tokens: int = Field(400, ge=1)
    temperature: float = Field(0.8, ge=0, le=2)
    # The models servers may pick with /settings model, as tier:model (tier brain or huggingface), comma-separated.
    allowed_models: Annotated[list[AllowedModel], NoDecode] = []
    breaker_failure_threshold: int = Field(3, ge=1)
    max_concurrent_engine_calls: int = Field(8, ge=1)
    # The tier's model takes images (OpenAI-style image_url parts); never guessed from a model's name.
    brain_vision: bool = False
    hf_vision: bool = False
    # The local brain's GGUF model: a file, or owner/name[:quantisation or file name] on the Hugging Face Hub,
    # downloaded once into its cache (HF_HOME); wins over LOCAL_MODEL_PATH.
    local_model: str | None = None

    # Conversation
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history_token_budget: int = Field(3000, ge=64)
    history_scope: HistoryScope = "guild"
    tokenizer: str | None = None

    # Long-term memory
    recall_enabled: bool = True
    recall_share: float = Field(0.33, gt=0, lt=1)  # of the history budget, at most, for the summary and recalled turns
    recall_max_turns: int = Field(10, ge=1)
    summary_enabled: bool = True
    summary_every_turns: int = Field(20, ge=1)  # turns fallen out of the window since the last summary
    summary_max_tokens: int = Field(300, ge=32)
    summary_engine: str = "auto"  # auto: the strongest configured, healthy engine; or brain | huggingface

    # Operations
    # /healthz, /readyz and /metrics over HTTP on this port (unset: off), on METRICS_HOST (loopback unless set).
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("discord_guild_ids", "chat_channel_ids", "shard_ids", mode="before")
    @classmethod
    def _comma_separated_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(" ", "").split(",") if part]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _allowed_models(cls, value: object) -> object:
        if isinstance(value, str):
            return list(dict.fromkeys(AllowedModel.parse(part) for part in value.split(",") if part.strip()))
        return value

    @field_validator("shard_ids")
    @classmethod
    def _shards_of_a_known_count(cls, value: list[int], info: ValidationInfo) -> list[int]:
        # Guessing the count from the ids would let two processes run overlapping shards and answer twice.
        count = info.data.get("shard_count")
        if value and count is None:
            raise ValueError("needs SHARD_COUNT (the total number of shards across all processes)")
        if count is not None and any(not 0 <= shard < count for shard in value):
            raise ValueError(f"every shard id must be between 0 and SHARD_COUNT - 1 ({count - 1})")
        return value

    @field_validator("discord_api_base_url", "discord_gateway_url", "brain_url", "hf_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in {"http", "https", "ws", "wss"} or not rest.strip("/"):
            raise ValueError("is not a valid http(s) or ws(s) URL")
        return value.rstrip("/") if scheme.startswith("http") else value

    @field_validator("brain")
    @classmethod
    def _brain(cls, value: str) -> str:
        if value in {"auto", "local", "http", "none"}:
            return value
        module, sep, attribute = value.partition(":")
        if not sep or not module or not attribute:
            raise ValueError("must be auto, local, http, none, or package.module:attribute")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not (value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        if value.startswith("sqlite") and value.removeprefix("sqlite+aiosqlite:///") in {value, "", ":memory:"}:
            raise ValueError("must name a file: an in-memory SQLite database would forget everything at exit")
        return value


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a wrong value becomes one `SettingsError` line that names the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"Invalid setting {name}: {first['msg']}") from None
