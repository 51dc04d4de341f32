"""Where the runs of `fume experiments` execute, and how a grid is split by hand.

Executors (`--executor`):
  local           every run in this process, one after the other (fume.workflows.experiments)
  submitit-local  every run as its own process through submitit, at most --max-parallel at once
  slurm           one SLURM job array per call through submitit (--slurm-partition, --slurm-time,
                  --gpus-per-run, --cpus-per-run, --slurm-array-parallelism, --slurm-option key=value)

With submitit the parent process prepares the data once, moves unfinished run folders aside, submits
one job per distinct unfinished configuration, waits for them, then rebuilds results.csv from the run
folders (collect: what `--collect` does without running anything). A job's stdout and stderr are
linked from its run folder (RUN_DIR/job.out, job.err; the files themselves stay in
OUT/submitit/<time of the call>/ with submitit's pickles). run_info.json holds each run's start and end time.

Shards (`--shard k/n`, k = 1..n): runs with identical configurations (fume.reporting.grid.config_hash)
form one unit, trained once; shard k takes units k, k + n, k + 2n, ... in plan order, so n machines
without a scheduler split a grid by hand and the union of the shards is exactly the grid.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fume.errors import ConfigError, FumeError
from fume.io import write_json
from fume.locks import folder_lock
from fume.logs import get_logger
from fume.reporting.grid import ComplexitySettings, Preset, RunSpec, config_hash
from fume.workflows.experiments import shard_specs

log = get_logger(__name__)

EXECUTORS = ("local", "submitit-local", "slurm")
SUBMITIT_DIR = "submitit"
ACTIVE_FILE = "active.json"  # OUT/submitit/active.json: the array a --no-wait call left behind
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 min) would kill every real run
POLL_S = 1.0  # how often the submitit-local scheduler looks for a finished job


# ------------------------------------------------------------------ shards and the plan


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ConfigError(f"--shard {text!r}: expected k/n with 1 <= k <= n, e.g. --shard 1/3 on the first of three machines")
    return int(match.group(1)), int(match.group(2))


def plan_records(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """One JSON-ready object per run (`--dry-run --json`); `fold` where the plan has folds."""
    with_folds = any(getattr(s, "fold", None) is not None for s in specs)
    records = []
    for s in specs:
        c = s.config
        record = {"run_dir": str(s.run_dir), "grid": s.grid.name, "variant": s.variant.name, "seed": s.seed}
        if with_folds:
            record["fold"] = s.fold
        record.update({"config_hash": config_hash(c), "model": c.model.name, "split": s.variant.split, "epochs": c.training.num_epochs,
                       "image_size": list(c.data.image_size)})
        records.append(record)
    return records


# ------------------------------------------------------------------ SLURM parameters


@dataclass
class SlurmSettings:
    partition: str | None = None
    time: str | None = None  # SLURM's formats: minutes, HH:MM:SS, D-HH[:MM[:SS]]
    gpus_per_run: int = 1
    cpus_per_run: int | None = None
    array_parallelism: int | None = None
    options: list[str] = field(default_factory=list)  # key=value, any sbatch option


def slurm_minutes(text: str) -> int:
    """SLURM's --time formats (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) as whole minutes
    (submitit takes minutes)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", text.strip())
    if not match:
        raise ConfigError(f"--slurm-time {text!r}: expected minutes, HH:MM:SS or D-HH:MM:SS (SLURM's formats)")
    days, parts = int(match.group(1) or 0), [int(p) for p in match.group(2).split(":")]
    if match.group(1) is not None or len(parts) == 3:  # D-HH[:MM[:SS]] or HH:MM:SS
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:  # MM or MM:SS
        hours, minutes, seconds = 0, parts[0], parts[1] if len(parts) == 2 else 0
    return max(1, days * 1440 + hours * 60 + minutes + (1 if seconds else 0))


