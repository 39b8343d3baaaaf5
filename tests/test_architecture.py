"""The house keeps its shape: no import cycles inside `app/`, and every import points down the layers.

front ends (bot, terminal; the benchmarks; the command line on top) → conversation → storage | engines → config

Engines never import storage and storage never imports engines. An import inside a function counts like one at the
top of the module: hiding an edge from the interpreter does not remove it from the design. Imports are absolute
(ruff's TID252 says so), so reading them is enough. Only the benchmarks may reach into the test kit (they drive its
fakes). Every module must also import on its own in a fresh interpreter, as aiohttp's own test of circular imports
does.
"""

from __future__ import annotations

import ast
import asyncio
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import app

APP_DIR = Path(app.__file__).parent

# Highest first. A module may import modules of its own layer and of the layers below it; within a layer, the
# parts listed together in one group must not import each other.
LAYERS: list[list[str]] = [
    ["app.__main__"],
    ["app.cli"],
    ["app.bench"],  # the benchmarks drive the front ends
    ["app.bot", "app.terminal"],
    ["app.conversation"],
    ["app.storage", "app.engines"],
    ["app.config", "app.safe_text", "app"],  # "app" is the package's own __init__ only
]


def module_name(path: Path) -> str:
    parts = path.relative_to(APP_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def app_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(APP_DIR.rglob("*.py"))}


def top_level_imports(path: Path) -> set[str]:
    """The top-level packages `path` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def imports_of(path: Path, known: Iterable[str]) -> set[str]:
    """The app modules `path` imports, wherever the import statement is; `from package import name` is an import of
    the submodule `package.name` when there is one."""
    known = set(known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "app")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "app":
                continue
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules or {node.module})
    return found & known


def import_graph() -> dict[str, set[str]]:
    modules = app_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def place_of(module: str, layers: list[list[str]] = LAYERS) -> tuple[int, str]:
    """(layer number, counted from the top; the part of the layer) of a module: the longest matching prefix."""
    best: tuple[int, str] | None = None
    for number, layer in enumerate(layers):
        for part in layer:
            inside = module == part or (part != "app" and module.startswith(part + "."))
            if inside and (best is None or len(part) > len(best[1])):
                best = (number, part)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")
    return best


def wrong_way_imports(graph: Mapping[str, set[str]], layers: list[list[str]] = LAYERS) -> list[str]:
    wrong = []
    for module, targets in sorted(graph.items()):
        layer, part = place_of(module, layers)
        for target in sorted(targets):
            target_layer, target_part = place_of(target, layers)
            if target_layer < layer:
                wrong.append(f"{module} imports {target}, a layer above it")
            elif target_layer == layer and target_part != part:
                wrong.append(f"{module} imports {target}: {part} and {target_part} must not import each other")
    return wrong


def test_no_module_of_app_is_part_of_an_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_every_import_points_down_the_layers() -> None:
    assert wrong_way_imports(import_graph()) == []


def test_only_the_benchmarks_import_the_test_kit() -> None:
    importers = {name for name, path in app_modules().items() if "tests" in top_level_imports(path)}
    assert {name for name in importers if place_of(name)[1] != "app.bench"} == set()


def test_the_checks_find_a_cycle_and_a_wrong_way_import() -> None:
    # The rules above are only worth something if they can fail.
    graph = {
        "app.storage.history": {"app.storage.sqlite_history"},
        "app.storage.sqlite_history": {"app.storage.history", "app.engines.contract"},
        "app.engines.contract": {"app.conversation.events"},
        "app.conversation.events": {"app.config"},
        "app.config": set(),
    }
    assert cycles(graph) == [["app.storage.history", "app.storage.sqlite_history"]]
    assert wrong_way_imports(graph) == [
        "app.engines.contract imports app.conversation.events, a layer above it",
        "app.storage.sqlite_history imports app.engines.contract: app.storage and app.engines must not import each "
        "other",
    ]


def test_function_level_imports_count(tmp_path: Path) -> None:
    module = tmp_path / "hidden.py"
    module.write_text("def later():\n    from app.storage import history\n    import app.engines.chain\n")
    assert imports_of(module, ["app.storage", "app.storage.history", "app.engines.chain"]) == {
        "app.storage.history",
        "app.engines.chain",
    }


async def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    # The project's folder on the path, so the package under test is this one whatever is installed.
    environment = {**os.environ, "PYTHONPATH": str(APP_DIR.parent)}
    slots = asyncio.Semaphore(os.cpu_count() or 2)

    async def import_alone(module: str) -> str | None:
        async with slots:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                f"import {module}",
                env=environment,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(child.communicate(), timeout=120)  # a busy machine: it is no benchmark
        if child.returncode == 0:
            return None
        return f"{module}: {stderr.decode(errors='replace').strip().splitlines()[-1]}"

    modules = [name for name in app_modules() if name != "app.__main__"]  # __main__ runs the command line
    failures = [failure for failure in await asyncio.gather(*map(import_alone, modules)) if failure]
    assert failures == []
