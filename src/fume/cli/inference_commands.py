"""`fume predict`, `fume export`, `fume benchmark` (registered on fume.cli.app).
Heavy imports happen inside the commands so `fume --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fume.cli import app, check_out_file, check_out_folder
from fume.errors import ConfigError
from fume.logs import get_logger

out_console = Console(soft_wrap=True)  # long paths stay on one line
err_console = Console(stderr=True)
log = get_logger(__name__)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )


def _predictor(checkpoint: Optional[Path], onnx: Optional[Path], backend: Optional[str], threads: Optional[int], model: Optional[Path] = None):
    from fume.inference.demo import DEMO_NOTICE, demo_model_path, is_demo_name
    from fume.inference.predictor import Predictor

    if sum(x is not None for x in (checkpoint, onnx, model)) != 1:
        raise ConfigError("give one of --checkpoint CKPT, --model DIR (fume publish) or demo, or --onnx FILE")
    if is_demo_name(model):
        log.warning(f"model: {DEMO_NOTICE}")
        return Predictor.from_onnx(demo_model_path(), threads=threads)
    if model is not None:
        from fume.models.pretrained import load_pretrained

        network, config = load_pretrained(model)
        return Predictor.from_model(network, config, backend or "torch", threads, source=str(model))
    if onnx is not None:
        if backend not in (None, "onnxruntime"):
            raise ConfigError(f"--onnx runs on ONNX Runtime; --backend {backend} needs --checkpoint")
        return Predictor.from_onnx(onnx, threads=threads)
    return Predictor.from_checkpoint(checkpoint, backend=backend or "torch", threads=threads)


@app.command("predict")
def predict_command(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-k", help="A .ckpt written by fume train"),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="An ONNX file written by fume export (instead of --checkpoint)"),
    model: Optional[Path] = typer.Option(None, "--model", help="A model folder written by fume publish, or `demo`: the bundled demo model (synthetic data only)"),
    co2: Optional[Path] = typer.Option(None, "--co2", help="CO2 frame of one pair"),
    ch4: Optional[Path] = typer.Option(None, "--ch4", help="CH4 frame of one pair"),
    inputs: Optional[Path] = typer.Option(None, "--input", "-i", help="Batch mode: a folder of pairs (co2/ + ch4/ sub-folders or NAME_co2/NAME_ch4 files) or a paired CSV"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder the paired CSV's paths are relative to (default: the root `fume pair` recorded, else the CSV's folder)"),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="Accept absolute CSV paths and paths leaving the dataset root ('..')"),
    co2_video: Optional[Path] = typer.Option(None, "--co2-video", help="Video mode: CO2 video file or folder of frames"),
    ch4_video: Optional[Path] = typer.Option(None, "--ch4-video", help="Video mode: CH4 video file or folder of frames"),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate of frame folders (default 30) or to override a video's"),
    ema_alpha: Optional[float] = typer.Option(None, "--ema-alpha", help="Weight of the newest frame in the smoothed probabilities (default 0.1)"),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Video mode: stop after this many frames"),
    no_video: bool = typer.Option(
        False, "--no-video-output", "--no-video", help="Video mode: headless, write the CSV only (no overlays drawn, no annotated video)"
    ),
    out: Path = typer.Option(Path("predictions"), "--out", "-o", help="Output folder"),
    backend: Optional[str] = typer.Option(None, "--backend", help="torch (default) | onnxruntime, with --checkpoint"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)"),
    batch_size: int = typer.Option(1, "--batch-size", help="Pairs per forward pass in batch mode"),
    save_masks: bool = typer.Option(False, "--save-masks", help="Also write the masks (PNG 0/1/2, native size)"),
    overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="Write overlay PNGs"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run in OUT (refused without it)"),
) -> None:
    """Class, pH range, probabilities, plume areas and overlays for one pair, a folder or CSV of pairs, or two videos.

    OUT holds one run's results: if it already holds an earlier run's outputs (predictions.csv,
    json/, overlays/, masks/, video_predictions.csv, annotated.mp4), the command stops unless
    --overwrite, which replaces them all (other files in OUT are kept). Nothing is moved into OUT
    until every output is written, so a failed run (a full disk) leaves no partial outputs."""
    modes = [name for name, used in (("--co2/--ch4", co2 or ch4), ("--input", inputs), ("--co2-video/--ch4-video", co2_video or ch4_video)) if used]
    if len(modes) != 1:
        raise ConfigError(
            "choose one input: --co2 and/or --ch4 (one pair), --input DIR|CSV (many pairs) or --co2-video and/or --ch4-video"
            + (f"; got {' and '.join(modes)}" if modes else "")
        )
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    from fume.inference.batch import PREDICT_OUTPUTS, check_output_folder

    check_out_folder(out)
    check_output_folder(out, PREDICT_OUTPUTS, overwrite)
    predictor = _predictor(checkpoint, onnx, backend, threads, model)

    if co2_video or ch4_video:
        from fume.inference.video import EMA_ALPHA, predict_video

        with _progress() as bar:
            task = bar.add_task("predicting frames", total=max_frames)
            result = predict_video(
                predictor, out, co2=co2_video, ch4=ch4_video, fps=fps, ema_alpha=EMA_ALPHA if ema_alpha is None else ema_alpha,
                write_video=not no_video, max_frames=max_frames, progress=lambda k: bar.advance(task, k), overwrite=overwrite,
            )
        unused = {g: n for g, n in result.unused_frames.items() if n}
        out_console.print(f"{result.frames} frames at {result.fps:g} fps -> {result.csv_path}" + (f", {result.video_path}" if result.video_path else ""))
        out_console.print(f"speed: {result.times.describe(result.frames)}")
        if unused:
            out_console.print(f"[yellow]the other recording ended first; unused frames: {unused}[/]")
        return

    from fume.inference.batch import PairInput, collect_pairs, predict_pairs
    from fume.inference.predictor import default_sample_id

    if inputs is not None:
        pairs = collect_pairs(inputs, data_root, allow_outside_root)
    else:
        pairs = [PairInput(default_sample_id(str(co2) if co2 else None, str(ch4) if ch4 else None), co2, ch4)]
    with _progress() as bar:
        task = bar.add_task("predicting pairs", total=len(pairs))
        result = predict_pairs(predictor, pairs, out, overlays=overlays, save_masks=save_masks, batch_size=batch_size,
                               progress=lambda k: bar.advance(task, k), overwrite=overwrite)
    if len(pairs) == 1:
        row = result.predictions[0]
        _print_pair(row, predictor.label_config.class_names)
    else:
        counts: dict[str, int] = {}
        for row in result.predictions:
            counts[str(row["pred_class_name"])] = counts.get(str(row["pred_class_name"]), 0) + 1
        out_console.print(f"{len(pairs)} pairs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    out_console.print(f"written to {result.out_dir}: predictions.csv, json/" + (", overlays/" if overlays else "") + (", masks/" if save_masks else ""))


def _print_pair(row: dict, class_names: list[str]) -> None:
    from fume.contract import key_name

    if row["pred_class_name"] is not None:
        probs = ", ".join(f"{n} {row[f'prob_{key_name(n)}']:.3f}" for n in class_names)
        ph = f"pH {row['ph_min']}-{row['ph_max']}" if row["ph_min"] != row["ph_max"] else f"pH {row['ph_min']}"
        out_console.print(f"[bold]{row['pred_class_name']}[/] ({ph}); probabilities {probs}")
    for gas in ("co2", "ch4"):
        if row.get(f"{gas}_plume_area_px") is not None and row[f"{gas}_frame"]:
            out_console.print(
                f"{gas.upper()}: plume {row[f'{gas}_plume_area_px']} px ({row[f'{gas}_plume_area_percent']:.2f} %), "
                f"tube {'found' if row[f'{gas}_tube_found'] else 'not found'}"
            )


@app.command("export")
def export_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-k", help="A .ckpt written by fume train"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="ONNX file to write (default: the checkpoint's name with .onnx)"),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset (default 17)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: also write OUT's .int8.onnx (static quantization)"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="Paired CSV of your frames to calibrate int8 on (e.g. paired_train_annotations.csv)"),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Paired CSV to measure the int8 change on (default: the run's val split)"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder the CSVs' paths are relative to (default: the root `fume pair` recorded, else the calibration CSV's folder)"),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="Accept absolute CSV paths and paths leaving the dataset root ('..')"),
    calibration_pairs: int = typer.Option(64, "--calibration-pairs", help="Pairs used for calibration (spread over the table)"),
) -> None:
    """ONNX with inputs co2, ch4, modality_mask and a dynamic batch, checked against PyTorch; optionally int8."""
    from fume.data.layout import outside_root_allowed
    from fume.inference.onnx import PARITY_MAX_ABS_DIFF
    from fume.workflows.export import export_checkpoint

    check_out_file(out)
    with _progress() as bar:
        def progress(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        with outside_root_allowed(allow_outside_root):
            result = export_checkpoint(
                checkpoint, out, opset=opset, quantize=quantize, calibration=calibration, validation=validation,
                data_root=data_root, calibration_pairs=calibration_pairs, progress=progress,
            )
    worst = max(result.parity.max_abs_diff.values())
    used = max(result.parity.tolerance_used.values())
    agree = min(result.parity.argmax_agreement.values())
    out_console.print(
        f"wrote {result.onnx_path} ({result.image_size[0]}x{result.image_size[1]}, opset {result.opset}, outputs {', '.join(result.output_names)}); "
        f"parity with PyTorch: max |diff| {worst:.1e} ({100 * used:.0f} % of the allowed {PARITY_MAX_ABS_DIFF:g} x max(1, largest |logit|)), "
        f"same argmax {100 * agree:.3f} %"
    )
    if result.int8_path is not None:
        q = result.int8
        out_console.print(f"wrote {result.int8_path} (int8, calibrated on {q['calibration_pairs']} pairs of {q['calibration_table']})")
        out_console.print(f"validation ({q['fp32']['num_pairs']} pairs of {q['validation_table']}):")
        for key in ("miou", "balanced_accuracy"):
            if key in q["delta"]:
                before, after, delta = q["fp32"][key], q["int8"][key], q["delta"][key]
                colour = "red" if delta < -0.01 else "green"
                out_console.print(f"  {key:<18} fp32 {100 * before:6.2f}  int8 {100 * after:6.2f}  change [{colour}]{100 * delta:+.2f}[/] points")
        n, agree, same = q["int8"]["num_pairs"], q["int8"], []
        if "same_class_as_fp32" in agree:
            kept = round(agree["same_class_as_fp32"] * n)
            same.append(f"the class of [{'green' if kept == n else 'red'}]{kept} of {n} pairs[/]")
        if "same_pixel_as_fp32" in agree:
            same.append(f"the label of {100 * agree['same_pixel_as_fp32']:.2f} % of the pixels")
        if same:
            out_console.print(f"  same as fp32: {', '.join(same)}")
    out_console.print(f"figures in {result.report_path}")


@app.command("benchmark")
def benchmark_command(
    model: Optional[str] = typer.Option(None, "--model", help="Registry model with untrained weights (default fume)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-k", help="A .ckpt written by fume train"),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="An ONNX file (onnxruntime backends only)"),
    size: Optional[str] = typer.Option(None, "--size", help="Frame size WIDTHxHEIGHT (default 640x480)"),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, comma separated, e.g. 1,8"),
    backend: str = typer.Option("torch,onnxruntime", "--backend", help="Comma separated: torch, torch-compile, onnxruntime, onnxruntime-int8"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)"),
    runs: int = typer.Option(30, "--runs", help="Timed calls per measurement"),
    warmup: int = typer.Option(5, "--warmup", help="Untimed calls first"),
    compare: Optional[str] = typer.Option(None, "--compare", help="fastscnn: also time plain Fast-SCNN (two passes, one per gas), alternating"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="Paired CSV to calibrate int8 on (default: synthetic frames)"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder the calibration CSV's paths are relative to"),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="Accept absolute CSV paths and paths leaving the dataset root ('..')"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write every figure to this JSON file"),
) -> None:
    """Parameters, GMACs, latency p50/p90, pairs per second and peak memory per backend and batch size."""
    from rich.table import Table

    from fume.contract import parse_size
    from fume.data.layout import outside_root_allowed
    from fume.inference.benchmark import BACKENDS, format_table, parse_list, run_benchmark
    from fume.io import write_json

    try:
        batches = [int(b) for b in parse_list(batch, "batch")]
    except ValueError:
        raise ConfigError(f"--batch {batch!r} must be comma-separated integers, e.g. 1,8") from None
    with _progress() as bar:
        task = bar.add_task("benchmark", total=None)
        with outside_root_allowed(allow_outside_root):
            report = run_benchmark(
                model=model, checkpoint=checkpoint, onnx=onnx, size=parse_size(size) if size else None, batches=batches,
                backends=parse_list(backend, "backend", BACKENDS), threads=threads, runs=runs, warmup=warmup, compare=compare,
                calibration=calibration, data_root=data_root, progress=lambda text: bar.update(task, description=text),
            )
    m, info = report["machine"], report["model"]
    gmacs = f"{info['gmacs']:.2f} GMACs" if info.get("gmacs") is not None else "GMACs n/a (ONNX input)"
    params = f"{info['params'] / 1e6:.2f} M parameters" if info.get("params") is not None else ""
    out_console.print(f"{info['source']}: {params}{', ' if params else ''}{gmacs} per pair at {report['size']}")
    table = Table(title=f"{m['cpu']} ({m['cpu_count']} cores), medians of {runs} runs")
    for col in ("backend", "batch", "threads", "p50 ms", "p90 ms", "pairs/s", "peak MB", "ref pairs/s", "ratio", "time ratio", "int8 gain"):
        table.add_column(col, justify="left" if col == "backend" else "right", no_wrap=True)
    for row in format_table(report):
        table.add_row(*row)
    # Redirected output would be cut at 80 columns; the table needs about 130.
    (out_console if out_console.is_terminal else Console(width=140)).print(table)
    if compare:
        out_console.print(f"ratio = FUME pairs/s / {compare} pairs/s (two passes, one per gas), timed alternately in one process; "
                          f"time ratio = median of FUME's time / {compare}'s, call by call")
    if any("speedup_over_fp32" in r for r in report["results"]):
        out_console.print("int8 gain = median of fp32 time / int8 time, the two files timed alternately in one process")
    for r in report["results"]:
        if "cuda" in r:
            c = r["cuda"]
            out_console.print(f"GPU {c['device']} (batch {r['batch']}, {c['amp']} autocast, channels_last): p50 {c['p50_ms']:.2f} ms, {c['pairs_per_s']:.0f} pairs/s")
    if json_path is not None:
        write_json(json_path, report)
        out_console.print(f"figures written to {json_path}")
