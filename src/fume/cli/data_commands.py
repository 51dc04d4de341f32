"""Data sub-commands: generate, validate-data, split, audit-leakage, pair, import-layout, export-for-labelling."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fume.cli import app
from fume.contract import MAX_IMAGE_PIXELS

out = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


@app.command("generate")
def generate(
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Folder to write the dataset into (must be empty)."),
    n_originals: int = typer.Option(428, "--n-originals", help="Recordings (original frames)."),
    augmentations: int = typer.Option(20, "--augmentations", help="Augmented copies per original."),
    size: str = typer.Option("640x480", "--size", help="Frame size WIDTHxHEIGHT."),
    seed: int = typer.Option(0, "--seed"),
    class_mix: tuple[float, float, float] = typer.Option(
        (0.45, 0.026, 0.524), "--class-mix", help="Shares of Healthy, Transitional, Acidotic recordings."
    ),
    co2_fraction: float = typer.Option(0.69, "--co2-fraction", help="Share of CO2 recordings (the rest CH4)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder (the old CSV is backed up)."),
    difficulty: str = typer.Option(
        None, "--difficulty", help="realistic (default: the benchmark) | easy (strong, clean plumes: tests and smoke runs only)."
    ),
    physics: Path = typer.Option(None, "--physics", help="A physics YAML file (schema of fume/configs/synthetic/realistic.yaml) instead of --difficulty."),
    sequence: bool = typer.Option(False, "--sequence", help="Instead: a short CO2 + CH4 video sequence (drifting, pulsing plume) for video mode."),
    frames: int = typer.Option(60, "--frames", help="--sequence: number of frames."),
    fps: float = typer.Option(10.0, "--fps", help="--sequence: frames per second."),
    ph: str = typer.Option("6.5", "--ph", help="--sequence: pH level(s), comma separated, each for an equal share of the frames."),
) -> None:
    """Write the synthetic dual-gas OGI dataset in the real layout (annotations.csv + PNGs), or with --sequence a video sequence."""
    import time

    from fume.contract import parse_size
    from fume.data.generate import generate_dataset
    from fume.errors import ConfigError

    frame_size = parse_size(size, model_input=False)
    if difficulty is not None and physics is not None:
        raise ConfigError("give --difficulty or --physics, not both (a physics file sets everything the difficulty would)")
    look = {"difficulty": difficulty or "realistic", "physics": physics}
    if sequence:
        from fume.data.sequence import generate_sequence, parse_ph_list

        with _progress() as bar:
            task = bar.add_task("rendering frames", total=frames)
            generate_sequence(out_dir, n_frames=frames, size=frame_size, fps=fps, ph=parse_ph_list(ph), seed=seed,
                              overwrite=overwrite, progress=lambda k: bar.advance(task, k), **look)
        out.print(f"wrote {frames} CO2 + CH4 frames of {frame_size[0]}x{frame_size[1]} at {fps:g} fps, co2.mp4, ch4.mp4 "
                  f"and {out_dir / 'sequence.csv'}")
        return
    total = n_originals * (augmentations + 1)
    start = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("generating frames", total=total)
        table = generate_dataset(
            out_dir,
            n_originals=n_originals,
            augmentations=augmentations,
            size=frame_size,
            seed=seed,
            class_mix=class_mix,
            co2_fraction=co2_fraction,
            overwrite=overwrite,
            progress=lambda k: bar.advance(task, k),
            **look,
        )
    seconds = time.perf_counter() - start
    out.print(f"wrote {len(table)} frames of {frame_size[0]}x{frame_size[1]} (synthetic, {physics or look['difficulty']}) and "
              f"{out_dir / 'annotations.csv'} in {seconds:.1f} s ({len(table) / seconds:.0f} frames/s)")
    counts = table.groupby(["class_name", "gas_type"]).size().unstack(fill_value=0)
    out.print(counts.to_string())


@app.command("validate-data")
def validate_data(
    root: Path = typer.Argument(..., help="Dataset root holding annotations.csv or split tables."),
    no_files: bool = typer.Option(False, "--no-files", help="Check the tables only, not the images."),
    max_image_pixels: int = typer.Option(MAX_IMAGE_PIXELS, "--max-image-pixels", help="Larger images are reported, not decoded (decompression bombs)"),
    allow_outside_root: bool = typer.Option(False, "--allow-outside-root", help="Accept absolute paths and paths leaving ROOT ('..') in the tables"),
) -> None:
    """Check every row and file; exit 1 with a report of each defect found."""
    from fume.data.validate import validate_dataset

    with _progress() as bar:
        task = bar.add_task("checking files", total=None)
        report = validate_dataset(
            root, check_files=not no_files, max_image_pixels=max_image_pixels, allow_outside_root=allow_outside_root,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print(report.render())
    if not report.ok:
        raise typer.Exit(1)


@app.command("split")
def split(
    root: Path = typer.Argument(..., help="Dataset root with annotations.csv (or existing split tables)."),
    ratios: tuple[float, float, float] = typer.Option((0.7, 0.15, 0.15), "--ratios", help="train val test"),
    seed: int = typer.Option(0, "--seed"),
    random: bool = typer.Option(False, "--random", help="Naive row-level split (leaks recordings across splits)."),
    group_by: str = typer.Option(
        None, "--group-by", help="Group by this column instead of original_sample_id (e.g. animal_id: each animal in one split)."
    ),
) -> None:
    """Write {train,val,test}_annotations.csv: grouped by recording and stratified by class."""
    from fume.data.layout import normalise_annotations
    from fume.data.split import split_dataset

    parts = split_dataset(root, ratios=ratios, seed=seed, random=random, group_by=group_by)
    kind = "random row-level" if random else f"grouped by {group_by or 'original_sample_id'}, stratified by class"
    out.print(f"split ({kind}) written to {root}")
    for name, part in parts.items():
        t = normalise_annotations(part, name)
        by_class = t["class_name"].value_counts().sort_index().to_dict()
        groups = f"  {t[group_by].nunique():>5} {group_by}" if group_by and group_by != "original_sample_id" else ""
        out.print(f"  {name:<5} {len(t):>6} rows  {t['original_sample_id'].nunique():>5} originals{groups}  {by_class}")


@app.command("audit-leakage")
def audit_leakage_command(
    root: Path = typer.Argument(..., help="Dataset root with split tables."),
    group_by: str = typer.Option(None, "--group-by", help="Also count the values of this column (e.g. animal_id) the splits share."),
) -> None:
    """Report originals and rows shared between train/val/test; exit 1 if any."""
    from fume.data.split import audit_leakage

    report = audit_leakage(root, group_by=group_by)
    print(report.render())
    if not report.ok:
        raise typer.Exit(1)


@app.command("pair")
def pair(
    root: Path = typer.Argument(..., help="Dataset root with split tables."),
    out_dir: Path = typer.Option(None, "--out", help="Where to write paired_*.csv (default ROOT)."),
    strategy: str = typer.Option("random", "--strategy", help="random | original_based"),
    seed: int = typer.Option(0, "--seed"),
    reuse: bool = typer.Option(
        True, "--reuse/--no-reuse", help="random: reuse frames of the rarer gas so every frame gets a partner."
    ),
) -> None:
    """Pair CO2 and CH4 frames of the same pH and class into paired_{split}_annotations.csv."""
    from fume.data.pairing import pair_dataset, pairing_statistics

    result = pair_dataset(root, out=out_dir, strategy=strategy, seed=seed, reuse=reuse)
    out.print(f"paired ({strategy}{', reuse' if reuse and strategy == 'random' else ''}) -> {out_dir or root}")
    for split_name, table in result.items():
        s = pairing_statistics(table)
        out.print(
            f"  {split_name:<5} total {s['total']:>6}  paired {s['paired']:>6}  CO2-only {s['co2_only']:>5}  "
            f"CH4-only {s['ch4_only']:>5}"
        )
        out.print(f"        by class {s['by_class']}")
        out.print(f"        by pH    {s['by_ph']}")
        if table.attrs.get("unlabelled_left_out"):
            out.print(f"        {table.attrs['unlabelled_left_out']} unlabelled frames left out (no mask)")


@app.command("import-recording")
def import_recording_command(
    source: Path = typer.Argument(
        ..., metavar="FILE", help="A video file (MP4, AVI, ...; read with PyAV), a FLIR .seq/.fff sequence (fume[flir]) or a folder of frames."
    ),
    gas: str = typer.Option(..., "--gas", help="co2 | ch4"),
    ph: float = typer.Option(..., "--ph", help="The recording's pH level (one of the label configuration's levels)."),
    root: Path = typer.Option(..., "--out", help="Dataset root: frames go to ROOT/recordings/ID/GAS/, rows to ROOT/annotations.csv."),
    every: int = typer.Option(1, "--every", help="Keep every N-th frame."),
    start: float = typer.Option(None, "--start", help="First second to import (default: the beginning)."),
    end: float = typer.Option(None, "--end", help="Last second to import (default: the end)."),
    recording_id: str = typer.Option(None, "--recording-id", help="original_sample_id of the rows (default: the file's stem)."),
    animal_id: str = typer.Option(None, "--animal-id", help="animal_id of the rows."),
    fps: float = typer.Option(None, "--fps", help="Frame rate of a folder of frames (default 30) or to override a video's."),
    config: Path = typer.Option(None, "--config", "-c", help="Config file or shipped name whose data.labels map pH to class (default: FUME's)."),
    radiometric: bool = typer.Option(
        False, "--radiometric", help="Temperatures (deg C, float TIFF) from a FLIR sequence or a folder of radiometric FLIR JPEGs, not raw counts / pictures."
    ),
) -> None:
    """Import a recording's frames as unlabelled rows (no mask) of a dataset; importing it again replaces them."""
    from fume.data.recordings import import_recording

    labels = None
    if config is not None:
        from fume.config import load_config

        labels = load_config(config).data.labels
    result = import_recording(source, root, gas, ph, every=every, start=start, end=end, recording_id=recording_id,
                              animal_id=animal_id, label_config=labels, fps=fps, radiometric=radiometric)
    replaced = f", replacing {result.replaced_rows} earlier rows" if result.replaced_rows else ""
    out.print(f"imported {result.frames} {result.gas.upper()} frames of recording {result.recording_id} into {result.folder}"
              f" and {result.annotations}{replaced} (unlabelled: no masks)")


