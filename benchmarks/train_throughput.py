"""Training throughput on this machine: pairs per second at the quickstart size and at 640x480.

For each size three passes over the same generated data, batch 8:
  loader   the training DataLoader alone (PNG decoding, resize, augmentation, modality dropout,
           weighted sampling): how fast the data pipeline can feed the model
  step     forward + backward + AdamW step on one batch kept in memory (the model's cost)
  train    Lightning's fit loop with the real loader (what `fume train` gets)
The data pipeline is not the bottleneck when `loader` is well above `train`.

    python benchmarks/train_throughput.py                  # both sizes
    python benchmarks/train_throughput.py --sizes 256x192 --batches 20 --workers 1
Prints the median pairs/s of each pass (per-batch times, first batches dropped as warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from fume.config import load_config
from fume.contract import parse_size
from fume.data.generate import generate_dataset
from fume.data.pairing import pair_dataset
from fume.data.split import split_dataset
from fume.training.datamodule import FumeDataModule
from fume.training.module import FumeTask

WARMUP = 2


class BatchTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def median_rate(times: list[float], batch: int) -> float:
    return batch / statistics.median(times[WARMUP:] or times)


def run(size: tuple[int, int], native: tuple[int, int], batches: int, batch: int, workers: int, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        n = max(12, batches * batch // 2 + 6)  # enough pairs that the loader never wraps round
        generate_dataset(root, n_originals=n, augmentations=1, size=native, class_mix=(0.4, 0.2, 0.4), seed=0)
        split_dataset(root, ratios=(0.8, 0.1, 0.1))
        pair_dataset(root)
        config = load_config(
            "fume_fastscnn",
            [f"data.dataset_root={root}", f"data.image_size=[{size[0]},{size[1]}]", f"training.batch_size={batch}",
             f"data.num_workers={workers}", "data.pin_memory=false"],
        )
        torch.set_num_threads(threads)
        L.seed_everything(0, verbose=False)
        data = FumeDataModule(config)
        data.setup("fit")

        # 1. loader alone
        times, last = [], time.perf_counter()
        for i, _ in enumerate(data.train_dataloader()):
            now = time.perf_counter()
            times.append(now - last)
            last = now
            if i + 1 >= batches:
                break
        loader = median_rate(times, batch)

        # 2. model step on one batch in memory
        task = FumeTask(config).train()
        optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
        fixed = next(iter(data.train_dataloader()))
        times = []
        for _ in range(max(WARMUP + 3, batches // 2)):
            start = time.perf_counter()
            loss = task.criterion(task(fixed), fixed)["loss"]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
            optimizer.step()
            times.append(time.perf_counter() - start)
        step = median_rate(times, batch)

        # 3. Lightning fit loop with the real loader
        timer = BatchTimer()
        trainer = L.Trainer(
            max_epochs=1, limit_train_batches=batches, limit_val_batches=0, accelerator="cpu", devices=1,
            gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer],
        )
        trainer.fit(FumeTask(config), datamodule=data)
        train = median_rate(timer.times, batch)
    return {"loader": loader, "step": step, "train": train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["256x192", "640x480"], help="training sizes WxH")
    parser.add_argument("--batches", type=int, default=16, help="batches timed per pass")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    # The quickstart trains 256x192 from 320x240 frames; larger sizes from frames of that size.
    natives = {(256, 192): (320, 240)}
    print(f"batch {args.batch_size}, {args.workers} loader worker(s), {args.threads} torch threads; median pairs/s")
    print(f"{'size':>9} {'loader':>8} {'step':>8} {'train':>8}  train/loader")
    for text in args.sizes:
        size = parse_size(text)
        r = run(size, natives.get(size, size), args.batches, args.batch_size, args.workers, args.threads)
        print(f"{text:>9} {r['loader']:8.2f} {r['step']:8.2f} {r['train']:8.2f}  {r['train'] / r['loader']:.2f}", flush=True)


if __name__ == "__main__":
    main()
