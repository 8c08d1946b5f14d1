"""Benchmark: training throughput of the Lightning loop against a bare PyTorch loop (goal:
Lightning overhead ≤ 5%).

Both loops train the same network (a model of conf/, default `vgg`) on the same batches from the
same DataLoader (FER2013 training faces with the model's augmentations; random faces without
the pulled data), with the same optimizer, schedule, loss and torchmetrics updates; Lightning
runs our `EmotionClassifier` in a `Trainer` with logging, checkpoints and validation off. The
first `--warmup` batches are not timed; the best of `--repeat` alternating runs is kept.

Rerun: .venv/bin/python benchmarks/bench_train_loop.py [--model vgg] [--batches 60] [--repeat 3]
       [key=value ...]  (params.yaml overrides, e.g. models.vgg.net.filters=[32,64,128,256])
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from hydra.utils import instantiate

from emowatch import config
from emowatch.data import augmentation
from emowatch.data.datamodule import FaceDataModule
from emowatch.data.splits import SplitArrays, load_dataset
from emowatch.errors import DataError
from emowatch.training.fit import build_module


class Timer(L.Callback):
    """Wall time from the start of batch `warmup` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1 = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.t1 = time.perf_counter()


def data(cfg, root: Path, n: int) -> SplitArrays:
    """FER2013's prepared arrays (training split cut to n faces), or random faces."""
    try:
        arrays = load_dataset(cfg, "fer2013", root)
        source = "FER2013 Training"
    except (DataError, OSError, ValueError):  # not prepared (`dvc repro prepare`)
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
        y = rng.integers(0, 7, n)
        classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
        splits = ("train", "val", "test")
        arrays = SplitArrays({s: x for s in splits}, {s: y for s in splits}, classes)
        source = "random faces (no pulled data)"
    arrays.x["train"], arrays.y["train"] = arrays.x["train"][:n], arrays.y["train"][:n]
    print(f"data: {source}, {len(arrays.y['train'])} faces")
    return arrays


def lightning_run(cfg, mcfg, dm: FaceDataModule, arrays, batches: int, warmup: int) -> float:
    L.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, mcfg, arrays, "fer2013", None)
    timer = Timer(warmup)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        deterministic=cfg.trainer.deterministic,
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    return timer.t1 - timer.t0


def bare_run(cfg, mcfg, dm: FaceDataModule, arrays, batches: int, warmup: int) -> float:
    """The same work by hand: forward, loss, backward, step, schedule, train metrics."""
    L.seed_everything(cfg.seed, verbose=False)
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic))
    module = build_module(cfg, mcfg, arrays, "fer2013", None)
    net, criterion, metrics = module.net, module.criterion, module.train_metrics
    optimizer = instantiate(mcfg.optimizer)(params=net.parameters())
    scheduler = None
    if module.scheduler_factory is not None:
        kwargs = {"total_steps": batches} if module.hparams.scheduler_total_steps else {}
        scheduler = module.scheduler_factory(optimizer=optimizer, **kwargs)
    per_step = module.hparams.scheduler_interval == "step"
    precision = str(cfg.trainer.precision)
    if precision not in ("32-true", "32", "bf16-mixed"):
        raise SystemExit(f"the bare loop does fp32 and bf16-mixed, not {precision}")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    net.train()
    t0 = t1 = 0.0
    for i, (x, y) in enumerate(dm.train_dataloader()):
        if i == warmup:
            t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:  # what Lightning's precision plugin does for "bf16-mixed"
            logits = net(x)
            loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        metrics(logits.argmax(dim=1), y)
        if scheduler is not None and per_step:
            scheduler.step()
        if i == batches - 1:  # timed like the Lightning Timer: up to the last batch's end
            t1 = time.perf_counter()
            break
    metrics.compute()
    return t1 - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="key=value over params.yaml")
    args = parser.parse_args()

    root = config.find_root()
    cfg = config.load(root / "params.yaml", args.overrides)
    mcfg = cfg.models[args.model]
    batch = int(cfg.train.fer2013.batch_size)
    arrays = data(cfg, root, args.batches * batch)
    augment = augmentation.for_model(cfg, mcfg.get("augment"), root, build_if_missing=True)
    norm = cfg.train.fer2013.normalize
    dm = FaceDataModule(arrays, batch, norm.mean, norm.std, augment=augment, seed=cfg.seed)
    timed = args.batches - args.warmup
    best = {"Lightning": float("inf"), "bare PyTorch": float("inf")}
    for _ in range(args.repeat):  # alternate, so drift in machine load hits both
        best["bare PyTorch"] = min(
            best["bare PyTorch"], bare_run(cfg, mcfg, dm, arrays, args.batches, args.warmup)
        )
        best["Lightning"] = min(
            best["Lightning"], lightning_run(cfg, mcfg, dm, arrays, args.batches, args.warmup)
        )
    rate = {k: timed * batch / v for k, v in best.items()}
    overhead = 100 * (best["Lightning"] / best["bare PyTorch"] - 1)
    cpu = platform.processor() or platform.machine()
    print(
        f"\nmodel {args.model}, batch {batch}, {timed} timed batches, best of {args.repeat}, "
        f"precision {cfg.trainer.precision}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {cpu}"
    )
    print(f"| loop | images/s | s per {timed} batches |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {rate[name]:.0f} | {seconds:.2f} |")
    verdict = "meets" if overhead <= 5 else "misses"
    print(f"\nLightning overhead: {overhead:+.1f}% ({verdict} the ≤ 5% goal)")
    rerun = f"--model {args.model} --batches {args.batches} --warmup {args.warmup}"
    rerun += f" --repeat {args.repeat}"
    print(f"rerun: .venv/bin/python benchmarks/bench_train_loop.py {rerun}", *args.overrides)


if __name__ == "__main__":
    main()
