"""The layers import in one direction: core <- metrics <- baselines <- lightning <- apps (io beside
metrics), nothing imports apps, and core never imports Lightning or Hydra."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jl_lightning"
# a module may import layers of a lower rank, and its own layer
RANK = {"errors": 0, "core": 1, "metrics": 2, "io": 2, "baselines": 3, "lightning": 4, "apps": 5}


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


def test_layers_import_only_lower_layers_and_nothing_imports_apps():
    wrong = []
    for layer, relative, names in modules():
        for name in names:
            target = layer_of(name)
            if target is None:
                continue
            if (target == "apps" and layer != "apps") or RANK[target] > RANK[layer] or (
                    RANK[target] == RANK[layer] and target != layer):
                wrong.append(f"{relative} imports {name}")
    assert wrong == []


def test_core_imports_neither_lightning_nor_hydra():
    wrong = [f"{relative} imports {name}" for layer, relative, names in modules() if layer == "core"
             for name in names if name.split(".")[0] in ("lightning", "pytorch_lightning", "hydra", "omegaconf")]
    assert wrong == []


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself: a module that imports upward is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from jl_lightning.apps.train import train\n")
    assert layer_of(next(iter(n for n in imports(bad) if "apps" in n))) == "apps"
