"""Imports only go down the layers (docs/architecture.md), and no import hides a cycle.

The layers, top to bottom: cli/commands/api -> eval/hub -> train -> tasks ->
modalities/backbones/heads/losses/weights -> data/recipe/registry. The imports are read
from the source with ``ast`` (module level and inside functions alike), so a function-local
import cannot hide an upward edge. Function-local imports are allowed only in the modules of
``LAZY``, where they keep ``mmssl --help`` and ``import mmssl`` free of torch; they too go
down, except the package's own lazy hook for the API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmssl"

#: module (or package) -> layer; the longest matching prefix decides ("mmssl" matches itself only).
LAYERS = {
    "mmssl": 0,  # the package itself: __version__ and the lazy API hook
    "mmssl.errors": 0,
    "mmssl.registry": 0,
    "mmssl.recipe": 0,
    "mmssl.progress": 0,
    "mmssl.data": 0,
    "mmssl.augment": 1,
    "mmssl.modalities": 1,
    "mmssl.backbones": 1,
    "mmssl.heads": 1,
    "mmssl.losses": 1,
    "mmssl.weights": 1,
    "mmssl.tasks": 2,
    "mmssl.train": 3,
    "mmssl.eval": 4,
    "mmssl.hub": 4,
    "mmssl.api": 5,
    "mmssl.cli": 5,
    "mmssl.__main__": 5,
    "mmssl.commands": 5,
}

#: modules whose function-local imports exist only for start-up speed, and why.
LAZY = {
    "mmssl": "`import mmssl` loads the API (and torch) on first use (PEP 562)",
    "mmssl.api": "`import mmssl` and the CLI import no torch until a command runs",
    "mmssl.commands": "`mmssl --help` answers without importing torch (bench/cli_startup.py)",
    "mmssl.train.dry_run": "DryRun, a result type of the API, is importable without torch",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _match(table: dict[str, object], module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in table:
            return ".".join(parts[:n])
    return module if module in table else None


def _imports(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """(imported mmssl module, line, inside a function) for every import in the module."""
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, local) for a in child.names if a.name.split(".")[0] == "mmssl")
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "mmssl":
                for alias in child.names:  # ``from mmssl.x import y`` names module mmssl.x.y if it exists
                    sub = f"{child.module}.{alias.name}"
                    found.append((sub if _exists(sub) else child.module, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    return found


def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    return {
        _module_name(path): _imports(ast.parse(path.read_text(), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


GRAPH = _graph()


def test_every_module_has_a_layer():
    unplaced = [m for m in GRAPH if _match(LAYERS, m) is None]
    assert not unplaced, f"place these modules in LAYERS (tests/test_layering.py): {unplaced}"


def _layer(module: str) -> int:
    return LAYERS[_match(LAYERS, module) or module]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down(module):
    if _match(LAYERS, module) is None:
        pytest.skip("not placed in a layer (test_every_module_has_a_layer fails)")
    upward = [
        f"line {line}: {target} (layer {_layer(target)} > {_layer(module)})"
        for target, line, local in GRAPH[module]
        if _match(LAYERS, target) is not None and _layer(target) > _layer(module)
        and not (local and module == "mmssl")  # the PEP 562 hook that loads the API on first use
    ]
    assert not upward, f"{module} imports a higher layer: {upward}"


def test_function_local_imports_only_for_start_up_speed():
    hidden = [
        f"{module} line {line}: {target}"
        for module, imports in GRAPH.items()
        for target, line, local in imports
        if local and _match(LAZY, module) is None
    ]
    assert not hidden, f"function-local imports outside LAZY (move them to the top): {hidden}"


def test_no_import_cycles():
    """Module-level and function-local imports together form no cycle (a package's own
    ``__init__`` re-exporting its submodules is not an edge back)."""
    edges = {
        module: {t for t, _, _ in imports if t != module and not module.startswith(t + ".")}
        for module, imports in GRAPH.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
