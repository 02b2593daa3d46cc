"""The house rules of the package, checked on its source: imports flow one way, no cycles, no
function-level import of a package module (except the listed ones, each with its reason), and no
function longer than 120 lines. `pytest tests/test_layout.py` is the structure check."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "hallucue_mlx"

# Lower layers never import higher ones (the flow of the paper: item -> corruption -> prompt ->
# rollout -> reward -> advantage -> loss -> adapter; records -> metrics -> report). Modules of one
# layer may import each other as long as there is no cycle.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("atomic", "blas", "backend", "fastblas", "data.item", "grading", "distributed", "safefile"),
    ("data", "runfolder"),
    ("prompts", "rewards", "corrupt", "trace"),
    ("config", "metrics", "views", "trackers"),
    ("models", "plan"),
    ("forward",),
    ("rollout",),
    ("grpo",),
    ("train", "evaluate"),
    ("warmup", "gallery"),
    ("grid", "report"),
    ("sweep", "export", "importer"),
    # "" is the package's own __init__.py (see _module_name): it serves the api's names
    ("cli", "api", ""),
)

# Function-level imports of package modules that are allowed, and why (none dodges a cycle).
LAZY_OK = {
    # the CLI imports a command's modules when that command runs: `--help` stays instant and
    # loads no MLX
    "cli": "*",
    # rewards pulls in sympy (~0.6 s) and is needed only when a custom reward function is named
    "config": {"hallucue_mlx.rewards"},
    # grading pulls in sympy and math-verify; metrics needs it only for records written before
    # the record carried `declined`
    "metrics": {"hallucue_mlx.grading"},
    # the package's __init__ (named "") loads the api, and with it MLX, on first use of one of
    # its names (PEP 562): `import hallucue_mlx` and the CLI's `--help` stay free of MLX
    "": {"hallucue_mlx.api"},
}
MAX_FUNCTION_LINES = 120


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PKG.rglob("*.py"))}


def _layer(module: str) -> int:
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    assert best is not None, f"hallucue_mlx.{module} has no layer in LAYERS: add it"
    return best


def _resolve(target: str, modules: dict[str, ast.Module]) -> str:
    """The package module an import names (`from hallucue_mlx.data.item import Item` -> data.item)."""
    name = target.removeprefix("hallucue_mlx").lstrip(".")
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _imports(tree: ast.Module, modules: dict[str, ast.Module]) -> list[tuple[str, bool, int]]:
    """(imported package module, inside a function?, line) for every import of the package."""
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module == "hallucue_mlx":
                    targets = [f"hallucue_mlx.{a.name}" for a in child.names]
                elif child.module.startswith("hallucue_mlx."):
                    targets = [f"{child.module}.{a.name}" for a in child.names]
            elif isinstance(child, ast.Import):
                targets = [a.name for a in child.names if a.name.startswith("hallucue_mlx.")]
            for t in targets:
                mod = _resolve(t, modules)
                if mod:
                    out.append((mod, in_function, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return out


@pytest.fixture(scope="module")
def modules() -> dict[str, ast.Module]:
    return _modules()


def test_imports_flow_downward(modules):
    upward = [
        f"hallucue_mlx/{src.replace('.', '/')}:{line} imports {dst} (layer {_layer(dst)} > "
        f"{_layer(src)})"
        for src, tree in modules.items()
        for dst, _, line in _imports(tree, modules)
        if dst != src and not src.startswith(dst + ".") and _layer(dst) > _layer(src)
    ]
    assert upward == []


def test_no_import_cycle(modules):
    graph = {
        src: {d for d, _, _ in _imports(tree, modules) if d != src and not src.startswith(d + ".")}
        for src, tree in modules.items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])
    assert cycles == []


def test_package_imports_sit_at_module_top(modules):
    lazy = [
        f"hallucue_mlx/{src.replace('.', '/')}:{line} imports {dst} inside a function"
        for src, tree in modules.items()
        for dst, inside, line in _imports(tree, modules)
        if inside
        and LAZY_OK.get(src) != "*"
        and dst not in {n.removeprefix("hallucue_mlx.") for n in LAZY_OK.get(src, ())}
    ]
    assert lazy == []


def test_no_function_over_the_limit(modules):
    long = [
        f"hallucue_mlx/{name.replace('.', '/')}: {node.name} has {node.end_lineno - node.lineno + 1}"
        for name, tree in modules.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []
