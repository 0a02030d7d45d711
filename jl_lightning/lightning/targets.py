"""Which classes a configuration may name in ``_target_``: the one allowlist, checked before
anything is instantiated.

Hydra's ``instantiate`` imports and calls whatever a ``_target_`` names, and a config comes
from the command line and from run folders (``resume=``, ``jl-compare compare.run=``),
which are input, not code: ``{_target_: builtins.open, file: ..., mode: w}`` would create a
file, ``shutil.copyfile`` would overwrite one. Hydra's own blocklist stops only
``os.system`` and ``subprocess``. So every ``_target_`` must be

* a target the project's packaged configs (``conf/``) declare, or
* a class (its last name capitalized) under a prefix where the project lets the user pick
  Lightning's or torch's own: optimizers and schedules, callbacks, loggers, profilers,
  strategies; for Hydra's nodes (launchers, sweepers), Hydra's plugins and Optuna's samplers.

Anything else is refused with one line naming the key and the target. A run folder's
config is checked the same way before it is used.

A user's own classes (a callback of their package) are allowed by the environment, which is
theirs, not the config's: ``JL_EXTRA_TARGETS=mypackage.callbacks.,other.Class`` (prefixes,
comma-separated; classes only).
"""

from __future__ import annotations

import functools
import importlib.resources
import os

from omegaconf import DictConfig, ListConfig, OmegaConf

from jl_lightning.errors import JLInputError

# classes the user may name besides the declared targets: (prefix, for hydra.* nodes only)
CLASS_PREFIXES = (
    ("torch.optim.", False),
    ("lightning.pytorch.callbacks.", False),
    ("lightning.pytorch.loggers.", False),
    ("lightning.pytorch.profilers.", False),
    ("lightning.pytorch.strategies.", False),
    ("hydra_plugins.", True),
    ("optuna.samplers.", True),
)


def _targets(node, path: str = ""):
    """(key path, value) of every ``_target_`` in a plain container, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield path or "<root>", value
            else:
                yield from _targets(value, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _targets(item, f"{path}[{index}]")


def _plain(cfg):
    """A config as plain containers, interpolations left as their text (nothing resolved)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=False)
    return cfg


@functools.lru_cache(maxsize=1)
def declared_targets() -> frozenset[str]:
    """Every ``_target_`` the packaged YAML files (``jl_lightning.conf``) name."""
    root = importlib.resources.files("jl_lightning.conf")
    found = set()
    stack = [root]
    while stack:
        entry = stack.pop()
        if entry.is_dir():
            stack.extend(entry.iterdir())
        elif entry.name.endswith(".yaml"):
            found.update(v for _, v in _targets(_plain(OmegaConf.create(entry.read_text()))) if isinstance(v, str))
    return frozenset(found)


EXTRA_TARGETS = "JL_EXTRA_TARGETS"


def allowed(target: str, hydra_node: bool = False) -> bool:
    """Whether ``target`` may be instantiated (in a ``hydra.*`` node with ``hydra_node``)."""
    if target in declared_targets():
        return True
    name = target.rsplit(".", 1)[-1]
    if not name[:1].isupper():  # a class, never a function such as torch.save
        return False
    extra = [p.strip() for p in os.environ.get(EXTRA_TARGETS, "").split(",") if p.strip()]
    if any(target.startswith(prefix) for prefix in extra):
        return True
    return any(target.startswith(prefix) and (hydra_node or not hydra_only) for prefix, hydra_only in CLASS_PREFIXES)


def refusal(key: str, target) -> str:
    return (
        f"{key}._target_={target!r} is not a class this project instantiates; a _target_ must be one "
        "conf/ declares, or a torch optimizer or schedule, or a Lightning callback, logger, profiler "
        f"or strategy class, or one {EXTRA_TARGETS} names (refused before anything was built)"
    )


def check_targets(cfg, where: str = "") -> None:
    """Refuse (JLInputError, one line) the first ``_target_`` in ``cfg`` that :func:`allowed`
    does not allow, naming its key; nothing is resolved or imported to decide."""
    for path, target in _targets(_plain(cfg), where):
        if not isinstance(target, str) or not allowed(target, path.startswith("hydra")):
            raise JLInputError(refusal(path, target))


def check_override_targets(overrides: list[str]) -> None:
    """The command line's overrides, before Hydra builds anything (it instantiates its own
    callbacks, launcher and sweeper itself): a ``..._target_=X`` override, or a value that
    spells a ``_target_`` inline, must name an allowed class."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        value = value.strip().strip("'\"")
        hydra_node = key.startswith("hydra.") or key.startswith("hydra/")
        if key.endswith("_target_"):
            if not allowed(value, hydra_node):
                raise JLInputError(refusal(key.removesuffix("._target_").removesuffix("_target_"), value))
        elif "_target_" in value:
            raise JLInputError(
                f"{key}: a _target_ given inside a value is not accepted on the command line; "
                f"choose a config group option or set {key}._target_= to an allowed class"
            )
