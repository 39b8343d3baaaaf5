"""The child process that hosts llama.cpp: loads one GGUF model once and streams chat completions.

Started by `process.WorkerProcess` as `python -P -m app.engines.local.worker MODEL --n-ctx N`. It speaks the
messages of `wire` and imports nothing of `app` but them and the engine contract (no asyncio, no engine), so it
starts fast, and a crash here is only a dead child.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from app.engines.contract import ErrorKind
from app.engines.local import wire


class _Output:
    """The protocol channel: the original stdout, which nothing else may write to."""

    def __init__(self) -> None:
        # Native code prints to fd 1 at will; keep a private copy for the protocol and point fd 1 at stderr.
        self._stream: BinaryIO = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, event: wire.Event) -> None:
        self._stream.write(wire.encode(event))
        self._stream.flush()


class _Cancelled(Exception):
    pass


class _Cancels:
    """Request ids only grow, so "cancelled up to id N" is all the state a cancel needs."""

    def __init__(self) -> None:
        self._up_to = 0

    def cancel(self, request_id: int) -> None:
        self._up_to = max(self._up_to, request_id)

    def is_cancelled(self, request_id: int) -> bool:
        return request_id <= self._up_to


class _Counter:
    """Counts prompt and sampled tokens by wrapping `Llama.generate`: streamed chat completions report no usage."""

    def __init__(self, llm: Any) -> None:
        self.prompt_tokens = 0
        self.sampled_tokens = 0
        original = llm.generate

        def generate(tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
            self.prompt_tokens = len(tokens)
            for token in original(tokens, *args, **kwargs):
                self.sampled_tokens += 1
                yield token

        llm.generate = generate

    def reset(self) -> None:
        self.prompt_tokens = self.sampled_tokens = 0


def _read_commands(requests: queue.SimpleQueue[wire.Generate], cancels: _Cancels) -> None:
    for line in sys.stdin.buffer:
        try:
            command = wire.decode_command(line)
        except wire.WireError:
            continue
        if isinstance(command, wire.Generate):
            requests.put(command)
        else:
            cancels.cancel(command.id)
    os._exit(0)  # the parent is gone or closed us; native threads must not keep the process alive


def _generate(llm: Any, counter: _Counter, request: wire.Generate, cancels: _Cancels, out: _Output) -> None:
    request_id = request.id
    counter.reset()
    started = time.perf_counter()
    first_token_at: float | None = None
    finish: wire.Finish = "stop"
    kwargs: dict[str, Any] = {
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "repeat_penalty": request.repeat_penalty,
        "stream": True,
    }
    if request.seed is not None:
        kwargs["seed"] = request.seed
    try:
        if cancels.is_cancelled(request_id):
            raise _Cancelled
        chunks = llm.create_chat_completion(**kwargs)
        try:
            for chunk in chunks:
                if cancels.is_cancelled(request_id):
                    raise _Cancelled
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    first_token_at = first_token_at or time.perf_counter()
                    out.send(wire.Token(request_id, text))
                finish = choice.get("finish_reason") or finish
        finally:
            chunks.close()
    except _Cancelled:
        finish = "cancelled"
    except ValueError as exc:
        kind = ErrorKind.CONTEXT_TOO_LONG if "context window" in str(exc) else ErrorKind.BAD_REQUEST
        out.send(wire.Failed(request_id, kind, str(exc)[: wire.MESSAGE_LIMIT]))
        return
    except Exception as exc:  # noqa: BLE001 - any library failure is this request's failure
        message = f"{type(exc).__name__}: {exc}"[: wire.MESSAGE_LIMIT]
        out.send(wire.Failed(request_id, ErrorKind.UNAVAILABLE, message))
        return
    decode_s = time.perf_counter() - first_token_at if first_token_at is not None else 0.0
    tokens = counter.sampled_tokens
    out.send(
        wire.Done(
            id=request_id,
            finish=finish,
            prompt_tokens=counter.prompt_tokens,
            completion_tokens=tokens,
            first_token_s=None if first_token_at is None else first_token_at - started,
            tokens_per_s=(tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None,
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kor'tana local model worker (speaks app.engines.local.wire)")
    parser.add_argument("model_path")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-threads", type=int, default=None)
    args = parser.parse_args(argv)

    # Ctrl-C in a terminal reaches the whole process group; the parent decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = _Output()
    started = time.perf_counter()
    try:
        from llama_cpp import Llama

        llm = Llama(model_path=args.model_path, n_ctx=args.n_ctx, n_threads=args.n_threads, verbose=False)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which turns it into an engine failure
        out.send(wire.Fatal(f"{type(exc).__name__}: {exc}"[: wire.MESSAGE_LIMIT]))
        sys.exit(1)

    requests: queue.SimpleQueue[wire.Generate] = queue.SimpleQueue()
    cancels = _Cancels()
    threading.Thread(target=_read_commands, args=(requests, cancels), daemon=True).start()
    out.send(wire.Ready(os.getpid(), time.perf_counter() - started))
    counter = _Counter(llm)
    while True:
        _generate(llm, counter, requests.get(), cancels, out)


if __name__ == "__main__":
    main()
