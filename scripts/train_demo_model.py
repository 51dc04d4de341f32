"""Make FUME's bundled demo model (src/fume/assets/demo.onnx), the file `fume predict --model demo`
and `fume serve` without --model run.

    python scripts/train_demo_model.py [--out outputs/demo_model] [--no-install] [OVERRIDE ...]

It runs the quickstart recipe (fume/configs/quickstart.yaml: 960 synthetic recordings of the
realistic default at 320x240, FUME trained at 256x192 for 13 epochs, seed 42), fits a temperature
on the validation split, evaluates the grouped test split, exports the best checkpoint to ONNX
(fp32, parity-checked against PyTorch) and stores in the file's metadata (key fume.demo) how it was
made and the measured test metrics. Nothing is downloaded. About 7-13 minutes on a 2-core CPU.
Dotted overrides (training.num_epochs=2) change the recipe; they are recorded in the metadata.

The demo model has seen synthetic frames only: it is there to try the tools, not to judge a cow.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALLED = REPO / "src" / "fume" / "assets" / "demo.onnx"
REPORTED_METRICS = (
    "num_samples", "miou", "co2_miou", "ch4_miou", "iou_gas", "hd95_gas", "accuracy", "balanced_accuracy", "macro_f1",
    "f1_healthy", "f1_transitional", "f1_acidotic", "recording_balanced_accuracy", "off_by_two_rate",
    "ece", "ece_uncalibrated", "brier",
)


def commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo_model"), help="work folder (dataset, run, evaluation)")
    parser.add_argument("--no-install", action="store_true", help=f"leave {INSTALLED.relative_to(REPO)} as it is")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the quickstart recipe")
    args = parser.parse_args()

    import torch

    from fume import __version__
    from fume.config import load_config, resolve_paths
    from fume.inference.demo import DEMO_META, DEMO_NOTICE
    from fume.inference.onnx import set_metadata
    from fume.inference.predictor import Predictor
    from fume.machine import machine_description
    from fume.workflows.evaluate import evaluate_checkpoint
    from fume.workflows.export import export_checkpoint
    from fume.workflows.quickstart import QUICKSTART_CONFIG, label_physics_ceiling, prepare_synthetic_dataset
    from fume.workflows.train import train

    out = args.out.resolve()
    start = time.perf_counter()
    config = resolve_paths(load_config(QUICKSTART_CONFIG, [f"data.dataset_root={out / 'dataset'}", *args.overrides]))
    prepare_synthetic_dataset(config)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the script's own work folder: a re-run starts clean
    trained = train(config, run_dir=run_dir)
    evaluation = evaluate_checkpoint(trained.best_checkpoint, split="test", out=run_dir / "eval-test", calibrate=True, progress=False)
    final = export_checkpoint(trained.best_checkpoint, out=run_dir / "demo.onnx").onnx_path  # parity-checked, or FumeError
    temperature = Predictor.from_onnx(final).temperature  # fitted on val by calibrate, stored in the checkpoint's config
    synthetic = config.data.synthetic
    card = {
        "name": "FUME demo model",
        "trained_on": "synthetic data only (FUME's generator, realistic difficulty); never a real recording",
        "notice": DEMO_NOTICE,
        "made_by": "python scripts/train_demo_model.py" + "".join(f" {o}" for o in args.overrides),
        "recipe": "fume/configs/quickstart.yaml",
        "overrides": args.overrides,
        "dataset": {"recordings": synthetic.n_originals, "frame_size": list(synthetic.size), "class_mix": list(synthetic.class_mix),
                    "seed": synthetic.seed, "split": "grouped by recording, stratified by class (train / val / test)"},
        "model": config.model.name,
        "input_size": list(config.data.image_size),
        "epochs": trained.epochs_run,
        "best_epoch": trained.best_epoch,
        "temperature": temperature,
        "test": {key: evaluation.metrics.get(key) for key in REPORTED_METRICS},
        "label_physics_ceiling_balanced_accuracy": label_physics_ceiling(config.data.dataset_root),
        "made_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "fume": __version__,
        "torch": torch.__version__,
        "machine": machine_description(),
        "python": platform.python_version(),
        "minutes": round((time.perf_counter() - start) / 60, 1),
    }
    set_metadata(final, {DEMO_META: json.dumps(card)})  # beside the run's config (temperature included), stored by the export
    print(json.dumps(card, indent=2))
    if not args.no_install:
        INSTALLED.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, INSTALLED)
        print(f"installed {INSTALLED.relative_to(REPO)} ({INSTALLED.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
