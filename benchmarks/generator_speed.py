"""How fast `fume generate` writes frames (issue 2: 1,000 frames of 640x480 in at most 60 s).

    python benchmarks/generator_speed.py [--frames 1000] [--size 640x480] [--repeats 3]

Times generate_dataset end to end (rendering, augmented copies, PNG frames and masks, CSV) into a
temporary folder, for the default layout (20 augmented copies per original, as the real data's
21x) and for originals only (every frame rendered from scratch, the slowest case). Prints the
median over the repeats and the ratio to the 60 s budget. CPU time is printed beside the wall
time: on a shared machine the wall time grows with the other load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fume.contract import parse_size
from fume.data.generate import generate_dataset


def time_once(frames: int, augmentations: int, size: tuple[int, int], seed: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, frames written)."""
    originals = max(1, round(frames / (augmentations + 1)))
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        table = generate_dataset(Path(tmp) / "d", n_originals=originals, augmentations=augmentations, size=size, seed=seed)
        return time.perf_counter() - start, time.process_time() - cpu, len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size, model_input=False)
    print(f"generator speed, {args.frames} frames of {size[0]}x{size[1]}, median of {args.repeats} runs")
    for label, augmentations in (("default layout (20 copies/original)", 20), ("originals only", 0)):
        runs = [time_once(args.frames, augmentations, size, seed) for seed in range(args.repeats)]
        seconds = statistics.median(t for t, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        n = runs[0][2]
        per_1000 = seconds * 1000 / n
        print(
            f"  {label:<38} {n} frames in {seconds:6.1f} s wall ({cpu:6.1f} s CPU)  ->  {per_1000:5.1f} s per 1000 "
            f"frames, {n / seconds:4.0f} frames/s, {per_1000 / 60:.2f} x the 60 s budget"
        )


if __name__ == "__main__":
    main()
