"""Where the configs live, and composing them outside a Hydra run (``JLEmbedding.fit``, tests)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

# conf/ at the repository root: the install is editable, so the checkout's configs are used
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose(overrides: list[str] | tuple = (), config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides``, as the entry point would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))