def slurm_parameters(settings: SlurmSettings, job_name: str, runs: int) -> dict[str, Any]:
    """submitit.SlurmExecutor parameters for an array of `runs` jobs, one node and one task each."""
    extra: dict[str, str] = {}
    for option in settings.options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-option {option!r}: expected key=value, e.g. --slurm-option account=myproject")
        extra[key.strip().lstrip("-")] = value.strip()
    params: dict[str, Any] = {"job_name": job_name, "nodes": 1, "ntasks_per_node": 1, "gpus_per_node": settings.gpus_per_run,
                              "array_parallelism": settings.array_parallelism or runs}
    if settings.partition:
        params["partition"] = settings.partition
    if settings.time:
        params["time"] = slurm_minutes(settings.time)
    if settings.cpus_per_run:
        params["cpus_per_task"] = settings.cpus_per_run
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_text(params: dict[str, Any], folder: Path, runs: int) -> str:
    """The sbatch file submitit writes for this array (its own template, so the dry run shows
    exactly what would be submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([sys.executable, "-u -m submitit.core._submit", str(folder)])
    # submitit submits a single run as a plain job, several as an array
    return _make_sbatch_string(command=command, folder=folder, map_count=runs if runs > 1 else None, **params)


def submitit_folder(out: Path) -> Path:
    return out / SUBMITIT_DIR / time.strftime("%Y%m%d-%H%M%S")


# ------------------------------------------------------------------ inside a job


def run_job(spec: RunSpec, complexity: ComplexitySettings, threads: int | None) -> dict[str, Any]:
    """One run, in its own process (a submitit job): its stdout / stderr linked from the run folder,
    then train + evaluate + measure (fume.workflows.experiments.run_one)."""
    import submitit
    import torch

    from fume.logs import setup_cli_logging
    from fume.workflows.experiments import run_one

    setup_cli_logging(False)
    if threads is not None:
        torch.set_num_threads(threads)
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = submitit.JobEnvironment().paths
    for name, target in (("job.out", paths.stdout), ("job.err", paths.stderr)):
        link = run_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    log.info(f"{spec.title}: training in job {submitit.JobEnvironment().job_id}")
    return run_one(spec, complexity)


# ------------------------------------------------------------------ the parent process


@dataclass
class SubmititResult:
    out: Path
    results_csv: Path
    results: Any  # pandas DataFrame
    trained: int
    skipped: int
    failed: list[str]
    seconds: float
    job_ids: list[str] = field(default_factory=list)


def pending_units(specs: list[RunSpec], out: Path) -> tuple[list[RunSpec], int]:
    """(one spec per distinct unfinished configuration, number of finished runs skipped)."""
    from fume.workflows.experiments import finished_runs, is_finished

    finished = finished_runs(out)
    pending: dict[str, RunSpec] = {}
    skipped = 0
    for spec in specs:
        digest = config_hash(spec.config)
        if is_finished(spec.run_dir) or digest in finished:
            skipped += 1
        else:
            pending.setdefault(digest, spec)
    return list(pending.values()), skipped


def make_executor(kind: str, folder: Path, slurm: SlurmSettings | None, runs: int, job_name: str) -> Any:
    import submitit

    if kind == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
        return executor
    if kind == "slurm":
        try:
            executor = submitit.SlurmExecutor(folder=folder)
        except RuntimeError as err:  # no srun here
            raise FumeError(f"--executor slurm: {err}; run on a SLURM login node, or look at the plan with --dry-run") from None
        executor.update_parameters(**slurm_parameters(slurm or SlurmSettings(), job_name, runs))
        return executor
    raise ConfigError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")


def _error(job: Any) -> str | None:
    """None when the job returned; else one line: the run's exception, or that the job died."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        exception = job.exception()
    except UncompletedJobError as err:
        exception = err
    if exception is None:
        return None
    if isinstance(exception, FailedJobError):  # the run raised: the traceback's last line is the exception
        lines = [line for line in str(exception).split("-" * 22)[1].splitlines() if line.strip()] or [str(exception)]
        return lines[-1][:500]
    if isinstance(exception, UncompletedJobError):  # killed, out of memory, cancelled, past its time
        return f"job {job.job_id} ended without a result (state {job.state}): killed, out of memory, cancelled or out of time; see its job.err"
    return f"{type(exception).__name__}: {str(exception).splitlines()[0] if str(exception) else ''}"[:500]


