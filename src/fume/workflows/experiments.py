"""`fume experiments`: run grids of variants x seeds on the same data, splits and budget.

OUT/
  datasets/synthetic-<hash>/       generated once when the config has data.synthetic (grouped split, paired)
  splits/leakage-<hash>/{grouped,leaky}/   the leakage study's two training sets and their one test set
  splits/folds<K>-<hash>/fold<k>/  grouped K-fold cross-validation (--folds K): fold k's recordings held out
  runs/<grid>/<variant>/seed<s>/   fume train output + test/ (fume evaluate --save-masks) + run_info.json
                                   (runs/<grid>/<variant>/fold<k>/seed<s>/ with --folds)
  results.csv                      one row per grid x variant x seed (x fold): every test metrics.json key,
                                   parameters, GMACs, CPU latency, training time (rewritten atomically after each run)
  environment.json                 machine, versions, preset, wall time of each invocation

The run plan (`plan`) is a flat list of RunSpec, one per run, each with its grid, variant, seed and
fold: any executor can run them in any order or in parts.

A run is finished when run_info.json (written last) exists and test/metrics.json has every metric
key; finished runs are skipped when the command is repeated, an unfinished (failed or interrupted)
run directory is moved aside to <dir>.failed-<time> and the run starts again. A configuration
that already ran under another grid or variant name (e.g. FUME, the reference of every grid) is
trained once and its row points to that run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from fume.config import FumeConfig, override_config, resolve_paths
from fume.errors import DataError, FumeError
from fume.io import write_json, write_text
from fume.locks import folder_lock
from fume.logs import get_logger
from fume.machine import machine_info
from fume.reporting.grid import (
    ENVIRONMENT_FILE,
    RESULTS_FILE,
    ComplexitySettings,
    Grid,
    Preset,
    RunSpec,
    config_hash,
    expand_grids,
    get_preset,
    load_grid,
)

log = get_logger(__name__)

RUN_INFO_FILE = "run_info.json"
TEST_DIR = "test"
META_COLUMNS = [
    "grid", "kind", "group", "variant", "label", "seed", "fold", "is_reference", "split", "model", "status", "error",
    "run_dir", "config_hash", "overrides",
]
EXTRA_COLUMNS = [
    "params", "gmacs", "latency_ms", "latency_p90_ms", "fps", "complexity_size", "latency_threads",
    "train_seconds", "epochs_run", "best_epoch", "image_size", "num_epochs", "batch_size",
]


def metric_keys() -> list[str]:
    from fume.evaluation.metrics import METRIC_KEYS

    return list(METRIC_KEYS)


def result_columns() -> list[str]:
    return META_COLUMNS + metric_keys() + EXTRA_COLUMNS


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def test_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's test metrics.json when it exists and has every metric key, else None."""
    metrics = _read_json(Path(run_dir) / TEST_DIR / "metrics.json")
    if metrics is None or any(k not in metrics for k in metric_keys()):
        return None
    return metrics


