"""The layers import in one direction: core <- metrics <- baselines <- lightning <- apps (io beside
metrics), nothing imports apps, and core never imports Lightning or Hydra."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jl_lightning"
# a module may import layers of a lower rank, and its own layer
RANK = {
    "errors": 0,
    "version": 0,
    "sparse_rows": 0,
    "constraints": 0.5,
    "core": 1,
    "metrics": 2,
    "io": 2,
    "baselines": 3,
    "lightning": 4,
    "apps": 5,
}


def imports(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, function-level imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "jl_lightning" and len(parts) > 1 and parts[1] in RANK else None


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative == Path("__init__.py"):
            continue  # the package root: its lazy JLEmbedding shortcut is the public facade
        yield relative.parts[0].removesuffix(".py"), relative, imports(path)


def test_every_module_belongs_to_a_layer():
    assert {layer for layer, _, _ in modules()} <= set(RANK)


def test_no_module_imports_the_package_root():
    """The root is the package's face (``__version__``, the lazy ``JLEmbedding``), above every
    layer: a module that imported it would sit under apps."""
    assert [str(relative) for _, relative, names in modules() if "jl_lightning" in names] == []


def upward(layer: str, names) -> list[str]:
    """The names a module of ``layer`` may not import: apps from outside apps, a higher
    layer, or another layer of the same rank."""
    wrong = []
    for name in sorted(names):
        target = layer_of(name)
        if target is None:
            continue
        if (
            (target == "apps" and layer != "apps")
            or RANK[target] > RANK[layer]
            or (RANK[target] == RANK[layer] and target != layer)
        ):
            wrong.append(name)
    return wrong


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (function-level imports included)."""
    found = {"jl_lightning." + ".".join(relative.with_suffix("").parts): names for _, relative, names in modules()}
    graph = {}
    for module, names in found.items():
        targets = {name if name in found else name.rsplit(".", 1)[0] for name in names}
        graph[module] = {t for t in targets if t in found and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_layers_import_only_lower_layers_and_nothing_imports_apps():
    wrong = [f"{relative} imports {name}" for layer, relative, names in modules() for name in upward(layer, names)]
    assert wrong == []


def test_no_import_cycle_between_modules_same_layer_included():
    assert cycles(import_graph()) == []


def test_core_imports_neither_lightning_nor_hydra():
    wrong = [
        f"{relative} imports {name}"
        for layer, relative, names in modules()
        if layer == "core"
        for name in names
        if name.split(".")[0] in ("lightning", "pytorch_lightning", "hydra", "omegaconf")
    ]
    assert wrong == []


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The checkers themselves, on made-up modules: an upward import hidden in a function, and
    two modules of one layer that import each other, are reported; a downward import is not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import numpy\nfrom jl_lightning.core import pairs\n\n\ndef f():\n"
        "    from jl_lightning.apps.train import train\n    import jl_lightning.lightning.fit\n"
    )
    names = imports(bad)
    assert upward("metrics", names) == [
        "jl_lightning.apps.train",
        "jl_lightning.apps.train.train",
        "jl_lightning.lightning.fit",
    ]
    assert upward("lightning", names) == ["jl_lightning.apps.train", "jl_lightning.apps.train.train"]
    assert upward("apps", names) == []
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "b": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
    assert cycles({"a.x": {"a.y"}, "a.y": set()}) == []
