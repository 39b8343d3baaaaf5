"""A local model named by the user: a GGUF file on disk, or `repo_id[:quantisation or file name]` on the Hugging Face
Hub, downloaded once into the Hub's own cache by huggingface_hub (resumable, size and ETag checked by the library).

Everything here blocks (file listing, downloads): callers run it in a thread. huggingface_hub reads HF_ENDPOINT,
HF_HOME and HF_HUB_OFFLINE when it is imported; they are read here at each call instead, so a process (or a test)
that sets them later is obeyed too.
"""

from __future__ import annotations

import enum
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

# A file of a split model: `name-00001-of-00003.gguf`; llama.cpp loads the first and finds the others beside it.
SHARD = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# The quantisation in a GGUF file name (Q4_K_M, IQ3_XS, Q8_0, F16, BF16 ...), as llama.cpp's tools name them.
QUANT_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32)(?=[.-]|$)", re.IGNORECASE)
PREFERRED_QUANT = "Q4_K_M"  # llama.cpp's usual recommendation of size against quality, when the repo has several
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# A model needs its weights in memory plus room for the context and the rest of the bot.
MEMORY_HEADROOM = 1.2


class HubErrorKind(enum.Enum):
    BAD_NAME = "bad name"
    UNKNOWN_REPO = "unknown repo"
    GATED = "gated"
    NO_MATCH = "no matching file"
    TOO_BIG = "not enough memory"
    NETWORK = "network"
    NOT_CACHED = "not cached"


class HubModelError(Exception):
    """Why a named model cannot be used; the message is one line for the user."""

    def __init__(self, kind: HubErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ModelName:
    """LOCAL_MODEL parsed: a path on disk, or a Hub repo with an optional quantisation tag or file name."""

    path: Path | None = None
    repo_id: str | None = None
    selector: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"{self.repo_id}:{self.selector}" if self.selector else str(self.repo_id)


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file ready to load, and where it came from (for /ping and `kortana models list`)."""

    path: str
    source: str  # "bundled", "file", or "hub <repo_id>"
    quantisation: str | None
    size_bytes: int
    repo_id: str | None = None
    files: tuple[str, ...] = ()


def parse_model_name(text: str) -> ModelName:
    text = text.strip()
    if not text:
        raise HubModelError(HubErrorKind.BAD_NAME, "LOCAL_MODEL is empty")
    candidate = Path(text).expanduser()
    looks_like_path = text.startswith(("/", ".", "~")) or (text.lower().endswith(".gguf") and ":" not in text)
    if looks_like_path or candidate.is_file():
        return ModelName(path=candidate)
    repo_id, _, selector = text.partition(":")
    if not REPO_ID.match(repo_id) or not _valid_on_the_hub(repo_id):
        raise HubModelError(
            HubErrorKind.BAD_NAME,
            f"LOCAL_MODEL {text!r} is neither a GGUF file nor owner/name[:quantisation] of a Hugging Face repo",
        )
    return ModelName(repo_id=repo_id, selector=selector.strip() or None)


def _valid_on_the_hub(repo_id: str) -> bool:
    """huggingface_hub's own rules for a repo id (no '--' or '..', no '.git' end, at most 96 characters): a name
    they refuse would fail every call with a ValueError, not a Hub error."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def quantisation_of(file_name: str) -> str | None:
    stem = SHARD.sub(r"\g<stem>.gguf", PurePosixPath(file_name).name)
    found = QUANT_IN_NAME.findall(stem)
    return found[-1].upper() if found else None


def choose_files(repo_id: str, files: Sequence[str], selector: str | None) -> list[str]:
    """The file (or the shards, first one first) of `repo_id` that `selector` names, among the repo's `files`."""
    models = _gguf_models(files)
    if not models:
        raise HubModelError(HubErrorKind.NO_MATCH, f"{repo_id} has no .gguf file")
    if selector is None:
        matching = (
            [name for name in models if quantisation_of(name) == PREFERRED_QUANT] if len(models) > 1 else list(models)
        )
        if not matching:
            raise HubModelError(
                HubErrorKind.NO_MATCH,
                f"{repo_id} has several GGUF files; name one as {repo_id}:QUANT (choices: {_choices(models)})",
            )
    elif selector.lower().endswith(".gguf"):
        wanted = selector.lower()
        matching = [
            name
            for name, shards in models.items()
            if any(file.lower() == wanted or PurePosixPath(file).name.lower() == wanted for file in shards)
        ]
    else:
        tag = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(selector)}(?![A-Za-z0-9_])", re.IGNORECASE)
        matching = [name for name in models if tag.search(PurePosixPath(name).name)]
    if not matching:
        raise HubModelError(
            HubErrorKind.NO_MATCH, f"no file of {repo_id} matches {selector!r} (choices: {_choices(models)})"
        )
    chosen = matching[0]
    if len(matching) > 1:
        log.warning(
            "%s: %d files match %r (%s); using %s", repo_id, len(matching), selector, ", ".join(matching), chosen
        )
    return models[chosen]