def is_finished(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    return (
        (run_dir / RUN_INFO_FILE).is_file()
        and _read_json(run_dir / RUN_INFO_FILE) is not None
        and test_metrics(run_dir) is not None
        and (run_dir / TEST_DIR / "predictions.csv").is_file()
    )


# ------------------------------------------------------------------ data: one dataset, same splits


def _short_hash(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def dataset_location(config: FumeConfig, out: Path) -> tuple[Path, Path | None]:
    """(dataset root, paired tables dir or None for the root) of a run's grouped split."""
    if config.data.synthetic is not None:
        key = {"synthetic": config.data.synthetic.model_dump(mode="json"), "labels": config.data.labels.model_dump(mode="json")}
        return out / "datasets" / f"synthetic-{_short_hash(key)}", None
    return config.data.dataset_root, config.data.paired_dir


def data_seed(config: FumeConfig) -> int:
    """Splits and pairing use one seed for every run (the training seed never changes the data)."""
    return config.data.synthetic.seed if config.data.synthetic is not None else 0


def place_data(specs: list[RunSpec], out: Path, folds: int | None = None) -> None:
    """Point every run at its data: the generated dataset under OUT, or the configured one; a
    leakage grid's variants at OUT/splits/leakage-*/<split>; a fold at OUT/splits/folds<K>-*/fold<k>."""
    for spec in specs:
        root, paired = dataset_location(spec.config, out)
        spec.grouped_data = (Path(root), Path(paired) if paired is not None else None)
        key = _short_hash([str(Path(root).resolve()), str(paired), data_seed(spec.config)])
        if spec.grid.kind == "leakage":
            paired = out / "splits" / f"leakage-{key}" / spec.variant.split
        elif spec.fold is not None:
            paired = out / "splits" / f"folds{folds}-{key}" / f"fold{spec.fold}"
        extra = [f"data.dataset_root={json.dumps(str(root))}",
                 f"data.paired_dir={json.dumps(str(paired)) if paired is not None else 'null'}"]
        spec.config = resolve_paths(override_config(spec.config, extra, spec.title))


# Leakage study: of each test recording, this share of its augmentation ids (rounded down, at least
# one kept) goes to the leaky training set; the rest is the test set of both conditions.
LEAKED_SHARE = 0.5


def _write_split(out: Path, parts: dict[str, pd.DataFrame], paired: dict[str, pd.DataFrame]) -> None:
    from fume.data.layout import paired_table_name, split_table_name
    from fume.io import write_csv

    for split, part in parts.items():
        write_csv(out / split_table_name(split), part.reset_index(drop=True))
        write_csv(out / paired_table_name(split), paired[split])


def write_leakage_splits(root: Path, grouped_paired: Path, out: Path, seed: int) -> None:
    """The leakage study's data (see the module docstring of the report): `out`/grouped is the
    grouped split with a test set made of part of each test recording's copies; `out`/leaky is the
    same plus the other copies of the test recordings in training (their pairs added to the grouped
    training pairs, which stay as they are). Both hold the same paired test table."""
    from fume.data.layout import SPLITS, paired_table_name, read_annotations
    from fume.data.pairing import drop_unlabelled, pair_table

    if all((out / name / paired_table_name(s)).is_file() for name in ("grouped", "leaky") for s in SPLITS):
        return
    tables = {s: read_annotations(root, s) for s in SPLITS}
    paired = {s: pd.read_csv(grouped_paired / paired_table_name(s), keep_default_na=False, dtype=str) for s in ("train", "val")}
    test, _ = drop_unlabelled(tables["test"])
    rng = np.random.default_rng(seed)
    leaked = np.zeros(len(test), bool)
    for _, part in test.groupby("original_sample_id", sort=True):
        augmentations = rng.permutation(np.unique(part["augmentation_id"]))
        n_leaked = int(len(augmentations) * LEAKED_SHARE) if len(augmentations) > 1 else 0
        leaked[part.index[part["augmentation_id"].isin(augmentations[:n_leaked])]] = True
    kept, copies = test[~leaked], test[leaked]
    paired["test"] = pair_table(kept, "random", seed + 2, id_prefix="test-")
    _write_split(out / "grouped", {**tables, "test": kept}, paired)
    leaky_train = pd.concat([paired["train"], pair_table(copies, "random", seed + 3, id_prefix="leak-").astype(str)], ignore_index=True)
    _write_split(out / "leaky", {**tables, "train": pd.concat([tables["train"], copies]), "test": kept}, {**paired, "train": leaky_train})
    log.info(f"leakage study: {test['original_sample_id'][leaked].nunique()} test recordings have copies in the leaky training set ({out})")


def fold_of_recordings(table: pd.DataFrame, folds: int, seed: int) -> dict[str, int]:
    """Fold (0..K-1) of each recording (original_sample_id): within each class the recordings,
    shuffled and then ordered by pH, are dealt to the folds in turn, so every fold gets each class
    (given K recordings of it) and a spread of its pH levels."""
    rng = np.random.default_rng(seed)
    recordings = table.groupby("original_sample_id", sort=True).agg(cls=("class_id", "first"), ph=("ph_value", "first"))
    recordings["order"] = rng.permutation(len(recordings))
    fold: dict[str, int] = {}
    for _, part in recordings.sort_values(["cls", "ph", "order"]).groupby("cls", sort=True):
        start = int(rng.integers(folds))
        for i, recording in enumerate(part.index):
            fold[str(recording)] = (start + i) % folds
    return fold


def write_folds(root: Path, folds: int, out: Path, seed: int) -> None:
    """Grouped, class-stratified K-fold cross-validation (fold_of_recordings): fold k holds out its
    recordings as test; the other recordings are split 85/15 into train and val, grouped and
    stratified as `fume split` does."""
    from fume.data.layout import SPLITS, paired_table_name, read_annotations
    from fume.data.pairing import drop_unlabelled, pair_table
    from fume.data.split import assign_splits, split_strata

    if all((out / f"fold{k}" / paired_table_name(s)).is_file() for k in range(folds) for s in SPLITS):
        return
    table, _ = drop_unlabelled(read_annotations(root).drop(columns=["split"], errors="ignore").reset_index(drop=True))
    recordings = table["original_sample_id"].astype(str)
    if recordings.nunique() < folds:
        raise DataError(f"{root}: {recordings.nunique()} recordings cannot make {folds} folds")
    fold = recordings.map(fold_of_recordings(table, folds, seed)).to_numpy()
    for k in range(folds):
        rest = table[fold != k].reset_index(drop=True)
        which = assign_splits(rest["class_id"].to_numpy(), rest["original_sample_id"].to_numpy(), (0.85, 0.15, 0.0), seed,
                              split_strata(rest, grouped=True))
        parts = {"train": rest[which == 0], "val": rest[which == 1], "test": table[fold == k]}
        _write_split(out / f"fold{k}", parts, {s: pair_table(p, "random", seed + i, id_prefix=f"{s}-") for i, (s, p) in enumerate(parts.items())})
    log.info(f"{folds} grouped folds of {root} written to {out}")


def prepare_data(specs: list[RunSpec], console: Console | None = None, folds: int | None = None) -> None:
    """Generate / split / pair what the runs need, once per dataset, before the first run (the
    generator's progress bar draws on `console`, default stderr)."""
    from fume.data.layout import SPLITS, paired_table_name
    from fume.workflows.quickstart import prepare_synthetic_dataset

    done: set[tuple[str, str]] = set()
    for spec in specs:
        cfg = spec.config
        key = (str(cfg.data.dataset_root), str(cfg.data.paired_tables_dir))
        if key in done:
            continue
        done.add(key)
        root, grouped_paired = spec.grouped_data or (cfg.data.dataset_root, cfg.data.paired_dir)
        grouped = cfg.model_copy(update={"data": cfg.data.model_copy(update={"paired_dir": grouped_paired})})
        if cfg.data.synthetic is not None:
            seeded = grouped.model_copy(update={"experiment": grouped.experiment.model_copy(update={"seed": data_seed(cfg)})})
            prepare_synthetic_dataset(seeded, console)
        missing = [paired_table_name(s) for s in SPLITS if not (grouped.data.paired_tables_dir / paired_table_name(s)).is_file()]
        if missing:
            raise DataError(
                f"{spec.title}: {', '.join(missing)} not found in {grouped.data.paired_tables_dir}; split and pair the "
                f"dataset first (`fume split {root}` then `fume pair {root}`), "
                f"or give the config a data.synthetic section to generate one"
            )
        if spec.grid.kind == "leakage":
            write_leakage_splits(Path(root), grouped.data.paired_tables_dir, cfg.data.paired_tables_dir.parent, data_seed(cfg))
        elif spec.fold is not None:
            write_folds(Path(root), folds or 0, cfg.data.paired_tables_dir.parent, data_seed(cfg))


# ------------------------------------------------------------------ one run


def train_and_evaluate(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """fume train, then fume evaluate --save-masks on the test split into RUN_DIR/test (messages go
    to the log)."""
    import torch

    from fume.workflows.evaluate import evaluate_checkpoint
    from fume.workflows.train import train

    result = train(spec.config, run_dir=run_dir)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if checkpoint is None:
        raise FumeError(f"{spec.title}: training wrote no checkpoint in {run_dir / 'checkpoints'}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # Temperature scaling fitted on val (stored in the checkpoint), so the report has ECE before and after.
    evaluate_checkpoint(checkpoint, split="test", out=run_dir / TEST_DIR, save_masks=True, device=device, progress=False,
                        calibrate=_classifies(spec.config))
    return {
        "train_seconds": round(result.seconds, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.metrics.get("epoch"),
        "monitor": result.monitor,
        "best_score": result.best_score,
        "checkpoint": str(checkpoint),
    }


def _classifies(config: FumeConfig) -> bool:
    from fume.contract import CLS_OUTPUT
    from fume.models.checkpoint import build_model

    return CLS_OUTPUT in build_model(config.model).output_names


def measure_complexity(config: FumeConfig, settings: ComplexitySettings) -> dict[str, Any]:
    from fume.models.checkpoint import build_model
    from fume.models.complexity import count_macs, count_parameters, measure_latency

    model = build_model(config.model).eval()
    size = tuple(settings.size)
    latency = measure_latency(model, size, runs=settings.latency_runs, warmup=settings.latency_warmup, threads=settings.threads)
    return {
        "params": count_parameters(model),
        "gmacs": count_macs(model, size) / 1e9,
        "latency_ms": latency["p50_ms"],
        "latency_p90_ms": latency["p90_ms"],
        "fps": 1000.0 / latency["p50_ms"],
        "complexity_size": f"{size[0]}x{size[1]}",
        "latency_threads": latency["threads"],
    }


def move_aside(run_dir: Path) -> None:
    target = run_dir.with_name(f"{run_dir.name}.failed-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        target = run_dir.with_name(f"{run_dir.name}.failed-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    run_dir.rename(target)
    log.warning(f"unfinished run {run_dir} moved to {target.name}; running it again")


def run_one(spec: RunSpec, complexity: ComplexitySettings, cache: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train + evaluate one run into spec.run_dir, measure its model (once per model with `cache`)
    and write run_info.json last, with the run's start and end (seconds since the epoch). Every
    executor runs a run through here (fume.workflows.executors)."""
    run_dir = Path(spec.run_dir)
    started = time.time()
    info = train_and_evaluate(spec, run_dir)
    cache = {} if cache is None else cache
    model_key = spec.config.model.model_dump_json()
    if model_key not in cache:
        cache[model_key] = measure_complexity(spec.config, complexity)
    info.update(cache[model_key])
    info.update({"config_hash": config_hash(spec.config), "grid": spec.grid.name, "variant": spec.variant.name, "seed": spec.seed,
                 "started": started, "finished": time.time(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_text(run_dir / RUN_INFO_FILE, json.dumps(info, indent=2, default=str) + "\n")
    return info


def finished_runs(out: Path) -> dict[str, Path]:
    """The finished run folder of each configuration (config_hash) under OUT/runs."""
    finished: dict[str, Path] = {}
    for info_path in sorted((out / "runs").glob(f"**/{RUN_INFO_FILE}")):
        info = _read_json(info_path)
        if info and info.get("config_hash") and is_finished(info_path.parent):
            finished.setdefault(info["config_hash"], info_path.parent)
    return finished


def result_row(spec: RunSpec, run_dir: Path, out: Path, status: str, error: str = "") -> dict[str, Any]:
    cfg = spec.config
    row: dict[str, Any] = {
        "grid": spec.grid.name, "kind": spec.grid.kind, "group": spec.variant.group, "variant": spec.variant.name,
        "label": spec.variant.display, "seed": spec.seed, "fold": spec.fold, "is_reference": spec.is_reference, "split": spec.variant.split,
        "model": cfg.model.name, "status": status, "error": error,
        "run_dir": os.path.relpath(run_dir, out), "config_hash": config_hash(cfg), "overrides": " ".join(spec.variant.overrides),
        "image_size": f"{cfg.data.image_size[0]}x{cfg.data.image_size[1]}", "num_epochs": cfg.training.num_epochs,
        "batch_size": cfg.training.batch_size,
    }
    if status == "ok":
        metrics = test_metrics(run_dir) or {}
        info = _read_json(run_dir / RUN_INFO_FILE) or {}
        # Every key of metrics.json (the contract's first, then per-gas and per-class extras).
        for key in [*metric_keys(), *(k for k in metrics if k not in metric_keys())]:
            value = metrics.get(key)
            row[key] = json.dumps(value) if isinstance(value, list) else value
        for key in EXTRA_COLUMNS:
            if key in info:
                row[key] = info[key]
    return row


def _row_keys(table: pd.DataFrame) -> list[tuple[str, str, int, int]]:
    """(grid, variant, seed, fold) of each results row; fold -1 without folds."""
    folds = pd.to_numeric(table["fold"], errors="coerce").fillna(-1) if "fold" in table else pd.Series(-1, index=table.index)
    return [(g, v, int(s), int(f)) for g, v, s, f in zip(table["grid"], table["variant"], table["seed"], folds)]


def write_results(rows: list[dict[str, Any]], out: Path) -> Path:
    """Merge `rows` into OUT/results.csv (a row per grid x variant x seed; new rows replace old
    ones of the same key) and write it atomically."""
    from fume.io import write_csv

    path = out / RESULTS_FILE
    new = pd.DataFrame(rows)
    if path.is_file():
        old = pd.read_csv(path, keep_default_na=False, na_values=[""])
        keys = set(_row_keys(new))
        keep = [k not in keys for k in _row_keys(old)]
        new = pd.concat([old[keep], new], ignore_index=True)
    base = result_columns()
    extra_metrics = [c for c in new.columns if c not in base]
    columns = META_COLUMNS + metric_keys() + extra_metrics + EXTRA_COLUMNS
    write_csv(path, new.reindex(columns=columns))
    return path


# ------------------------------------------------------------------ the whole grid


@dataclass
class ExperimentsResult:
    out: Path
    results_csv: Path
    results: pd.DataFrame
    trained: int
    skipped: int
    failed: list[str]
    seconds: float


def plan(
    grid_paths: list[str | Path], out: Path, seeds: list[int] | None = None, preset: str | Preset | None = None,
    overrides: list[str] | tuple[str, ...] = (), folds: int | None = None,
) -> tuple[list[RunSpec], Preset]:
    """Load the grids and validate every variant x seed (x fold) (nothing is trained or written)."""
    if folds is not None and folds < 2:
        raise FumeError(f"--folds must be at least 2, got {folds}")
    if not grid_paths:
        raise FumeError("give at least one grid: a shipped name (baselines, ablations, leakage) or a grid file")
    chosen = preset if isinstance(preset, Preset) else get_preset(preset)
    grids: list[Grid] = [load_grid(p) for p in grid_paths]
    names = [g.name for g in grids]
    if len(set(names)) != len(names):
        raise FumeError(f"two grid files have the same name: {names}; grid names must differ (they name OUT/runs/<grid>)")
    seeds = seeds if seeds is not None else chosen.seeds
    specs = expand_grids(grids, seeds, [*chosen.overrides, *overrides], folds)
    out = Path(out).resolve()
    place_data(specs, out, folds)
    for spec in specs:
        fold = [f"fold{spec.fold}"] if spec.fold is not None else []
        spec.run_dir = out.joinpath("runs", spec.grid.name, spec.variant.name, *fold, f"seed{spec.seed}")
    return specs, chosen


def shard_specs(specs: list[RunSpec], shard: tuple[int, int] | None) -> list[RunSpec]:
    """The runs of shard k of n (`fume experiments --shard k/n`): runs of identical configuration form
    one unit, and shard k takes units k, k + n, k + 2n, ... of the plan, so the shards together are
    exactly the grid and no configuration trains on two machines."""
    if shard is None:
        return specs
    k, n = shard
    units: dict[str, int] = {}
    for spec in specs:
        units.setdefault(config_hash(spec.config), len(units))
    return [s for s in specs if units[config_hash(s.config)] % n == k - 1]


def environment(preset_name: str | None) -> dict[str, Any]:
    import torch  # noqa: F401  (imported so machine_info reports its version and threads)

    return {**machine_info(), "preset": preset_name}


def _record_invocation(out: Path, info: dict[str, Any]) -> None:
    path = out / ENVIRONMENT_FILE
    data = _read_json(path) or {}
    data.update({k: v for k, v in info.items() if k != "invocation"})
    data.setdefault("invocations", []).append(info["invocation"])
    write_json(path, data)


def run_experiments(
    grid_paths: list[str | Path],
    out: str | Path,
    seeds: list[int] | None = None,
    preset: str | Preset | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    console: Console | None = None,
    folds: int | None = None,
    shard: tuple[int, int] | None = None,
) -> ExperimentsResult:
    """Validate every run, prepare the data, then train + evaluate each unfinished run. Progress
    messages go to the "fume.workflows.experiments" logger; `console` (default stderr) is where
    the dataset generator's progress bar draws. With `shard` (k, n) only shard k of n runs."""
    import torch

    specs, chosen = plan(grid_paths, Path(out).resolve(), seeds, preset, overrides, folds)
    specs = shard_specs(specs, shard)  # --shard k/n: this machine's part of the grid
    threads = torch.get_num_threads()
    if chosen.threads is not None:
        torch.set_num_threads(chosen.threads)
    try:
        with folder_lock(Path(out).resolve()):  # one `fume experiments` per OUT (each run's train() locks its own folder)
            return _run_all(specs, chosen, grid_paths, Path(out).resolve(), seeds, preset, overrides, console, folds)
    finally:
        torch.set_num_threads(threads)


def _run_all(
    specs: list[RunSpec], chosen: Preset, grid_paths: list[str | Path], out: Path, seeds: list[int] | None,
    preset: str | Preset | None, overrides: list[str] | tuple[str, ...], console: Console | None, folds: int | None = None,
) -> ExperimentsResult:
    start = time.perf_counter()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    preset_name = preset if isinstance(preset, str) or preset is None else "custom"
    log.info(f"{len(specs)} runs validated ({len({config_hash(s.config) for s in specs})} distinct configurations)")
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(specs, console, folds)

    finished = finished_runs(out)

    complexity_cache: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    trained = skipped = 0
    failed: list[str] = []
    failed_hashes: dict[str, str] = {}
    for i, spec in enumerate(specs, 1):
        run_dir = spec.run_dir
        assert run_dir is not None
        digest = config_hash(spec.config)
        prefix = f"[{i}/{len(specs)}] {spec.title}"
        if is_finished(run_dir) or digest in finished:
            run_dir = run_dir if is_finished(run_dir) else finished[digest]
            log.info(f"{prefix}: finished, skipped ({os.path.relpath(run_dir, out)})")
            skipped += 1
            rows.append(result_row(spec, run_dir, out, "ok"))
            write_results(rows, out)
            continue
        if digest in failed_hashes:
            rows.append(result_row(spec, run_dir, out, "failed", failed_hashes[digest]))
            failed.append(spec.title)
            continue
        log.info(f"{prefix}: training ({spec.config.model.name}, {' '.join(spec.variant.overrides) or 'base config'})")
        if run_dir.exists():
            move_aside(run_dir)
        try:
            info = run_one(spec, chosen.complexity, complexity_cache)
        except Exception as err:  # one failed run must not cost the others; KeyboardInterrupt still stops
            message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
            log.error(f"{prefix} failed: {message}")
            failed.append(spec.title)
            failed_hashes[digest] = message
            rows.append(result_row(spec, run_dir, out, "failed", message))
            write_results(rows, out)
            continue
        trained += 1
        finished[digest] = run_dir
        rows.append(result_row(spec, run_dir, out, "ok"))
        write_results(rows, out)
        minutes = (time.perf_counter() - start) / 60
        log.info(f"{prefix}: done in {info['train_seconds']:.0f} s of training; {minutes:.1f} min so far")

    results_csv = write_results(rows, out) if rows else out / RESULTS_FILE
    seconds = time.perf_counter() - start
    _record_invocation(out, {
        **environment(preset_name),
        "invocation": {"started_at": started_at, "seconds": round(seconds, 1), "grids": [str(p) for p in grid_paths],
                       "preset": preset_name, "seeds": seeds, "folds": folds, "overrides": list(overrides), "runs": len(specs),
                       "trained": trained, "skipped": skipped, "failed": len(failed)},
    })
    results = pd.read_csv(results_csv) if results_csv.is_file() else pd.DataFrame(columns=result_columns())
    return ExperimentsResult(out, results_csv, results, trained, skipped, failed, seconds)
