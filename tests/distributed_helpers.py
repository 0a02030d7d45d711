"""Processes for the distributed tests: a loss and its gradient computed by P gloo ranks."""

from __future__ import annotations

import os
from datetime import timedelta

import torch

from jl_lightning.core.sharding import SINGLE, Shard
from jl_lightning.core.variance import make_variance
from tests.helpers import default_loss, sampler

# name -> (mode, smooth temperature or None, n points, d, sigma^2 (0: the deterministic mean))
CASES = {
    "norms_hard_span": ("norms", None, 9, 24, 0.3),
    "norms_smooth_full": ("norms", 0.05, 40, 12, 0.3),
    "pairs_hard": ("pairs", None, 14, 10, 0.2),
    "pairs_smooth": ("pairs", 0.05, 14, 10, 0.2),
    "pairs_hard_deterministic": ("pairs", None, 14, 10, 0.0),
}
K, SAMPLES, NOISE_SEED = 4, 6, 123


def hard_pairs(n: int, mean: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair i < j, ordered so that the worst pair of the deterministic mean comes
    second: with 2 ranks it is rank 1's first pair."""
    i, j = torch.triu_indices(n, n, 1)
    X = points - points.mean(0)
    diff = X[i] - X[j]
    dev = ((diff @ mean.T).pow(2).sum(1) / K / diff.pow(2).sum(1) - 1).abs()
    worst = int(dev.argmax())
    order = list(range(len(i)))
    order[1], order[worst] = order[worst], order[1]
    order = torch.tensor(order)
    return i[order], j[order]


def loss_and_gradients(case: str, shard: Shard = SINGLE) -> dict:
    """The sampled loss (mean over samples + sigma^2 / 2) and its gradient in M and in the
    variance parameter, as rank ``shard.rank`` computes them (before any averaging)."""
    mode, temperature, n, d, s2_init = CASES[case]
    gen = torch.Generator().manual_seed(7)
    points = torch.randn(n, d, generator=gen, dtype=torch.float64)
    if mode == "norms":
        points = points / points.norm(dim=1, keepdim=True)
    mean = torch.nn.Parameter(torch.randn(K, d, generator=gen, dtype=torch.float64))
    variance = make_variance("raw", s2_init if s2_init > 0 else 1.0).double()
    loss_fn = default_loss(
        mode=mode,
        pair_strategy="active",
        smooth_temperature=temperature,
        smooth_temperature_end=temperature or 1e-4,
        active_hard=10**6,
        active_random=2,
        active_refresh=10**6,
    )
    loss_fn.prepare(points, shard)
    if mode == "pairs":
        loss_fn.set_hard(*hard_pairs(n, mean.detach(), points))
    if s2_init == 0:
        variance.freeze_at_zero()
    s2 = variance.value()
    sigma = None if variance.is_frozen else variance.sigma(s2)
    torch.manual_seed(NOISE_SEED)
    term, hard = loss_fn(mean, sigma, SAMPLES, 0, 100)
    loss = term.mean() + s2 / 2
    loss.backward()
    theta = variance.theta.grad
    return {
        "loss": float(loss.detach()),
        "hard": hard.clone(),
        "grad_mean": mean.grad.clone(),
        "grad_theta": torch.zeros(()) if theta is None else theta.clone(),
    }


def refreshed_hard_pairs(init_mean: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The active set's hard pairs after the sampler's first exact pass over 1,100 points
    (three tiles of pairs, shared by the ranks), from M = 0 (every pair ties) or a Gaussian M."""

    points = torch.randn(1100, 12, generator=torch.Generator().manual_seed(5))
    model = sampler(k=4, dim=12, mode="pairs", init_mean=init_mean, active_hard=700, active_random=10)
    model.refresh_active_pairs(points)
    return model.loss_fn.active.hard_i.clone(), model.loss_fn.active.hard_j.clone()


def meet(rank: int, world: int, out_dir: str):
    """The ranks' store: rank 0 opens a TCPStore on a port the kernel picks when it binds (no
    port chosen beforehand that another process could take in between) and writes the port
    into ``out_dir``; the others read it. Not torch's FileStore: its file is deleted by the
    last rank that leaves, which can be while another still reads it."""
    import time

    import torch.distributed as dist

    port_file = os.path.join(out_dir, "port")
    if rank == 0:
        store = dist.TCPStore(
            "127.0.0.1", 0, world, is_master=True, timeout=timedelta(seconds=120), wait_for_workers=False
        )
        with open(port_file + ".tmp", "w") as handle:
            handle.write(str(store.port))
        os.replace(port_file + ".tmp", port_file)
        return store
    deadline = time.monotonic() + 120
    while not os.path.exists(port_file):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: rank 0 wrote no port into {out_dir}")
        time.sleep(0.05)
    with open(port_file) as handle:
        port = int(handle.read())
    return dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=timedelta(seconds=120))


def rank_main(rank: int, world: int, out_dir: str) -> None:
    """One gloo rank: every case's loss and gradients, the gradients averaged over the ranks
    as DistributedDataParallel averages them; rank 0 saves the results. Both ranks pass a
    barrier before leaving, so neither tears the group down while the other still uses it."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=meet(rank, world, out_dir), rank=rank, world_size=world)
    try:
        results = {}
        for case in CASES:
            result = loss_and_gradients(case, Shard(rank, world))
            for name in ("grad_mean", "grad_theta"):
                dist.all_reduce(result[name])
                result[name] /= world
            results[case] = result
        for init_mean in ("zeros", "gaussian"):
            results[f"refresh_{init_mean}"] = refreshed_hard_pairs(init_mean)
        if rank == 0:
            torch.save(results, os.path.join(out_dir, "results.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