def run_submitit(
    specs: list[RunSpec], chosen: Preset, out: Path, kind: str, max_parallel: int = 1, slurm: SlurmSettings | None = None,
    wait: bool = True, console: Any = None, folds: int | None = None, job: Callable[..., dict[str, Any]] | None = None,
) -> SubmititResult:
    """Prepare the data, submit the unfinished runs as submitit jobs (`job`, default run_job, is
    called in each job process with (spec, complexity settings, threads)), wait, collect."""
    from fume.workflows.experiments import move_aside, prepare_data

    if max_parallel < 1:
        raise ConfigError(f"--max-parallel must be >= 1, got {max_parallel}")
    start = time.perf_counter()
    out = Path(out).resolve()
    with folder_lock(out):
        out.mkdir(parents=True, exist_ok=True)
        prepare_data(specs, console, **({"folds": folds} if folds is not None else {}))
        pending, skipped = pending_units(specs, out)
        for spec in pending:
            if Path(spec.run_dir).exists():
                move_aside(Path(spec.run_dir))
        job_ids: list[str] = []
        errors: dict[str, str] = {}
        if pending:
            folder = submitit_folder(out)
            executor = make_executor(kind, folder, slurm, len(pending), f"fume-{out.name}")
            arguments = [(spec, chosen.complexity, chosen.threads) for spec in pending]
            log.info(f"{len(pending)} runs to train ({skipped} finished before) through {kind}; job files in {folder}")
            if kind == "slurm":
                jobs = executor.map_array(job or run_job, *zip(*arguments))  # one job array
                job_ids = [handle.job_id for handle in jobs]
                log.info(f"submitted SLURM job array {job_ids[0].split('_')[0]} ({len(jobs)} runs)")
                if not wait:
                    write_json(out / SUBMITIT_DIR / ACTIVE_FILE, {"array": job_ids[0].split("_")[0], "runs": len(jobs)})
                    return collect(specs, out, {}, trained=0, skipped=skipped, start=start, job_ids=job_ids)
                finished_jobs = list(zip(pending, jobs))
            else:
                finished_jobs = _run_locally(executor, job or run_job, arguments, max_parallel)
                job_ids = [handle.job_id for _, handle in finished_jobs]
            for spec, handle in finished_jobs:
                message = _error(handle)
                if message is not None:
                    errors[config_hash(spec.config)] = message
                    log.error(f"{spec.title} failed: {message}")
        return collect(specs, out, errors, trained=len(pending) - len(errors), skipped=skipped, start=start, job_ids=job_ids)


def check_no_active_array(out: Path, refuse: bool = True) -> None:
    """Refuse to start runs while the SLURM array of an earlier `--no-wait` call is still queued or
    running (squeue lists it): its unfinished runs would be moved aside under the running jobs. With
    refuse=False (--collect) only forget an array that has ended."""
    import subprocess

    path = out / SUBMITIT_DIR / ACTIVE_FILE
    if not path.is_file():
        return
    array = str(json.loads(path.read_text(encoding="utf-8")).get("array", ""))
    squeue = shutil.which("squeue")
    listed = subprocess.run([squeue, "-h", "-j", array, "-o", "%i"], capture_output=True, text=True).stdout.strip() if squeue and array else ""
    if listed and not refuse:
        return
    if listed:
        raise FumeError(f"SLURM job array {array} of an earlier --no-wait call is still queued or running (squeue); wait for it and "
                        f"use --collect, or cancel it first: scancel {array}")
    path.unlink()


def _run_locally(executor: Any, job: Callable[..., Any], arguments: list[tuple], max_parallel: int) -> list[tuple[RunSpec, Any]]:
    """Each run as its own process, at most `max_parallel` at once (submitit's local executor
    starts a job when it is submitted, so the queue is kept here)."""
    queue = list(arguments)
    running: list[tuple[RunSpec, Any]] = []
    done: list[tuple[RunSpec, Any]] = []
    while queue or running:
        while queue and len(running) < max_parallel:
            args = queue.pop(0)
            running.append((args[0], executor.submit(job, *args)))
            log.info(f"{args[0].title}: started as process {running[-1][1].job_id}")
        time.sleep(POLL_S)
        still = []
        for spec, handle in running:
            (done if handle.done() else still).append((spec, handle))
        running = still
    return done


