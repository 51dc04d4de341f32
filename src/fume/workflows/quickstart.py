"""`fume quickstart`: the whole pipeline on the embedded synthetic dataset, sized for a CPU.

OUT/dataset/            generated once (data.synthetic), split by recording, paired
OUT/runs/<timestamp>/   the training run (checkpoints, logs, config.yaml)
OUT/runs/<timestamp>/eval-test/   metrics.json, predictions.csv, confusion_matrix.png, qualitative.png
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from fume.config import FumeConfig, load_config, resolve_paths
from fume.errors import ConfigError
from fume.logs import get_logger

QUICKSTART_CONFIG = "quickstart"  # shipped: fume/configs/quickstart.yaml

log = get_logger(__name__)


def prepare_synthetic_dataset(config: FumeConfig, console: Console | None = None) -> None:
    """Generate, split (grouped by recording) and pair the dataset where a step's output is absent;
    the generator's progress bar draws on `console` (default: stderr), the steps are logged."""
    from fume.data.generate import generate_dataset
    from fume.data.layout import ANNOTATIONS_FILE, SPLITS, paired_table_name, split_tables_present
    from fume.data.pairing import pair_dataset
    from fume.data.split import split_dataset

    root = config.data.dataset_root
    synthetic = config.data.synthetic
    if not (root / ANNOTATIONS_FILE).exists() and not split_tables_present(root):
        if synthetic is None:
            raise ConfigError(f"no dataset at {root} and data.synthetic is not set, so none can be generated")
        from rich.progress import Progress

        total = synthetic.n_originals * (1 + synthetic.augmentations)
        with Progress(console=console or Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"generating {total} synthetic frames", total=total)
            generate_dataset(root, **synthetic.generator_kwargs(), label_config=config.data.labels, progress=lambda k: bar.advance(task, k))
        log.info(f"generated {total} frames ({synthetic.size[0]}x{synthetic.size[1]}) in {root}")
    if not split_tables_present(root):
        split_dataset(root, seed=config.experiment.seed)
        log.info(f"split {root} by recording (grouped, stratified by class): train / val / test")
    tables_dir = config.data.paired_tables_dir
    if not all((tables_dir / paired_table_name(s)).exists() for s in SPLITS):
        pair_dataset(root, out=tables_dir, seed=config.experiment.seed)
        log.info(f"paired CO2 and CH4 frames of the same pH into {tables_dir}")


def label_physics_ceiling(root: Path) -> float | None:
    """Balanced accuracy of a logistic regression on the true plume areas of both gases
    (fume.data.difficulty) of a generated dataset; None for other data."""
    from fume.data.difficulty import cross_validated, dataset_features
    from fume.data.generate import TRUTH_FILE

    if not (root / TRUTH_FILE).is_file():
        return None
    table, features = dataset_features(root)
    if table.groupby(["class_id", "gas_type"])["original_sample_id"].nunique().min() < 10:
        return None  # too few recordings of a class and gas for 5 folds to say anything
    return cross_validated(table, features, ("area",))["area"]["both"]


def quickstart(out: str | Path = "outputs/quickstart", config_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), console: Console | None = None):
    """Run the pipeline and print the test metrics table and a summary on `console` (default:
    stdout); returns the EvaluationResult."""
    from fume.training.callbacks import metrics_table
    from fume.workflows.evaluate import evaluate_checkpoint
    from fume.workflows.train import train

    console = console or Console()
    start = time.perf_counter()
    out = Path(out).resolve()
    config = load_config(config_path if config_path is not None else QUICKSTART_CONFIG, [f"data.dataset_root={out / 'dataset'}", *overrides])
    config = resolve_paths(config)
    prepare_synthetic_dataset(config, console)
    ready = time.perf_counter()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out / "runs" / stamp
    n = 1
    while run_dir.exists():  # never reuse an earlier run's folder
        n += 1
        run_dir = out / "runs" / f"{stamp}-{n}"
    result = train(config, run_dir=run_dir)
    trained = time.perf_counter()
    evaluation = evaluate_checkpoint(result.best_checkpoint, split="test", out=run_dir / "eval-test")
    done = time.perf_counter()

    console.print(metrics_table(evaluation.metrics, "FUME on the grouped test split (native resolution)"))
    ceiling = label_physics_ceiling(config.data.dataset_root)
    if ceiling is not None:
        console.print(f"ceiling of the label physics (synthetic data): a logistic regression on the true plume areas of both gases "
                      f"reaches balanced accuracy {ceiling:.3f} (5-fold, grouped by recording, whole dataset)")
    console.print(
        f"time: data {ready - start:.0f} s, training {trained - ready:.0f} s ({result.epochs_run} epochs), "
        f"evaluation {done - trained:.0f} s, total {(done - start) / 60:.1f} min\n"
        f"run: {run_dir}\nfigures: " + ", ".join(str(p) for p in evaluation.figures)
        + f"\nmetrics: {evaluation.out_dir / 'metrics.json'}  predictions: {evaluation.predictions_csv}"
    )
    return evaluation