def _gguf_models(files: Sequence[str]) -> dict[str, list[str]]:
    """The repo's models by display name: a plain .gguf file, or a split model by its first shard (all shards).
    Multimodal projectors (mmproj) are not chat models on their own."""
    models: dict[str, list[str]] = {}
    for file in sorted(files):
        name = PurePosixPath(file).name
        if not name.lower().endswith(".gguf") or name.lower().startswith("mmproj"):
            continue
        shard = SHARD.match(file)
        if shard is None:
            models[file] = [file]
        else:
            key = f"{shard['stem']}-00001-of-{shard['count']}.gguf"
            models.setdefault(key, []).append(file)
    complete = {}
    for key, shards in models.items():
        shard = SHARD.match(key)
        if shard is not None and len(shards) != int(shard["count"]):
            continue  # a split model with shards missing from the repo cannot be loaded
        complete[key] = sorted(shards)
    return complete


def _choices(models: dict[str, list[str]]) -> str:
    return ", ".join(
        f"{quantisation_of(name) or PurePosixPath(name).name} ({PurePosixPath(name).name})" for name in models
    )


# -- the Hub --------------------------------------------------------------------------------------------------


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def available_memory_bytes() -> int | None:
    """MemAvailable of the kernel (what can be used without swapping), or None where it is not known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fetch_model(
    name: ModelName,
    *,
    token: str | None = None,
    progress: type[Any] | None = None,
    memory_bytes: Callable[[], int | None] = available_memory_bytes,
    offline: bool | None = None,
) -> LocalModel:
    """The GGUF file(s) of a Hub model name in the local cache, downloaded first when they are not there.

    Offline (`offline`, by default HF_HUB_OFFLINE=1), or when the Hub cannot be reached, the cached files of the
    repo are used. Raises HubModelError with one line for the user.
    """
    assert name.repo_id is not None
    repo_id = name.repo_id
    cache_dir = hub_cache_dir()
    why_offline = None if offline else "HF_HUB_OFFLINE is set" if hub_offline() else None
    offline = offline or why_offline is not None
    sizes: dict[str, int | None] = {}
    if not offline:
        try:
            sizes = _list_repo(repo_id, token)
        except HubModelError as error:
            if error.kind is not HubErrorKind.NETWORK:
                raise
            log.warning("%s; looking for %s in the local cache", error, repo_id)
            offline, why_offline = True, "the Hub cannot be reached"
    if offline:
        cached = cached_repo_files(repo_id, cache_dir)
        if not cached:
            because = f" and {why_offline}" if why_offline else ""
            raise HubModelError(HubErrorKind.NOT_CACHED, f"{repo_id} is not in the local cache{because}")
        sizes = dict(cached)
    files = choose_files(repo_id, list(sizes), name.selector)
    total = sum(sizes.get(file) or 0 for file in files)
    memory = memory_bytes()
    if memory is not None and total * MEMORY_HEADROOM > memory:
        raise HubModelError(
            HubErrorKind.TOO_BIG,
            f"{repo_id} {PurePosixPath(files[0]).name} needs about {_gb(total * MEMORY_HEADROOM)} of memory, "
            f"{_gb(memory)} is available",
        )
    paths = [_download(repo_id, file, token, cache_dir, offline, progress) for file in files]
    return LocalModel(
        path=paths[0],
        source=f"hub {repo_id}",
        quantisation=quantisation_of(files[0]),
        size_bytes=sum(Path(path).stat().st_size for path in paths),
        repo_id=repo_id,
        files=tuple(files),
    )


def _list_repo(repo_id: str, token: str | None) -> dict[str, int | None]:
    from huggingface_hub import HfApi

    with _as_hub_errors(repo_id, token, repo_id, "listing"):
        info = HfApi(endpoint=hub_endpoint(), token=token).model_info(repo_id, files_metadata=True, timeout=20)
    return {sibling.rfilename: sibling.size for sibling in info.siblings or []}


def _download(
    repo_id: str, file: str, token: str | None, cache_dir: Path, offline: bool, progress: type[Any] | None
) -> str:
    from huggingface_hub import hf_hub_download

    with _as_hub_errors(repo_id, token, f"{repo_id} {file}", "download"):
        return str(
            hf_hub_download(
                repo_id,
                file,
                cache_dir=cache_dir,
                token=token,
                endpoint=hub_endpoint(),
                local_files_only=offline,
                tqdm_class=progress,
            )
        )


@contextmanager
def _as_hub_errors(repo_id: str, token: str | None, subject: str, step: str) -> Iterator[None]:
    """huggingface_hub's and the network's errors during `step` (of `subject`) as one HubModelError line each."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        yield
    except GatedRepoError:
        raise _gated(repo_id, token) from None
    except RepositoryNotFoundError:
        raise HubModelError(HubErrorKind.UNKNOWN_REPO, f"no model {repo_id} on the Hugging Face Hub") from None
    except LocalEntryNotFoundError:
        raise HubModelError(HubErrorKind.NOT_CACHED, f"{subject} is not in the local cache") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise HubModelError(HubErrorKind.NETWORK, f"the Hub answered {status} for {subject}") from None
    except (httpx2.HTTPError, OSError) as error:
        raise HubModelError(
            HubErrorKind.NETWORK, f"the {step} of {subject} failed: no answer from the Hub ({type(error).__name__})"
        ) from None


