"""`fume experiments` beyond one process: shards of the plan, the plan as JSON, the sbatch file of
`--executor slurm --dry-run`, and the submitit-local executor (parallel runs, the same results as
the in-process loop, a killed job rerun)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
import workflow_helpers
from typer.testing import CliRunner
from workflow_helpers import barrier_job, overrides, write_grid

from fume.cli import app
from fume.errors import ConfigError
from fume.evaluation.metrics import METRIC_KEYS
from fume.reporting.grid import ComplexitySettings, Preset, config_hash
from fume.workflows.executors import parse_shard, plan_records, run_submitit, shard_specs, slurm_minutes
from fume.workflows.experiments import plan

VARIANTS = [{"name": "a"}, {"name": "b", "overrides": ["model.fusion=concat"]}, {"name": "c", "overrides": ["model.fusion=add"]}]


def tiny_preset(root: Path) -> Preset:
    return Preset(overrides=overrides(root), seeds=[0], threads=1,
                  complexity=ComplexitySettings(size=(64, 64), latency_runs=1, latency_warmup=0, threads=1))


def test_the_shards_split_the_grid_exactly(tmp_path: Path, tiny_data: Path) -> None:
    one = write_grid(tmp_path / "one.yaml", VARIANTS, name="one")
    two = write_grid(tmp_path / "two.yaml", [{"name": "a"}, {"name": "d", "overrides": ["training.optimizer.lr=0.01"]}], name="two")
    specs, _ = plan([one, two], tmp_path / "out", [0, 1], tiny_preset(tiny_data))
    keys = [(s.grid.name, s.variant.name, s.seed) for s in specs]
    assert len(keys) == 10 and len(set(keys)) == 10
    for n in (1, 2, 3, 4, 11):
        shards = [shard_specs(specs, (k, n)) for k in range(1, n + 1)]
        union = [(s.grid.name, s.variant.name, s.seed) for shard in shards for s in shard]
        assert sorted(union) == sorted(keys), n  # every run once: the union is the grid, no run twice
        for k, shard in enumerate(shards):  # a configuration in two grids (one/a, two/a) stays in one shard
            others = {config_hash(s.config) for j, other in enumerate(shards) if j != k for s in other}
            assert not {config_hash(s.config) for s in shard} & others
            assert [keys.index((s.grid.name, s.variant.name, s.seed)) for s in shard] == sorted(
                keys.index((s.grid.name, s.variant.name, s.seed)) for s in shard)  # plan order kept
    assert shard_specs(specs, None) == specs
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "1-3", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_dry_run_json_lists_every_run(tmp_path: Path, tiny_data: Path) -> None:
    grid = write_grid(tmp_path / "g.yaml", VARIANTS[:2])
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["experiments", str(grid), "--out", str(out), "--seeds", "0,1", "--dry-run", "--json", *overrides(tiny_data)])
    assert done.exit_code == 0, done.output
    records = json.loads(done.stdout)
    assert [(r["grid"], r["variant"], r["seed"]) for r in records] == [("g", "a", 0), ("g", "a", 1), ("g", "b", 0), ("g", "b", 1)]
    assert records[0]["run_dir"] == str(out.resolve() / "runs" / "g" / "a" / "seed0")
    assert "fold" not in records[0] and not out.exists()  # nothing written
    shard = CliRunner().invoke(app, ["experiments", str(grid), "--out", str(out), "--seeds", "0,1", "--dry-run", "--json", "--shard", "2/2",
                                     *overrides(tiny_data)])
    assert [(r["variant"], r["seed"]) for r in json.loads(shard.stdout)] == [("a", 1), ("b", 1)]
    # With folds, each object names its fold.
    specs, _ = plan([grid], out, [0], tiny_preset(tiny_data))
    for i, spec in enumerate(specs):
        spec.fold = i
    assert [r["fold"] for r in plan_records(specs)] == [0, 1]


def test_slurm_dry_run_prints_the_sbatch_file_of_one_array(tmp_path: Path, tiny_data: Path) -> None:
    grid = write_grid(tmp_path / "g.yaml", VARIANTS[:2])
    out = tmp_path / "study"
    done = CliRunner().invoke(app, [
        "experiments", str(grid), "--out", str(out), "--seeds", "0", "--executor", "slurm", "--dry-run", "--slurm-partition", "gpu",
        "--slurm-time", "2-00:00:00", "--gpus-per-run", "1", "--cpus-per-run", "8", "--slurm-array-parallelism", "1",
        "--slurm-option", "account=myproject", "--slurm-option", "qos=high", *overrides(tiny_data)])
    assert done.exit_code == 0, done.output
    text = done.stdout
    assert "SLURM: one job array of 2 runs (0 finished before are skipped)" in text
    for line in ("#SBATCH --array=0-1%1", "#SBATCH --partition=gpu", "#SBATCH --time=2880", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --account=myproject",
                 "#SBATCH --qos=high", "#SBATCH --job-name=fume-study"):
        assert line in text.splitlines(), line
    folder = out.resolve() / "submitit" / "YYYYmmdd-HHMMSS"
    assert f"#SBATCH --output={folder}/%A_%a_0_log.out" in text.splitlines()
    assert "-m submitit.core._submit" in text and not out.exists()
    one = CliRunner().invoke(app, ["experiments", str(write_grid(tmp_path / "one.yaml", VARIANTS[:1])), "--out", str(out), "--seeds", "0",
                                   "--executor", "slurm", "--dry-run", *overrides(tiny_data)])
    assert "SLURM: one job (1 run)" in one.stdout and not any(line.startswith("#SBATCH --array") for line in one.stdout.splitlines())
    assert [slurm_minutes(t) for t in ("90", "10:30", "48:00:00", "1-12", "1-12:30")] == [90, 11, 2880, 2160, 2190]
    with pytest.raises(ConfigError, match="--slurm-time"):
        slurm_minutes("two days")


@pytest.mark.slow
def test_submitit_local_runs_in_parallel_matches_in_process_and_reruns_a_killed_job(tmp_path: Path, tiny_data: Path) -> None:
    cloudpickle.register_pickle_by_value(workflow_helpers)  # the job processes do not see the tests folder
    grid = write_grid(tmp_path / "g.yaml", VARIANTS)
    preset = tiny_preset(tiny_data)
    out = tmp_path / "submitit-out"
    specs, chosen = plan([grid], out, None, preset)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    job = functools.partial(barrier_job, barrier=str(barrier), parties=2, kill="c")
    first = run_submitit(specs, chosen, out, "submitit-local", max_parallel=2, job=job)
    assert first.failed == ["g/c seed 0"]
    rows = pd.read_csv(first.results_csv).set_index("variant")
    assert list(rows.loc[["a", "b"], "status"]) == ["ok", "ok"] and rows.loc["c", "status"] == "failed"
    assert "ended without a result" in rows.loc["c", "error"]
    # a and b trained at the same time: each started before the other ended (run_info.json).
    info = {v: json.loads((out / "runs" / "g" / v / "seed0" / "run_info.json").read_text()) for v in ("a", "b")}
    assert info["a"]["started"] < info["b"]["finished"] and info["b"]["started"] < info["a"]["finished"]
    assert (out / "runs" / "g" / "a" / "seed0" / "job.out").is_symlink()

    second = run_submitit(specs, chosen, out, "submitit-local", max_parallel=2)
    assert (second.trained, second.skipped, second.failed) == (1, 2, [])
    assert len(list((out / "runs" / "g" / "c").glob("seed0.failed-*"))) == 1  # the killed run's folder, moved aside

    # The in-process executor in a process of its own, as `fume experiments` runs it: both sides start
    # from a fresh interpreter (this test process has run other tests, whose allocations can change
    # which CPU kernels run and so the last digits).
    script = tmp_path / "local.py"
    script.write_text(
        "from fume.reporting.grid import Preset\nfrom fume.workflows.experiments import run_experiments\n"
        f"result = run_experiments([{str(grid)!r}], {str(tmp_path / 'local-out')!r}, preset=Preset.model_validate_json({preset.model_dump_json()!r}))\n"
        "assert result.trained == 3, result\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    a = pd.read_csv(second.results_csv).set_index("variant").sort_index()
    b = pd.read_csv(tmp_path / "local-out" / "results.csv").set_index("variant").sort_index()
    numbers = [k for k in METRIC_KEYS if k != "confusion_matrix" and a[k].notna().any()] + ["params", "gmacs"]
    assert (a["status"] == "ok").all() and (b["status"] == "ok").all()
    pd.testing.assert_frame_equal(a[numbers], b[numbers], check_exact=False, check_dtype=False, atol=1e-6, rtol=1e-6)
    assert list(a["confusion_matrix"]) == list(b["confusion_matrix"])

    collected = CliRunner().invoke(app, ["experiments", str(grid), "--out", str(out), "--collect", *overrides(tiny_data)])
    assert collected.exit_code == 0, collected.output
    assert "3 finished, 0 not (yet)" in collected.output


def test_a_failed_jobs_error_is_its_exception_line() -> None:
    from submitit.core.utils import FailedJobError

    from fume.workflows.executors import _error

    class Job:
        job_id, state = "7", "FINISHED"

        def __init__(self, exception):
            self._exception = exception

        def exception(self):
            return self._exception

    trace = "Traceback (most recent call last):\n  File 'x.py', line 1\nfume.errors.FumeError: g/a seed 0: training wrote no checkpoint"
    failed = FailedJobError(f"Job (task=0) failed during processing with trace:\n----------------------\n{trace}\n----------------------\n"
                            "You can check full logs with 'job.stderr(0)'")
    assert _error(Job(failed)) == "fume.errors.FumeError: g/a seed 0: training wrote no checkpoint"
    assert _error(Job(None)) is None


def test_runs_wait_for_the_array_of_an_earlier_no_wait_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fume.errors import FumeError
    from fume.workflows.executors import check_no_active_array

    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    (out / "submitit").mkdir(parents=True)
    active = out / "submitit" / "active.json"
    active.write_text(json.dumps({"array": "4242", "runs": 2}))
    squeue = bin_dir / "squeue"  # a stand-in for SLURM's: lists the array while tmp/queued exists
    squeue.write_text(f"#!/bin/sh\n[ -e {tmp_path}/queued ] && echo 4242_1\nexit 0\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    (tmp_path / "queued").touch()
    with pytest.raises(FumeError, match="SLURM job array 4242 of an earlier --no-wait call is still queued or running.*scancel 4242"):
        check_no_active_array(out)
    check_no_active_array(out, refuse=False)  # --collect: allowed, the array is remembered
    assert active.is_file()
    (tmp_path / "queued").unlink()
    check_no_active_array(out)  # ended: forgotten, runs may start
    assert not active.exists()
