"""Time one training step: the LightningModule under the Trainer vs a plain PyTorch loop.

Both run in this one process, on the paper's setup (n=100 unit-norm Gaussian
points, d=500, k=30, N=20, Adam lr 0.01 with a cosine schedule), with the same
module and the same objective, so the ratio is not blurred by machine noise
between runs. The step is the sampled step: sigma^2 uses the log
parameterization so it never reaches 0 and every step draws N matrices.
The Trainer carries the callbacks whose per-step work the plain loop repeats
(VarianceMonitor, DeterministicSwitch, DistortionTracker) and a TensorBoard logger, with the
trainer settings of conf/trainer/cpu.yaml, and is timed twice: with the default trainer's
profiler (one that records nothing, jl_lightning/lightning/profiler.py) and with
Lightning's own pass-through profiler (``trainer.profiler=null``).

    python scripts/bench_step.py                  # prints and rewrites its section of docs/benchmarks.md
    python scripts/bench_step.py --no-write --steps 500

Timings on shared 2-core machines vary by about +-30 %; compare the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time
import warnings

import torch
from benchlib import default_loss, machine_line, report


def build(steps: int, seed: int = 0):
    from functools import partial

    from jl_lightning.io.sources import GaussianPoints
    from jl_lightning.lightning.datamodule import JLDataModule
    from jl_lightning.lightning.sampler import GaussianSampler

    dm = JLDataModule(GaussianPoints(n=100, d=500, seed=seed))
    dm.setup("fit")
    torch.manual_seed(seed)
    model = GaussianSampler(
        k=30,
        dim=dm.dim,
        n_samples=20,
        variance="log",
        init_variance=1.0,
        optimizer=partial(torch.optim.Adam, lr=0.01, fused=True),
        scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=steps),
        log_every=50,
        loss=default_loss("norms", n=100, d=dm.dim, k=30, steps=steps),
    )
    return dm, model


def plain_loop(steps: int, warmup: int, logdir: str) -> float:
    """ms per step of the same run in a hand-written loop.

    Equivalent means the same observable work: the objective, backward, Adam,
    projection and schedule every step; the sigma^2 read for the threshold
    crossings and the switch every step, and sigma^2 and its log10 to TensorBoard
    every step while it is above 0 (VarianceMonitor); and every 50 steps the exact float64
    distortion of M / sqrt(k) and the same scalars to TensorBoard (loss, sampled distortion,
    sigma^2's decay, the exact epsilon).
    """
    from torch.utils.tensorboard import SummaryWriter

    from jl_lightning.metrics import evaluate

    dm, model = build(steps + warmup)
    opt_cfg = model.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    points = dm.train_points
    writer = SummaryWriter(os.path.join(logdir, "plain"))
    crossings, switch_step, decaying, previous = {}, None, True, model.sigma2()
    for step in range(1, steps + warmup + 1):
        if step == warmup + 1:
            start = time.perf_counter()
        loss, sampled, s2 = model.objective(points)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.variance.project_()
        sched.step()
        current = model.sigma2()
        if decaying:  # VarianceMonitor: sigma^2 every step until it reaches 0
            writer.add_scalar("2_variance/sigma2", current, step)
            if current > 0:
                writer.add_scalar("2_variance/log10_sigma2", math.log10(current), step)
            decaying = current > 0
        for threshold in (1e-1, 1e-2, 1e-3):
            if current <= threshold:
                crossings.setdefault(threshold, step)
        if switch_step is None and current <= 1e-4:
            model.freeze_variance()
            switch_step = step
        if step % 50 == 0:
            det = evaluate(model.embedding, dm.points, quantiles=False).epsilon
            scalars = {
                "train/loss": loss.item(),
                "train/sampled_distortion": sampled.item(),
                "2_variance/decay": current / previous,
                "1_distortion/train": det,
            }
            if not decaying:
                scalars["2_variance/sigma2"] = current
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
            previous = current
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed / steps * 1e3


def step_timer(steps: int, warmup: int):
    """A callback whose ``ms`` is the mean ms per step over the ``steps`` after ``warmup``."""
    from lightning.pytorch import Callback

    class StepTimer(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            self.ms = (time.perf_counter() - self.start) / steps * 1e3

    return StepTimer()


def default_profiler():
    """The profiler conf/trainer/cpu.yaml gives the Trainer."""
    from hydra.utils import instantiate

    from jl_lightning.apps.config import compose

    return instantiate(compose().trainer.profiler)


def lightning_loop(steps: int, warmup: int, logdir: str, lightnings_profiler: bool = False) -> float:
    """ms per step under the Trainer, with the callbacks above and a TensorBoard logger; the
    default trainer's profiler, or Lightning's own when ``lightnings_profiler``."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    from jl_lightning.lightning.callbacks import DeterministicSwitch, DistortionTracker, VarianceMonitor
    from jl_lightning.lightning.fit import quiet_lightning

    quiet_lightning()

    timer = step_timer(steps, warmup)
    dm, model = build(steps + warmup)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps + warmup,
        max_epochs=-1,
        log_every_n_steps=50,
        enable_model_summary=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_checkpointing=False,
        default_root_dir=logdir,
        profiler=None if lightnings_profiler else default_profiler(),
        logger=TensorBoardLogger(logdir, name="bench", version=""),
        callbacks=[
            VarianceMonitor(every_n_steps=50),
            DeterministicSwitch(threshold=1e-4),
            DistortionTracker(every_n_steps=50),
            timer,
        ],
    )
    trainer.fit(model, datamodule=dm)
    return timer.ms


