"""Does the intensity window lose anything the model needs? The quickstart's synthetic dataset is
stored twice, as generated (8-bit) and as a radiometric camera would store it (16-bit counts: per
recording an offset of 5000-9000 counts and a gain of 12-40 counts per 8-bit level, with the
sub-level detail that the 8-bit copy rounds away), and the quickstart recipe is trained on each with
the same seed and split. The 16-bit run uses `data.frame_window` (default: `auto`, i.e. the 1-99 %
percentiles of each recording). Prints the test metrics side by side.

    python benchmarks/bit_depth_check.py --out /tmp/fume_bit_depth [--window auto] [--seeds 42,1,2] [training.num_epochs=25 ...]

With several seeds the table shows each condition's mean and standard deviation over seeds: the
seed-to-seed spread is the noise a difference between the conditions is judged against.

Synthetic data: the figures say whether windowing 16-bit frames costs accuracy, nothing about real
recordings.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from fume.config import load_config, resolve_paths
from fume.data.frames import load_frame, write_frame
from fume.data.layout import ANNOTATIONS_FILE, read_csv, resolve_table_path
from fume.workflows.evaluate import evaluate_checkpoint
from fume.workflows.quickstart import QUICKSTART_CONFIG, prepare_synthetic_dataset
from fume.workflows.train import train

METRICS = ["miou", "co2_miou", "ch4_miou", "balanced_accuracy", "macro_f1", "accuracy"]


def to_16bit(root8: Path, root16: Path, seed: int = 0) -> int:
    """Copy the dataset at root8 to root16 with every frame as 16-bit counts (module docstring):
    tables and masks copied as they are, frames written at the same paths."""
    shutil.copytree(root8, root16, ignore=shutil.ignore_patterns("*.png"))
    table = read_csv(root8 / ANNOTATIONS_FILE)
    rng = np.random.default_rng(seed)
    camera = {}
    for row in table.itertuples(index=False):
        key = (row.original_sample_id, row.gas_type)
        if key not in camera:
            camera[key] = (rng.uniform(5000, 9000), rng.uniform(12, 40))
        offset, gain = camera[key]
        frame_file, mask_file = (resolve_table_path(p, root8, root8, where=str(root8)) for p in (row.frame_path, row.mask_path))
        frame = load_frame(frame_file).astype(np.float64)
        counts = offset + gain * (frame + rng.uniform(-0.5, 0.5, frame.shape))  # the 8-bit copy is this rounded
        target = root16 / frame_file.relative_to(root8)
        assert write_frame(target, np.rint(counts).astype(np.uint16)) == target  # same path: the tables stay valid
        shutil.copyfile(mask_file, root16 / mask_file.relative_to(root8))
    return len(table)


def run(config, run_dir: Path) -> dict:
    """Train and evaluate, or read the metrics of a run that finished earlier (the check resumes)."""
    done = run_dir / "eval-test" / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run starts again
    result = train(config, run_dir=run_dir)
    return evaluate_checkpoint(result.best_checkpoint, split="test", out=run_dir / "eval-test").metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/bit_depth_check"))
    parser.add_argument("--window", default="auto", help="data.frame_window of the 16-bit run (auto, minmax, percentile, [low,high])")
    parser.add_argument("--seeds", default="42", help="training seeds, comma-separated (the quickstart's is 42)")
    parser.add_argument("overrides", nargs="*", help="config overrides for both runs, e.g. training.num_epochs=10")
    args = parser.parse_args()
    out = args.out.resolve()
    seeds = [int(s) for s in args.seeds.split(",")]

    def config(dataset: str, seed: int, *extra: str):
        return resolve_paths(load_config(QUICKSTART_CONFIG, [f"data.dataset_root={out / dataset}", f"experiment.seed={seed}", *extra, *args.overrides]))

    prepare_synthetic_dataset(config("dataset8", seeds[0]))
    if not (out / "dataset16").exists():
        print(f"16-bit copy: {to_16bit(out / 'dataset8', out / 'dataset16')} frames")
    conditions = {"8-bit": ("dataset8",), f"16-bit, window {args.window}": ("dataset16", f"data.frame_window={args.window}")}
    columns = {}
    for name, (dataset, *extra) in conditions.items():
        per_seed = []
        for seed in seeds:
            run_dir = out / "runs" / f"{dataset}-seed{seed}"
            per_seed.append([run(config(dataset, seed, *extra), run_dir).get(m) for m in METRICS])
            print(f"{name}, seed {seed}: " + ", ".join(f"{m} {v:.4f}" for m, v in zip(METRICS, per_seed[-1])))
        values = np.asarray(per_seed, dtype=float)
        columns[f"{name}: mean"] = values.mean(0)
        columns[f"{name}: std"] = values.std(0, ddof=1) if len(seeds) > 1 else np.nan
    table = pd.DataFrame(columns, index=METRICS)
    table["difference of means"] = table.iloc[:, 2] - table.iloc[:, 0]
    print(f"Synthetic data (quickstart recipe, grouped test split), same split, seeds {seeds}:")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
