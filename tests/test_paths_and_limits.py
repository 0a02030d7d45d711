"""Paths the file system refuses or loops on, resumes that cannot continue, and jl-embed's
chunks sized by the memory it may use: each one line naming the path or option."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from jl_lightning.apps import embed
from jl_lightning.apps.config import composition_error_message
from jl_lightning.apps.run_guard import resumable_problem
from jl_lightning.errors import JLInputError
from jl_lightning.io.loading import path_problem


def test_a_link_loop_and_a_too_long_path_are_named_as_what_they_are(tmp_path):
    loop = tmp_path / "loop.npy"
    os.symlink("loop.npy", loop)
    assert "symbolic link that leads to no file" in path_problem(loop)
    dangling = tmp_path / "dangling.npy"
    os.symlink(tmp_path / "gone.npy", dangling)
    assert "symbolic link that leads to no file" in path_problem(dangling)
    long = tmp_path / ("a" * 5000 + ".npy")
    problem = path_problem(long)
    assert problem.startswith("data.source.path cannot be read (") and "too long" in problem.lower()
    assert "not found" in path_problem(tmp_path / "missing.npy")


def test_a_finished_run_without_its_summary_is_not_resumed(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resumable_problem(tmp_path) is None
    np.save(tmp_path / "embedding.npy", np.eye(2))
    assert "wrote its matrix (embedding.npy) but has no summary.json" in resumable_problem(tmp_path)


def test_an_unparsable_override_says_to_quote_the_value():
    from hydra.errors import OverrideParseException

    message = composition_error_message(OverrideParseException(override="x", message="token recognition error"), "t")
    assert message.startswith("could not parse an override: token recognition error")
    assert "must be quoted" in message and "data.source.path='my,file=1.npy'" in message


def test_jl_embed_chunks_fit_the_memory_it_may_use(monkeypatch):
    assert embed.memory_for_chunks() <= embed.CHUNK_BUDGET
    for d, k in ((384, 32), (4096, 256), (10**6, 64)):
        rows = embed.chunk_rows_for(d, k)
        assert rows >= 1 and (rows == 1 or rows * 8 * (3 * d + 2 * k) <= embed.CHUNK_BUDGET)
    # a quarter of what may still be allocated, where that is less than the budget
    monkeypatch.setattr(embed, "CHUNK_BUDGET", 2**40)
    assert embed.memory_for_chunks() <= os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4


def test_jl_embed_out_of_memory_is_one_line(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "m.npy", np.eye(3)[:2])
    np.save(tmp_path / "x.npy", np.ones((5, 3)))

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(embed, "embed_file", exhausted)
    code = embed.main([str(tmp_path / "m.npy"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "out of memory" in err[0] and "--chunk-rows" in err[0]
    assert not (tmp_path / "y.npy").exists()


def test_a_checkpoint_of_another_mode_k_or_d_is_refused_by_name():
    from tests.helpers import sampler

    module = sampler(k=3, dim=5, mode="norms")
    for saved, option in (({"mode": "pairs"}, "model.mode=pairs"), ({"k": 4}, "model.k=4"), ({"dim": 7}, "d=7")):
        with pytest.raises(JLInputError, match=f"checkpoint is of a run with .*{option}"):
            module.on_load_checkpoint({"hyper_parameters": {"mode": "norms", "k": 3, "dim": 5, **saved}})
    module.on_load_checkpoint({"hyper_parameters": {"mode": "norms", "k": 3, "dim": 5}, "jl_rng": None})
    assert torch.is_tensor(module.mean)
