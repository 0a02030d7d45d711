"""Probe a finished pairs fit: is its matrix the best map within its own row space?

    python scripts/probe_metric.py outputs/runs/<date>/<run> --pairs 20000

A diagnostic, not a recipe (needs scipy, the ``test`` extra); the LP is
``jl_lightning/baselines/pca_metric.py``'s, which the ``pca_metric`` reference runs on PCA's
row space. A (k, d) map A with row space
spanned by the orthonormal columns of U (d x k) acts on a pair's unit difference s through
its k x k metric G = U^T A^T A U only: ||A s||^2 = z^T G z with z = U^T s. For a fixed U the
best worst-case distortion is a linear program in the k(k+1)/2 entries of G,

    minimize eps  subject to  -eps <= z_p^T G z_p - 1 <= eps  for every pair p,

which is solved here over the run's ``--pairs`` worst training pairs (scipy's HiGHS). Its
optimum is a lower bound, for every map with this row space, on the epsilon over all
training pairs (those pairs are a subset). The LP's G (its negative eigenvalues clipped, when
there are any) is then certified by an exact pass over all training pairs, its new worst
pairs join the LP, and this repeats up to ``--rounds`` times (column generation), or until
the LP's metric attains the LP's bound over all training pairs: that bound is then the best
epsilon of any map with this row space. If it is the learned epsilon, the optimizer found
the best metric for its subspace and only another subspace can do better.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jl_lightning.baselines.pca_metric import best_metric, metric_features, metric_map
from jl_lightning.metrics.distortion import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished pairs run's folder")
    parser.add_argument("--pairs", type=int, default=20000, help="worst training pairs in the first LP")
    parser.add_argument("--rounds", type=int, default=3, help="LP + exact pass rounds at most")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = instantiate(OmegaConf.load(args.run / ".hydra" / "config.yaml").data)
    data.setup()
    points = np.asarray(data.points, dtype=np.float64)
    A = np.load(args.run / "embedding.npy").astype(np.float64)
    k = A.shape[0]
    U = np.linalg.qr(A.T)[0]

    def exact(matrix: np.ndarray, label: str):
        began = time.perf_counter()
        report = evaluate(matrix, points, "pairs", worst=args.pairs, quantiles=False, mean_abs=False)
        print(f"{label}: epsilon over all {report.count:,} training pairs {report.epsilon:.4f} "
              f"({time.perf_counter() - began:.0f} s)", flush=True)  # fmt: skip
        return report

    report = exact(A, "learned map")
    seen = set(zip(report.worst[0].tolist(), report.worst[1].tolist()))
    features = metric_features(points, report.worst[0], report.worst[1], U)
    for round_ in range(1, args.rounds + 1):
        began = time.perf_counter()
        bound, G, _ = best_metric(features, k)
        seconds = time.perf_counter() - began
        print(f"round {round_}: LP over {len(features):,} pairs: best epsilon in this row space >= {bound:.4f} "
              f"({seconds:.0f} s; smallest eigenvalue of G {np.linalg.eigvalsh(G).min():.3g})", flush=True)  # fmt: skip
        report = exact(metric_map(G, U), f"round {round_}: the LP's metric")
        if report.epsilon <= bound + 1e-6 * max(1.0, bound):  # the LP solver's tolerance
            print(f"the LP's metric attains its bound over all pairs: {bound:.4f} is this row space's best epsilon")
            break
        new = [(i, j) for i, j in zip(report.worst[0].tolist(), report.worst[1].tolist()) if (i, j) not in seen]
        if not new:
            print("the LP's metric is worse only on pairs the LP has (its negative eigenvalues, clipped)")
            break
        seen.update(new)
        i, j = np.array(new).T
        features = np.vstack([features, metric_features(points, i, j, U)])


if __name__ == "__main__":
    main()
