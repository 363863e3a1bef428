"""The package's layering (README "Layout"): every import points down or sideways, no cycle.

data -> protocols -> noise.inject / noise.online -> nn -> models -> noise scores -> train ->
run -> compare / clean -> cli. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "denoiserec"
LAYERS = [  # lowest first; a module may import its own layer or any lower one
    ("errors", "atomic", "provenance", "config", "metrics", "report", "noise.significance",
     "runfolder"),
    ("data",),
    ("protocols",),
    ("noise.inject", "noise.online"),
    ("nn",),
    ("models",),
    ("noise.scores", "noise.detection", "noise"),
    ("train",),
    ("runconfig", "fingerprints", "run"),
    ("compare", "clean", "tuning"),
    ("cli", ""),  # "" = the package's __init__ (the public API)
]


def _layer(module: str) -> int:
    best, best_len = None, -1
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            hit = module == prefix or module.startswith(prefix + ".") or prefix == ""
            if hit and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    assert best is not None, module
    return best


def _modules() -> dict[str, set[str]]:
    graph = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "denoiserec"):
                base = node.module.removeprefix("denoiserec").lstrip(".")
                for alias in node.names:  # `from denoiserec.data import readers` -> module
                    full = f"{base}.{alias.name}" if base else alias.name
                    imported.add(full if (SRC / Path(*full.split("."))).with_suffix(
                        ".py").exists() or (SRC / Path(*full.split("."))).is_dir() else base)
            elif isinstance(node, ast.Import):
                imported |= {a.name.removeprefix("denoiserec").lstrip(".")
                             for a in node.names if a.name.startswith("denoiserec")}
        graph[name] = imported - {name}
    return graph


GRAPH = _modules()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    upward = [m for m in GRAPH[module] if _layer(m) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports upward: {upward}"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH.get(node, ()):
            if nxt not in GRAPH:
                continue
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_a_planted_upward_import_is_caught() -> None:
    assert _layer("models.sasrec") < _layer("train.trainer")
    assert _layer("data.datasets") < _layer("runconfig")
