"""A synthetic wide dense set: rank-r structure plus isotropic noise, unit-norm rows.

    python scripts/make_synthetic.py --n 10000 --d 4096     # -> outputs/data/synthetic_10000x4096.npy

Rows are z B + noise for z ~ N(0, I_r), a fixed Gaussian basis B (r x d) and noise of scale
``--noise`` per coordinate (relative to the structured part's), then scaled to unit norm:
the shape of a model's embeddings (most variance in a few directions, every direction used)
without a model. Seeded; float32.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    basis = rng.standard_normal((args.rank, args.d)) / np.sqrt(args.rank)
    X = rng.standard_normal((args.n, args.rank)) @ basis
    X += args.noise * rng.standard_normal((args.n, args.d))  # each coordinate of z B has variance 1
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    out = args.out or ROOT / "outputs" / "data" / f"synthetic_{args.n}x{args.d}.npy"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, X.astype(np.float32))
    print(f"wrote {out} {X.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
