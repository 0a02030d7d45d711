"""Probe the end of a pairs fit: continue from a finished run's matrix with the active set
(candidates rescanned between exact passes) and certify the result by an exact pass.

    python scripts/probe_tail.py outputs/bench/clusters_1e5-cand-seed0 --steps 1000 --lr 0.003 --temperature 1e-4
    python scripts/probe_tail.py RUN --steps 1000 --lr 0.003 --temperature 1e-3 --passes 500

A diagnostic, not a recipe: it asks which end of training lowers the certified epsilon (a
longer tail, a smoother max, a late pass) before a full run is spent on it. It composes the
run's own config (``.hydra/config.yaml``) for the data and the active-set sizes, starts from
its ``embedding.npy``, runs ``--steps`` Adam steps (cosine from ``--lr`` to 0) on the
log-sum-exp max at a fixed ``--temperature``, with an exact pass at step 0, at every step of
``--passes`` and at the end, and prints each pass's certified epsilon and the active set's
max every 100 steps. ``--save`` writes the final matrix (a probe can start from it).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jl_lightning.core.losses import loss_options, make_loss
from jl_lightning.metrics.distortion import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished pairs run's folder")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--temperature", type=float, default=1e-4)
    parser.add_argument("--passes", type=int, nargs="*", default=[], help="steps with an exact pass")
    parser.add_argument("--start", type=Path, help="a .npy matrix to start from (default: the run's)")
    parser.add_argument("--save", type=Path, help="write the final (k, d) matrix here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = OmegaConf.load(args.run / ".hydra" / "config.yaml")
    model = cfg.model
    data = instantiate(cfg.data)
    data.setup()
    start = np.load(args.start or args.run / "embedding.npy")
    k = start.shape[0]
    mean = torch.nn.Parameter(torch.as_tensor(start, dtype=torch.float32) * math.sqrt(k))
    options = loss_options(OmegaConf.to_container(model.loss, resolve=True))
    options.update(smooth_temperature=args.temperature, smooth_temperature_end=args.temperature)
    loss = make_loss(mode="pairs", **options)
    loss.prepare(data.train_points)
    optimizer = torch.optim.Adam([mean], lr=args.lr)

    def exact_pass(step: int) -> None:
        began = time.perf_counter()
        report = evaluate(
            mean.detach() / math.sqrt(k),
            loss.points,
            "pairs",
            worst=model.loss.active_hard,
            quantiles=False,
            mean_abs=False,
            candidates=model.loss.active_candidates,
        )
        loss.set_hard(*report.worst[:2])
        if model.loss.active_candidates:
            i, j, _, sq_distances = report.candidates
            loss.set_candidates(i, j, sq_distances)
        print(
            f"step {step}: exact pass, certified epsilon {report.epsilon:.4f} (ratios {report.min_ratio:.4f} "
            f"to {report.max_ratio:.4f}; {time.perf_counter() - began:.0f} s)",
            flush=True,
        )

    exact_pass(0)
    for step in range(args.steps):
        if step in args.passes and step > 0:
            exact_pass(step)
        elif loss.needs_rescan(step):
            loss.rescan(mean)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        value, worst = loss(mean, None, 1, step, args.steps)
        optimizer.zero_grad()
        value.mean().backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step}: active-set max {float(worst.mean()):.4f}", flush=True)
    exact_pass(args.steps)
    if args.save:
        np.save(args.save, (mean.detach() / math.sqrt(k)).numpy())


if __name__ == "__main__":
    main()