def collect(
    specs: list[RunSpec], out: Path, errors: dict[str, str] | None = None, trained: int = 0, skipped: int | None = None,
    start: float | None = None, job_ids: list[str] | None = None,
) -> SubmititResult:
    """Rebuild OUT/results.csv from the run folders: a finished run (its own folder, or a finished
    one of the same configuration) is "ok"; otherwise "failed" with the job's error when this call
    ran it, or "unfinished" (still running, never run, or killed before it could say why)."""
    import pandas as pd

    from fume.workflows.experiments import finished_runs, is_finished, result_row, write_results

    out = Path(out).resolve()
    errors = errors or {}
    finished = finished_runs(out)
    rows, failed = [], []
    ok = 0
    for spec in specs:
        digest = config_hash(spec.config)
        run_dir = Path(spec.run_dir)
        if is_finished(run_dir) or digest in finished:
            rows.append(result_row(spec, run_dir if is_finished(run_dir) else finished[digest], out, "ok"))
            ok += 1
        else:
            status = "failed" if digest in errors else "unfinished"
            rows.append(result_row(spec, run_dir, out, status, errors.get(digest, "no run_info.json: not run yet, running, or killed")))
            failed.append(spec.title)
    results_csv = write_results(rows, out) if rows else out / "results.csv"
    results = pd.read_csv(results_csv) if results_csv.is_file() else pd.DataFrame()
    seconds = time.perf_counter() - start if start is not None else 0.0
    return SubmititResult(out, results_csv, results, trained, ok if skipped is None else skipped, failed, seconds, job_ids or [])


def dry_run_lines(specs: list[RunSpec], out: Path, kind: str, slurm: SlurmSettings | None) -> list[str]:
    """What `--dry-run` prints besides the table: the sbatch file of the array for slurm."""
    if kind != "slurm":
        return []
    out = Path(out).resolve()
    pending, skipped = pending_units(specs, out)
    runs = len(pending) or len(specs)
    folder = out / SUBMITIT_DIR / "YYYYmmdd-HHMMSS"  # the time of the submission
    params = slurm_parameters(slurm or SlurmSettings(), f"fume-{out.name}", runs)
    what = f"one job array of {runs} runs" if runs > 1 else "one job (1 run)"
    return [f"SLURM: {what} ({skipped} finished before are skipped); sbatch file:", sbatch_text(params, folder, runs)]


def json_plan(specs: list[RunSpec]) -> str:
    return json.dumps(plan_records(specs), indent=2)


def run_grid(
    grid_paths: list[str | Path], out: str | Path, seeds: list[int] | None = None, preset: str | Preset | None = None,
    overrides: list[str] | tuple[str, ...] = (), executor: str = "local", shard: tuple[int, int] | None = None,
    max_parallel: int = 1, slurm: SlurmSettings | None = None, wait: bool = True, console: Any = None, folds: int | None = None,
    collect_only: bool = False,
) -> Any:
    """`fume experiments` with any executor (local: fume.workflows.experiments.run_experiments), on
    shard k of n of the grid; `collect_only` rebuilds results.csv from the run folders, running nothing."""
    from fume.workflows.experiments import _record_invocation, environment, plan, run_experiments

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    fold_kwargs = {"folds": folds} if folds is not None else {}
    if executor == "local" and not collect_only:
        check_no_active_array(Path(out).resolve())
        return run_experiments(grid_paths, out, seeds, preset, overrides, console=console, shard=shard, **fold_kwargs)
    out = Path(out).resolve()
    specs, chosen = plan(grid_paths, out, seeds, preset, overrides, **fold_kwargs)
    specs = shard_specs(specs, shard)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    check_no_active_array(out, refuse=not collect_only)
    if collect_only:
        with folder_lock(out):
            result = collect(specs, out, skipped=None, start=time.perf_counter())
        return result
    result = run_submitit(specs, chosen, out, executor, max_parallel, slurm, wait, console, folds)
    preset_name = preset if isinstance(preset, str) or preset is None else "custom"
    _record_invocation(out, {
        **environment(preset_name),
        "invocation": {"started_at": started_at, "seconds": round(result.seconds, 1), "grids": [str(p) for p in grid_paths],
                       "preset": preset_name, "seeds": seeds, "folds": folds, "overrides": list(overrides), "runs": len(specs),
                       "executor": executor, "shard": f"{shard[0]}/{shard[1]}" if shard else None, "jobs": result.job_ids,
                       "trained": result.trained, "skipped": result.skipped, "failed": len(result.failed)},
    })
    return result