@app.command("import-layout")
def import_layout_command(
    src: Path = typer.Argument(..., help="MMSegmentation folder (img_dir/, ann_dir/) or CVAT 'Segmentation mask 1.1' export."),
    fmt: str = typer.Option(..., "--format", help="mmseg | cvat-mask"),
    root: Path = typer.Option(..., "--out", help="FUME dataset root to write into (rows appended to annotations.csv)."),
    gas: str = typer.Option(..., "--gas", help="co2 | ch4"),
    ph: float = typer.Option(..., "--ph", help="pH level of the recording (its class comes from the label configuration)."),
    recording_id: str = typer.Option(None, "--recording-id", help="original_sample_id of the frames (default: SRC's folder name)."),
    label_map: str = typer.Option(
        None, "--label-map",
        help="mmseg: fume_class=index,... (default background=0,tube=1,gas=2); cvat-mask: LABEL=fume_class,...",
    ),
) -> None:
    """Convert an MMSegmentation folder or a CVAT mask export into FUME's layout; re-importing a recording replaces it."""
    from fume.cli import check_out_folder
    from fume.data.importers import import_layout

    check_out_folder(root)
    result = import_layout(src, fmt, root, gas, ph, recording_id=recording_id, label_map=label_map)
    again = f", replacing {result.replaced} earlier row(s)" if result.replaced else ""
    out.print(f"imported {result.frames} {result.gas} frame(s) of recording {result.recording_id} into {root}{again}")


@app.command("export-for-labelling")
def export_for_labelling_command(
    root: Path = typer.Argument(..., help="FUME dataset root."),
    fmt: str = typer.Option("cvat-mask", "--format", help="cvat-mask (CVAT 'Segmentation mask 1.1')"),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the CVAT export into."),
    gas: str = typer.Option(None, "--gas", help="Only this gas (co2 | ch4)."),
    recording: str = typer.Option(None, "--recording", help="Only this recording (original_sample_id): one CVAT task per recording."),
) -> None:
    """Write frames and masks as a CVAT mask export, to label in CVAT and bring back with import-layout."""
    from fume.cli import check_out_folder
    from fume.data.importers import export_for_labelling

    check_out_folder(out_dir)
    n = export_for_labelling(root, fmt, out_dir, gas=gas, recording=recording)
    out.print(f"wrote {n} frame(s), their masks and labelmap.txt to {out_dir} (CVAT: import as 'Segmentation mask 1.1')")