def lightning_floor(steps: int, warmup: int, logdir: str) -> tuple[float, float]:
    """(ms per step under the Trainer, ms per step in a plain loop) of a step that does almost
    nothing: one scalar loss of a 3-vector, manual_backward and an SGD step, no callbacks, no
    logger, the default trainer's profiler. The difference is what Lightning's loop itself
    costs per step, whatever the module does: the floor under any ratio above."""
    from lightning.pytorch import LightningModule, Trainer
    from torch.utils.data import DataLoader, IterableDataset

    from jl_lightning.lightning.fit import quiet_lightning

    quiet_lightning()

    class Forever(IterableDataset):
        def __iter__(self):
            while True:
                yield torch.zeros(1)

    class Tiny(LightningModule):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(3))
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward((self.p**2).sum())
            optimizer.step()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return DataLoader(Forever(), batch_size=None)

    timer = step_timer(steps, warmup)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps + warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=logdir,
        profiler=default_profiler(),
        callbacks=[timer],
    )
    trainer.fit(Tiny())
    p = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([p], lr=0.1)
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        optimizer.zero_grad()
        (p**2).sum().backward()
        optimizer.step()
    return timer.ms, (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7, help="alternating plain/Lightning repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite the section in docs/benchmarks.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)

    plain, light, passthrough, floors = [], [], [], []
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(2):  # warm caches and lazy initialization outside the timed repeats
            plain_loop(100, 10, logdir)
        for _ in range(args.repeats):  # alternate, so drift on a shared machine hits all three
            plain.append(plain_loop(args.steps, args.warmup, logdir))
            light.append(lightning_loop(args.steps, args.warmup, logdir))
            passthrough.append(lightning_loop(args.steps, args.warmup, logdir, lightnings_profiler=True))
            floors.append(lightning_floor(args.steps, args.warmup, logdir))
    p, q, r = (statistics.median(x) for x in (plain, light, passthrough))
    # Lightning's own cost per step (empty step under the Trainer minus the same in a plain loop)
    overhead = statistics.median(f[0] - f[1] for f in floors)
    # paired: neighbours share the machine's load
    ratio = statistics.median(b / a for a, b in zip(plain, light))
    ratio_passthrough = statistics.median(b / a for a, b in zip(plain, passthrough))
    command = "python scripts/bench_step.py " + " ".join(sys.argv[1:])
    lines = [
        f"### Training step: Lightning vs plain loop, {torch.get_num_threads()} torch thread(s) "
        f"({dt.date.today().isoformat()})",
        "",
        f"- command: `{command.strip()}`",
        machine_line(),
        "- setup: paper data (n=100, d=500, k=30), N=20 samples, span sampling, Adam + cosine, "
        f"sampled step (log sigma^2), {args.steps} timed steps after {args.warmup} warm-up, "
        f"{args.repeats} alternating repeats; each ratio is the median of the per-repeat ratios",
        "",
        "| loop | ms / step (median) | ratio to plain | all repeats |",
        "|---|---|---|---|",
        "| plain PyTorch (same work: sigma^2 to TensorBoard every step, exact eval + scalars every 50) | "
        f"{p:.3f} | 1 | "
        f"{', '.join(f'{x:.3f}' for x in plain)} |",
        f"| Lightning Trainer, default `trainer=cpu` (no-op profiler; 3 callbacks + TensorBoard) | {q:.3f} | "
        f"**{ratio:.2f}x** | {', '.join(f'{x:.3f}' for x in light)} |",
        f"| the same with Lightning's own profiler (`trainer.profiler=null`) | {r:.3f} | "
        f"**{ratio_passthrough:.2f}x** | {', '.join(f'{x:.3f}' for x in passthrough)} |",
        f"| an almost empty step (3-vector, manual_backward, SGD; no callbacks, no logger): Lightning "
        f"minus plain | {overhead:.3f} | floor **{(p + overhead) / p:.2f}x** | "
        f"{', '.join(f'{a - b:.3f}' for a, b in floors)} |",
        "",
        "The last row is what Lightning's loop costs per step whatever the module does (fetching "
        "the batch, the hooks, the optimizer and backward wrappers, the progress counters); added "
        "to the plain step it gives the lowest ratio a Trainer can reach on this step.",
        "",
    ]
    report(f"step:threads={torch.get_num_threads()}", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
