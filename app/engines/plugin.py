"""`BRAIN=package.module:attribute`: the user's own brain behind the Engine interface.

The attribute may be an engine (used as it is), an engine-like object (it has `stream`; completed with what it
lacks), a factory (a class or a no-argument callable) returning one, or an async callable taking the list of
messages and returning the answer's text.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

from app.engines.contract import ChatMessage, Engine, EngineError, ErrorKind

AnswerFunction = Callable[[list[ChatMessage]], Awaitable[str]]


class CallableBrain:
    """An async `messages -> text` function as an engine: the whole answer is one chunk."""

    def __init__(self, name: str, answer: AnswerFunction, context_window: int) -> None:
        self.name = name
        self.context_window = context_window
        self._answer = answer

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        text = await self._answer(list(messages))
        if not isinstance(text, str):
            returned = type(text).__name__
            raise EngineError(ErrorKind.UNAVAILABLE, f"plugin {self.name} returned {returned}, not text")
        yield text

    async def aclose(self) -> None:
        """Nothing to close."""


class PluginEngine:
    """An engine-like object from a plugin, completed with the attributes it may lack."""

    def __init__(self, brain: Any, default_name: str, default_context_window: int) -> None:
        self.name: str = getattr(brain, "name", default_name)
        self.context_window: int = getattr(brain, "context_window", default_context_window)
        self.sees_images: bool = getattr(brain, "sees_images", False) is True  # saying nothing: text-only
        self._brain = brain

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        return self._brain.stream(messages, max_tokens)

    async def aclose(self) -> None:
        close = getattr(self._brain, "aclose", None)
        if close is not None:
            await close()


def load_plugin_brain(spec: str, context_window: int) -> Engine:
    module_name, _, attribute_path = spec.partition(":")
    if not module_name or not attribute_path:
        raise ValueError(f"BRAIN={spec!r} is not of the form package.module:attribute")
    try:
        target: Any = _import_plugin(module_name)
    except ImportError as error:
        raise ValueError(f"BRAIN={spec!r}: cannot import {module_name!r} ({error})") from error
    for part in attribute_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"BRAIN={spec!r}: {module_name!r} has no attribute {attribute_path!r}") from None

    name = attribute_path.rsplit(".", 1)[-1]
    engine = _as_engine(target, name, context_window)
    if engine is None and callable(target):
        engine = _as_engine(target(), name, context_window)
    if engine is None:
        raise ValueError(
            f"BRAIN={spec!r} is neither an engine (with a stream method), a factory of one, "
            "nor an async callable taking the messages"
        )
    return engine


def _import_plugin(module_name: str) -> ModuleType:
    """The plugin's module, found in the working directory first (like `python -m`), else among installed ones.

    The working directory is on the import path only while the plugin is imported, and last: the plugin's own
    imports of its neighbours work, but no file there can shadow a standard or installed module — a
    `stringprep.py` in the working directory used to run on the first HTTPS call. A plugin that imports its
    neighbours lazily should be a package.
    """
    top_level = module_name.partition(".")[0]
    working_directory = os.getcwd()
    added = working_directory not in sys.path
    if added:
        sys.path.append(working_directory)
    try:
        if top_level not in sys.modules:
            spec = importlib.machinery.PathFinder.find_spec(top_level, [working_directory])
            if spec is not None and spec.loader is not None and spec.origin is not None:  # not a bare folder
                module = importlib.util.module_from_spec(spec)
                sys.modules[top_level] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[top_level]
                    raise
        return importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(working_directory)


def _as_engine(target: Any, name: str, context_window: int) -> Engine | None:
    if isinstance(target, type):
        return None  # a class is a factory, even though it has a `stream` attribute
    if isinstance(target, Engine):
        return target  # a whole engine, as it is: its optional capabilities (warm start, token counting...) too
    if hasattr(target, "stream"):
        return PluginEngine(target, name, context_window)
    if inspect.iscoroutinefunction(target) or (callable(target) and inspect.iscoroutinefunction(target.__call__)):
        return CallableBrain(name, target, context_window)
    return None
