"""The parent's handle on one worker process: start it, send it commands, read its events in order, end it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import signal
import sys
from collections import deque
from dataclasses import dataclass

from app.engines.contract import EngineError, ErrorKind
from app.engines.local import wire

log = logging.getLogger(__name__)

WORKER_MODULE = "app.engines.local.worker"


@dataclass(frozen=True, slots=True)
class Exited:
    """Not on the wire: the parent's own last event of a worker, once its stdout ended and it exited."""

    code: int | None


WorkerEvent = wire.Event | Exited


class WorkerProcess:
    """One running child process and the events it has sent, in order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._events: asyncio.Queue[WorkerEvent] = asyncio.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=5)
        # Outside the turn that happened to start the worker: its lines belong to no turn (no turn id in them).
        self._readers = [
            asyncio.create_task(self._read_events(), context=contextvars.Context()),
            asyncio.create_task(self._read_stderr(), context=contextvars.Context()),
        ]

    @classmethod
    async def spawn(cls, model_path: str, n_ctx: int, n_threads: int | None) -> WorkerProcess:
        # -P keeps the working directory off the child's import path: a file there named like a standard module
        # would run in the child. `-m` finds the worker in the installed package, the one this process runs.
        args = [sys.executable, "-P", "-m", WORKER_MODULE, model_path, "--n-ctx", str(n_ctx)]
        if n_threads:
            args += ["--n-threads", str(n_threads)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=wire.LINE_LIMIT,
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

    async def next_event(self) -> WorkerEvent:
        """The next event; `Exited` is the last."""
        return await self._events.get()

    async def send(self, command: wire.Command) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(wire.encode(command))
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

    async def _read_events(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    self._events.put_nowait(wire.decode_event(line))
                except wire.WireError:  # not logged as is: a garbled line may hold text of the conversation
                    log.warning("local worker %d wrote a line that is not an event; ignored", self.pid)
        except ValueError:  # a line over the limit: the protocol is broken, so is the worker
            log.warning("local worker %d wrote an oversized line; killing it", self.pid)
            self.proc.kill()
        self._events.put_nowait(Exited(await self.proc.wait()))

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_tail.append(line)
                log.debug("local worker %d: %s", self.pid, line)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