def _gated(repo_id: str, token: str | None) -> HubModelError:
    if token:
        return HubModelError(
            HubErrorKind.GATED, f"{repo_id} is gated: accept its licence on the Hub with the account of HF_TOKEN"
        )
    return HubModelError(HubErrorKind.GATED, f"{repo_id} is gated: set HF_TOKEN (and accept its licence on the Hub)")


def cached_repo_files(repo_id: str, cache_dir: Path | None = None) -> dict[str, int]:
    """The files of `repo_id` in the Hub cache (newest snapshot that has each), with their sizes."""
    folder = (cache_dir or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    if not folder.is_dir():
        return {}
    found: dict[str, int] = {}
    for snapshot in sorted(folder.iterdir(), key=lambda path: path.stat().st_mtime, reverse=True):
        for file in snapshot.rglob("*"):
            if file.is_file():  # a link into blobs/ that resolves: a complete download
                found.setdefault(file.relative_to(snapshot).as_posix(), file.stat().st_size)
    return found


@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    file: str
    size_bytes: int
    quantisation: str | None


def cached_models(cache_dir: Path | None = None) -> list[CachedModel]:
    """Every GGUF chat model in the Hub cache (a split model once, with the size of all its shards)."""
    root = cache_dir or hub_cache_dir()
    if not root.is_dir():
        return []
    models = []
    for folder in sorted(root.glob("models--*--*")):
        repo_id = folder.name.removeprefix("models--").replace("--", "/", 1)
        files = cached_repo_files(repo_id, root)
        for name, shards in _gguf_models(list(files)).items():
            models.append(CachedModel(repo_id, name, sum(files[file] for file in shards), quantisation_of(name)))
    return models


def _gb(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.0f} MB"


def describe_size(size: float) -> str:
    return _gb(size)
