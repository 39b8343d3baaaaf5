"""The local GGUF model as an engine: llama.cpp in a worker process, so a native crash or hang costs one turn,
not the bot.

One worker per engine, loaded once and kept warm; turns take it one at a time (`TurnQueue`, BUSY when full). A
dead or hung worker fails its turn and the next turn starts a fresh one. An answer ends with its `TokenUsage`:
the worker counts the prompt's and the answer's tokens as the model read and wrote them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import itertools
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engines.contract import ChatMessage, EngineError, ErrorKind, TokenUsage
from app.engines.local import wire
from app.engines.local.finder import default_model_path
from app.engines.local.process import Exited, WorkerEvent, WorkerProcess, describe_exit
from app.engines.local.tokenizer import GgufTokenizer
from app.engines.local.turn_queue import TurnQueue

log = logging.getLogger(__name__)

# Small models loop on a phrase without a penalty on repeated tokens (seen with SmolLM2 at the default 1.0).
REPEAT_PENALTY = 1.15


class LocalState(enum.Enum):
    NOT_STARTED = "not started"
    LOADING = "loading"
    READY = "ready"
    GENERATING = "generating"
    CRASHED = "crashed"


@dataclass(frozen=True)
class TurnStats:
    """What the worker reported about the last finished (or cancelled) generation."""

    finish: wire.Finish
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None
    tokens_per_s: float | None


class LocalModelEngine:
    """A GGUF chat model run by llama.cpp in a child process; streams token by token.

    Besides `Engine` it is `WarmStart`, `Reserving`, `ReportsStatus` and `CountsTokens` (app.engines.contract).
    """

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
        model_source: str | None = None,
        quantisation: str | None = None,
    ) -> None:
        self.model_path = model_path or default_model_path()
        self.model_source = model_source  # for status: "bundled", "file", "hub owner/name"
        self.quantisation = quantisation
        self.context_window = n_ctx
        self.temperature = temperature
        self.n_threads = n_threads
        self.seed = seed
        self.load_timeout_s = load_timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.last_stats: TurnStats | None = None
        self._state = LocalState.NOT_STARTED
        self._worker: WorkerProcess | None = None
        self._loading: asyncio.Task[WorkerProcess] | None = None
        self._turns = TurnQueue(queue_size)  # turns allowed to wait while one generates
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()
        self._tokenizer = GgufTokenizer(self.model_path) if self.model_path else None

    # -- Engine ---------------------------------------------------------------------------------------

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str | TokenUsage]:
        await self._turns.take_turn()
        handed_off = False  # whether a background task now owns the turn
        try:
            worker = await self._ensure_worker()
            request = wire.Generate(
                id=next(self._ids),
                # llama-cpp-python parses special tokens in the rendered prompt: the conversation layer defuses
                # the ones a user typed, for every engine (window.py).
                messages=list(messages),
                max_tokens=max_tokens,
                temperature=self.temperature,
                repeat_penalty=REPEAT_PENALTY,
                seed=self.seed,
            )
            got_token = False
            settled = False  # the worker finished this request, or is dead
            try:
                await worker.send(request)
                self._state = LocalState.GENERATING
                while True:
                    match await self._next_event(worker, got_token):
                        case wire.Token(id=request.id, text=text):
                            got_token = True
                            yield text
                        case wire.Done(id=request.id) as done:
                            settled = True
                            self._finish_request(done)
                            yield TokenUsage(done.prompt_tokens, done.completion_tokens)
                            return
                        case wire.Failed(id=request.id) as failed:
                            settled = True
                            self._state = LocalState.READY
                            raise _worker_error(failed)
            except EngineError:
                settled = True
                raise
            finally:
                if not settled:
                    # Cancelled, or the consumer stopped reading: stop the generation between two tokens and
                    # keep the next turn out until the worker is idle, without delaying this cancellation.
                    handed_off = True
                    self._spawn_background(self._stop_generation(worker, request, got_token))
        finally:
            if not handed_off:
                self._turns.leave()

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
        self._state = LocalState.NOT_STARTED

    # -- WarmStart, Reserving, CountsTokens, ReportsStatus --------------------------------------------

    async def start(self) -> None:
        """Load the model (and the tokenizer) now instead of at the first turn."""
        if self._tokenizer is not None:
            await asyncio.to_thread(self._tokenizer.load)
            trained = await asyncio.to_thread(self._tokenizer.context_length)
            if trained is not None and trained < self.context_window:
                # More context than the model was trained for only degrades it: LOCAL_CONTEXT_WINDOW is a cap.
                log.info(
                    "local model's context is %d tokens, less than LOCAL_CONTEXT_WINDOW %d",
                    trained,
                    self.context_window,
                )
                self.context_window = trained
        await self._ensure_worker()

    def reserved(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait for the model now; a `stream` in this task then starts at once (the chain starts the answer's
        deadline only once the model is ours). Raises BUSY at once when the queue is full."""
        return self._turns.reserved()

    def count_tokens(self, text: str) -> int:
        """Exact token count of `text` with this model's own tokenizer (loads it on first use, ~60 ms)."""
        if self._tokenizer is None:
            raise EngineError(ErrorKind.UNAVAILABLE, "no local model file")
        return self._tokenizer.count(text)

    def status_details(self) -> dict[str, Any]:
        path = Path(self.model_path) if self.model_path else None
        worker = self._worker
        state = self._state
        if worker is not None and not worker.alive and state in (LocalState.READY, LocalState.GENERATING):
            state = LocalState.CRASHED
        return {
            "model": path.stem if path else None,
            "file": path.name if path else None,
            "source": self.model_source,
            "quantisation": self.quantisation,
            "state": state.value,
            "tokens_per_s": self.last_stats.tokens_per_s if self.last_stats else None,
            "pid": worker.pid if worker is not None and worker.alive else None,
            "n_ctx": self.context_window,
            "queued": self._turns.waiting,
        }

    # -- internals ------------------------------------------------------------------------------------

    async def _ensure_worker(self) -> WorkerProcess:
        if self._worker is not None and self._worker.alive:
            return self._worker
        if self._loading is None or self._loading.done():
            # The load serves every turn that waits for it: its lines carry none's turn id.
            self._loading = asyncio.get_running_loop().create_task(self._load_worker(), context=contextvars.Context())
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

    async def _load_worker(self) -> WorkerProcess:
        if self._worker is not None:
            log.warning("restarting the local worker (pid %d had died)", self._worker.pid)
            await self._worker.stop(grace_s=0)
            self._worker = None
        if not self.model_path or not Path(self.model_path).is_file():  # noqa: ASYNC240 - one stat, then a spawn
            raise EngineError(ErrorKind.UNAVAILABLE, f"local model file not found: {self.model_path}")
        self._state = LocalState.LOADING
        worker = await WorkerProcess.spawn(self.model_path, self.context_window, self.n_threads)
        try:
            event = await _next_event_within(worker, self.load_timeout_s)
        except BaseException:
            await worker.stop(grace_s=0)
            self._state = LocalState.NOT_STARTED
            raise
        if not isinstance(event, wire.Ready):
            await worker.stop(grace_s=0)
            self._state = LocalState.CRASHED
            if event is None:
                raise EngineError(ErrorKind.TIMEOUT, f"local model not loaded within {self.load_timeout_s:g} s")
            reason = _why_not_ready(event)
            log.warning("local model failed to load: %s %s", reason, list(worker.stderr_tail))
            raise EngineError(ErrorKind.UNAVAILABLE, f"local model failed to load: {reason}")
        log.info("local model %s ready in %.2f s (pid %d)", Path(self.model_path).name, event.load_s, worker.pid)
        self._worker = worker
        self._state = LocalState.READY
        return worker

    async def _next_event(self, worker: WorkerProcess, got_token: bool) -> wire.Event:
        timeout = self.stall_timeout_s if got_token else self.first_token_timeout_s
        event = await _next_event_within(worker, timeout)
        if event is None:
            log.warning("local worker %d sent nothing for %g s; killing it", worker.pid, timeout)
            await worker.kill()
            self._state = LocalState.CRASHED
            raise EngineError(ErrorKind.TIMEOUT, f"local model sent no token for {timeout:g} s")
        if isinstance(event, Exited):
            self._state = LocalState.CRASHED
            cause = describe_exit(event.code)
            log.warning("local worker %d died (%s); last stderr: %s", worker.pid, cause, list(worker.stderr_tail))
            raise EngineError(ErrorKind.UNAVAILABLE, f"local worker died ({cause})")
        return event

    async def _stop_generation(self, worker: WorkerProcess, request: wire.Generate, got_token: bool) -> None:
        """Cancel `request` in the worker and pass the turn on once the worker is idle."""
        try:
            with contextlib.suppress(EngineError):
                await worker.send(wire.Cancel(request.id))
            # The cancel is seen between two tokens, or after the prompt is read when none came yet.
            grace = self.stall_timeout_s if got_token else self.first_token_timeout_s
            try:
                async with asyncio.timeout(grace):
                    while True:
                        match await worker.next_event():
                            case Exited():
                                self._state = LocalState.CRASHED
                                return
                            case wire.Done(id=request.id) as done:
                                self._finish_request(done)
                                return
                            case wire.Failed(id=request.id):
                                self._state = LocalState.READY
                                return
            except TimeoutError:
                log.warning("local worker %d ignored a cancel for %g s; killing it", worker.pid, grace)
                await worker.kill()
                self._state = LocalState.CRASHED
        finally:
            self._turns.leave()

    def _finish_request(self, done: wire.Done) -> None:
        self.last_stats = TurnStats(
            finish=done.finish,
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
            first_token_s=done.first_token_s,
            tokens_per_s=done.tokens_per_s,
        )
        self._state = LocalState.READY

    def _spawn_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())  # no turn's
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _next_event_within(worker: WorkerProcess, seconds: float) -> WorkerEvent | None:
    """The worker's next event, or None when none came within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await worker.next_event()
    except TimeoutError:
        return None


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # A load nobody awaits any more (its turn was cancelled) must not warn "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _why_not_ready(event: WorkerEvent) -> str:
    if isinstance(event, wire.Fatal) and event.message:
        return event.message
    if isinstance(event, Exited):
        return describe_exit(event.code)
    return f"the worker sent {type(event).__name__} before it was ready"


def _worker_error(failed: wire.Failed) -> EngineError:
    return EngineError(failed.kind, f"local model: {failed.message}")
