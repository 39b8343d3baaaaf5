"""Which GGUF file the local brain loads: LOCAL_MODEL (a file, or a Hub model by name), LOCAL_MODEL_PATH, or the
bundled SmolLM2. A named model that cannot be had (unknown, gated, too big, no network) is one warning line and
the bundled model instead: the bot starts either way."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.config import Settings
from app.engines.local.finder import DEFAULT_MODEL_FILE, default_model_path
from app.engines.local.hub_models import (
    HubErrorKind,
    HubModelError,
    LocalModel,
    fetch_model,
    parse_model_name,
    quantisation_of,
)

log = logging.getLogger(__name__)


def bundled_model() -> LocalModel | None:
    path = default_model_path()
    if path is None:
        return None
    return LocalModel(
        path=path, source="bundled", quantisation=quantisation_of(DEFAULT_MODEL_FILE), size_bytes=_size(path)
    )


def model_file(path: Path) -> LocalModel:
    if not path.is_file():
        raise HubModelError(HubErrorKind.NOT_CACHED, f"no GGUF file at {path}")
    return LocalModel(path=str(path), source="file", quantisation=quantisation_of(path.name), size_bytes=_size(path))


def configured_model(
    settings: Settings, progress: type[Any] | None = None, *, offline: bool | None = None
) -> LocalModel | None:
    """The model of the settings, downloading it when needed (never when `offline`); raises HubModelError. None: no
    model configured and none bundled."""
    if settings.local_model:
        name = parse_model_name(settings.local_model)
        if name.path is not None:
            return model_file(name.path)
        token = settings.huggingface_api_key.get_secret_value() if settings.huggingface_api_key else None
        return fetch_model(name, token=token, progress=progress, offline=offline)
    if settings.local_model_path:
        return model_file(settings.local_model_path)
    return bundled_model()


def local_model_for(settings: Settings, progress: type[Any] | None = None) -> LocalModel | None:
    """`configured_model`, or the bundled model (after one warning line) when the configured one cannot be had."""
    try:
        return configured_model(settings, progress)
    except HubModelError as error:
        fallback = bundled_model()
        what = settings.local_model or settings.local_model_path
        if fallback is None:
            log.error("LOCAL_MODEL %s: %s; no bundled model to use instead", what, error)
            return None
        log.warning("LOCAL_MODEL %s: %s; using the bundled %s instead", what, error, Path(fallback.path).stem)
        return fallback


def _size(path: str) -> int:
    return Path(path).stat().st_size
