"""`fume experiments`: run grids of variants x seeds on the same data, splits and budget.

OUT/
  datasets/synthetic-<hash>/       generated once when the config has data.synthetic (grouped split, paired)
  splits/random-<hash>/            the naive row-level split of the same data (leakage study)
  runs/<grid>/<variant>/seed<k>/   fume train output + test/ (fume evaluate --save-masks) + run_info.json
  results.csv                      one row per grid x variant x seed: every test metrics.json key, parameters,
                                   GMACs, CPU latency, training time (rewritten atomically after each run)
  environment.json                 machine, versions, preset, wall time of each invocation

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
    "grid", "kind", "group", "variant", "label", "seed", "is_reference", "split", "model", "status", "error",
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


def place_data(specs: list[RunSpec], out: Path) -> None:
    """Point every run at its dataset: the generated one under OUT, or the configured one; a
    random-split variant at the naive split of the same data under OUT/splits."""
    for spec in specs:
        root, paired = dataset_location(spec.config, out)
        extra = [f"data.dataset_root={json.dumps(str(root))}"]
        if spec.variant.split == "random":
            paired = out / "splits" / f"random-{_short_hash([str(Path(root).resolve()), data_seed(spec.config)])}"
        extra.append(f"data.paired_dir={json.dumps(str(paired)) if paired is not None else 'null'}")
        spec.config = resolve_paths(override_config(spec.config, extra, spec.title))


def write_random_split(config: FumeConfig) -> None:
    """The naive split of the original work: rows (not recordings) drawn into train/val/test, so
    augmented copies of one recording land on both sides. Written to data.paired_dir: the split
    tables and their paired tables (paths relative to the dataset root)."""
    from fume.data.layout import SPLITS, paired_table_name, read_annotations, split_table_name
    from fume.data.pairing import pair_table
    from fume.data.split import assign_splits, split_strata
    from fume.io import write_csv

    out = config.data.paired_tables_dir
    if all((out / paired_table_name(s)).is_file() for s in SPLITS):
        return
    table = read_annotations(config.data.dataset_root).drop(columns=["split"], errors="ignore").reset_index(drop=True)
    seed = data_seed(config)
    which = assign_splits(table["class_id"].to_numpy(), None, (0.7, 0.15, 0.15), seed, split_strata(table, grouped=False))
    for i, split in enumerate(SPLITS):
        part = table[which == i].reset_index(drop=True)
        write_csv(out / split_table_name(split), part)
        write_csv(out / paired_table_name(split), pair_table(part, "random", seed + i, id_prefix=f"{split}-"))
    log.info(f"naive random (row-level) split of {config.data.dataset_root} written to {out}")


def prepare_data(specs: list[RunSpec], console: Console | None = None) -> None:
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
        if spec.variant.split == "random":
            grouped = cfg.model_copy(update={"data": cfg.data.model_copy(update={"paired_dir": None})})
        else:
            grouped = cfg
        if cfg.data.synthetic is not None:
            seeded = grouped.model_copy(update={"experiment": grouped.experiment.model_copy(update={"seed": data_seed(cfg)})})
            prepare_synthetic_dataset(seeded, console)
        if spec.variant.split == "random":
            write_random_split(cfg)
        else:
            missing = [paired_table_name(s) for s in SPLITS if not (cfg.data.paired_tables_dir / paired_table_name(s)).is_file()]
            if missing:
                raise DataError(
                    f"{spec.title}: {', '.join(missing)} not found in {cfg.data.paired_tables_dir}; split and pair the "
                    f"dataset first (`fume split {cfg.data.dataset_root}` then `fume pair {cfg.data.dataset_root}`), "
                    f"or give the config a data.synthetic section to generate one"
                )


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
    evaluate_checkpoint(checkpoint, split="test", out=run_dir / TEST_DIR, save_masks=True, device=device, progress=False)
    return {
        "train_seconds": round(result.seconds, 1),
        "epochs_run": result.epochs_run,
        "best_epoch": result.metrics.get("epoch"),
        "monitor": result.monitor,
        "best_score": result.best_score,
        "checkpoint": str(checkpoint),
    }


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
        "label": spec.variant.display, "seed": spec.seed, "is_reference": spec.is_reference, "split": spec.variant.split,
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


def write_results(rows: list[dict[str, Any]], out: Path) -> Path:
    """Merge `rows` into OUT/results.csv (a row per grid x variant x seed; new rows replace old
    ones of the same key) and write it atomically."""
    from fume.io import write_csv

    path = out / RESULTS_FILE
    new = pd.DataFrame(rows)
    if path.is_file():
        old = pd.read_csv(path, keep_default_na=False, na_values=[""])
        keys = set(zip(new["grid"], new["variant"], new["seed"].astype(int)))
        keep = [(g, v, int(s)) not in keys for g, v, s in zip(old["grid"], old["variant"], old["seed"])]
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
    overrides: list[str] | tuple[str, ...] = (),
) -> tuple[list[RunSpec], Preset]:
    """Load the grids and validate every variant x seed (nothing is trained or written)."""
    if not grid_paths:
        raise FumeError("give at least one grid: a shipped name (baselines, ablations, leakage) or a grid file")
    chosen = preset if isinstance(preset, Preset) else get_preset(preset)
    grids: list[Grid] = [load_grid(p) for p in grid_paths]
    names = [g.name for g in grids]
    if len(set(names)) != len(names):
        raise FumeError(f"two grid files have the same name: {names}; grid names must differ (they name OUT/runs/<grid>)")
    seeds = seeds if seeds is not None else chosen.seeds
    specs = expand_grids(grids, seeds, [*chosen.overrides, *overrides])
    out = Path(out).resolve()
    place_data(specs, out)
    for spec in specs:
        spec.run_dir = out / "runs" / spec.grid.name / spec.variant.name / f"seed{spec.seed}"
    return specs, chosen


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
    shard: tuple[int, int] | None = None,
) -> ExperimentsResult:
    """Validate every run, prepare the data, then train + evaluate each unfinished run. Progress
    messages go to the "fume.workflows.experiments" logger; `console` (default stderr) is where
    the dataset generator's progress bar draws. With `shard` (k, n) only shard k of n runs."""
    import torch

    specs, chosen = plan(grid_paths, Path(out).resolve(), seeds, preset, overrides)
    if shard is not None:  # --shard k/n: this machine's part of the grid (fume.workflows.executors)
        from fume.workflows.executors import shard_specs

        specs = shard_specs(specs, shard)
    threads = torch.get_num_threads()
    if chosen.threads is not None:
        torch.set_num_threads(chosen.threads)
    try:
        with folder_lock(Path(out).resolve()):  # one `fume experiments` per OUT (each run's train() locks its own folder)
            return _run_all(specs, chosen, grid_paths, Path(out).resolve(), seeds, preset, overrides, console)
    finally:
        torch.set_num_threads(threads)


def _run_all(
    specs: list[RunSpec], chosen: Preset, grid_paths: list[str | Path], out: Path, seeds: list[int] | None,
    preset: str | Preset | None, overrides: list[str] | tuple[str, ...], console: Console | None,
) -> ExperimentsResult:
    start = time.perf_counter()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    preset_name = preset if isinstance(preset, str) or preset is None else "custom"
    log.info(f"{len(specs)} runs validated ({len({config_hash(s.config) for s in specs})} distinct configurations)")
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(specs, console)

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
                       "preset": preset_name, "seeds": seeds, "overrides": list(overrides), "runs": len(specs),
                       "trained": trained, "skipped": skipped, "failed": len(failed)},
    })
    results = pd.read_csv(results_csv) if results_csv.is_file() else pd.DataFrame(columns=result_columns())
    return ExperimentsResult(out, results_csv, results, trained, skipped, failed, seconds)
