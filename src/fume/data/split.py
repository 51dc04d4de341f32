"""Train/val/test splits that keep every recording in one split: the augmented copies of a
recording (same `original_sample_id`) never sit on both sides of the train/test boundary.

No split table is ever written empty: a source without rows, or ratios and a dataset so small that
some split would get no recording (a zero ratio included), raise DataError and nothing is written.
Training refuses an empty train or val table and evaluation has nothing to score in an empty test
table, so an empty split is always a mistake, better reported by `fume split` than later.

The default split is grouped by `original_sample_id` and stratified by class, and within a class
by pH level and by which gases a recording was filmed with (see `assign_splits`). `random`
reproduces the naive row-level split of the original work, which leaks augmented copies of a
recording across splits; `audit_leakage` measures that.

`group_by="animal_id"` (any column of the tables) groups by that column instead, so that each
animal sits in one split; every row must then hold a value for it (DataError naming the CSV and its
line otherwise) and a recording must not span two values (DataError). An animal takes the most
common class of its rows for the stratification. The optional columns `animal_id`, `session_id`
and `timestamp` (layout.WHO_WHEN_COLUMNS), like any other column, are written to the split tables
unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from fume.data.layout import (
    ANNOTATIONS_FILE,
    SPLITS,
    normalise_annotations,
    read_annotations,
    read_csv,
    require_rows,
    split_table_name,
    split_tables_present,
)
from fume.errors import ConfigError, DataError
from fume.io import write_csv

GROUP_COLUMN = "original_sample_id"


def require_group_values(table: pd.DataFrame, column: str, source: str | os.PathLike) -> None:
    """DataError naming `source` when `column` is absent or a row has no value for it."""
    if column not in table.columns:
        raise DataError(f"{source}: no column {column!r} to group by; columns are {list(table.columns)}")
    empty = table[column].astype(str).str.strip() == ""
    if empty.any():
        line = int(np.flatnonzero(empty.to_numpy())[0]) + 2  # 1-based, after the header
        raise DataError(
            f"{source}: row {line - 1} (line {line}) has no {column}; every row needs one to group by {column} "
            f"({int(empty.sum())} row(s) without)"
        )


def read_source_table(root: str | os.PathLike, group_by: str | None = None) -> tuple[pd.DataFrame, str]:
    """The rows to split, as written by the user: `annotations.csv`, else the union of the split
    tables present. Returns (table, description of its source). With `group_by`, every row must
    hold a value for that column (DataError naming the CSV and row)."""
    root = Path(root)
    if (root / ANNOTATIONS_FILE).is_file():
        path = root / ANNOTATIONS_FILE
        table = read_csv(path)
        normalise_annotations(table, path)  # fails on missing columns or text in numeric columns
        if group_by:
            require_group_values(table, group_by, path)
        return require_rows(table, path, "nothing to split"), str(path)
    present = split_tables_present(root)
    if not present:
        names = ", ".join([ANNOTATIONS_FILE] + [split_table_name(s) for s in SPLITS])
        raise DataError(f"no annotation table in {root}; expected one of {names}")
    parts = []
    for split in present:
        path = root / split_table_name(split)
        part = read_csv(path)
        normalise_annotations(part, path)
        if group_by:
            require_group_values(part, group_by, path)
        parts.append(part)
    sources = " + ".join(split_table_name(s) for s in present)
    return require_rows(pd.concat(parts, ignore_index=True), f"{root}: {sources}", "nothing to split"), sources


def _check_ratios(ratios: tuple[float, ...]) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or r.sum() <= 0:
        raise ConfigError(f"ratios must be three non-negative numbers (train val test), got {list(ratios)}")
    return r / r.sum()


def assign_splits(
    class_ids: np.ndarray,
    groups: np.ndarray | None,
    ratios: tuple[float, ...],
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """The split index (0 train, 1 val, 2 test) of each row.

    With `groups`, all rows of a group go to one split (a group takes the class and stratum of
    its first row). Units (groups, or rows) are balanced per class and, within a class, per
    `strata` (e.g. pH level and which gases a recording has): every split first gets one unit of
    each class (from the stratum with the largest units, e.g. recordings with both gases), then one
    of each stratum large enough to expect half a unit in the smallest split;
    the rest go, interleaved across strata, to the split furthest below its share of rows.
    """
    share = _check_ratios(ratios)
    active = [s for s in (2, 1, 0) if share[s] > 0]  # small splits first when seeding
    rng = np.random.default_rng(seed)
    units = groups if groups is not None else np.arange(len(class_ids))
    frame = pd.DataFrame({"unit": units, "cls": class_ids, "stratum": strata if strata is not None else 0})
    by_unit = frame.groupby("unit", sort=True).agg(cls=("cls", "first"), stratum=("stratum", "first"), rows=("cls", "size"))
    assignment: dict = {}
    for cls in sorted(by_unit["cls"].unique()):
        members = by_unit[by_unit["cls"] == cls]
        class_target = share * members["rows"].sum()
        class_filled = np.zeros(3)
        queues, targets, filled = {}, {}, {}
        for key, part in members.groupby("stratum", sort=True):
            order = part.index.to_numpy()[rng.permutation(len(part))]
            queues[key] = list(order)
            targets[key] = share * part["rows"].sum()
            filled[key] = np.zeros(3)

        def give(unit, key, split: int) -> None:
            assignment[unit] = split
            rows = by_unit.at[unit, "rows"]
            filled[key][split] += rows
            class_filled[split] += rows

        for split in active:
            if class_filled[split] == 0:
                # Prefer the stratum of the largest recordings (e.g. those filmed with both gases).
                key = max(queues, key=lambda k: (_mean_rows(by_unit, queues[k]), len(queues[k])))
                if queues[key]:
                    give(queues[key].pop(0), key, split)
        smallest = min(share[s] for s in active)
        for key, queue in queues.items():
            if len(queue) >= len(active) and len(queue) * smallest >= 0.5:  # expected in the smallest split too
                for split in active:
                    give(queue.pop(0), key, split)
        while any(queues.values()):  # round robin over strata, so each is spread over the splits
            for key, queue in queues.items():
                if queue:
                    need = (targets[key] - filled[key]) + (class_target - class_filled)
                    need[[s for s in range(3) if s not in active]] = -np.inf
                    give(queue.pop(0), key, int(np.argmax(need)))
    return np.array([assignment[u] for u in units], dtype=np.int64)


def _mean_rows(by_unit: pd.DataFrame, units: list) -> float:
    return float(by_unit.loc[units, "rows"].mean()) if units else -1.0


def split_strata(table: pd.DataFrame, grouped: bool, group_by: str = GROUP_COLUMN) -> np.ndarray:
    """Stratum of each row: pH level and, for grouped splits, the gases its group (recording, or
    `group_by`) has (so that each split gets recordings filmed with both gases at each pH, and
    pairing finds partners)."""
    ph = table["ph_value"].round(2).astype(str)
    if not grouped:
        return (ph + "|" + table["gas_type"]).to_numpy()
    gases = table.groupby(group_by)["gas_type"].transform(lambda g: "+".join(sorted(set(g))))
    return (ph + "|" + gases).to_numpy()


def split_dataset(
    root: str | os.PathLike,
    ratios: tuple[float, ...] = (0.7, 0.15, 0.15),
    seed: int = 0,
    random: bool = False,
    group_by: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Write `{train,val,test}_annotations.csv` into `root` (existing tables are backed up first).
    Returns {split: table}. `group_by` (e.g. "animal_id"): keep each value of that column in one
    split instead of each recording (see the module docstring)."""
    root = Path(root)
    if random and group_by:
        raise ConfigError("a random split cannot be grouped; drop --random or --group-by")
    column = group_by or GROUP_COLUMN
    raw, source = read_source_table(root, group_by if column != GROUP_COLUMN else None)
    table = normalise_annotations(raw, root)
    if not random:
        mixed = table.groupby("original_sample_id")["class_id"].nunique()
        if (mixed > 1).any():
            raise DataError(
                f"original_sample_id {mixed.index[mixed > 1][0]!r} has rows of different classes; "
                "a recording must have one class"
            )
    class_ids = table["class_id"].to_numpy()
    if column != GROUP_COLUMN:
        table[column] = table[column].astype(str).str.strip()
        spans = table.groupby("original_sample_id")[column].nunique()
        if (spans > 1).any():
            sample = spans.index[spans > 1][0]
            values = sorted(table.loc[table["original_sample_id"] == sample, column].unique())
            raise DataError(
                f"{source}: recording (original_sample_id) {sample!r} spans {len(values)} values of {column} {values}; "
                f"a recording must belong to one {column}"
            )
        # A group takes its most common class (ties: the smallest class id) for the stratification.
        majority = table.groupby(column)["class_id"].agg(lambda c: c.value_counts().sort_index().idxmax())
        class_ids = table[column].map(majority).to_numpy()
    groups = None if random else table[column].to_numpy()
    strata = split_strata(table, grouped=not random, group_by=column)
    which = assign_splits(class_ids, groups, ratios, seed, strata)
    empty = [split for i, split in enumerate(SPLITS) if not (which == i).any()]
    if empty:
        label = "recordings" if column == GROUP_COLUMN else f"values of {column}"
        units = f"{table[column].nunique()} {label}" if groups is not None else f"{len(table)} rows"
        raise DataError(
            f"split {', '.join(empty)} of {source} would have no rows: {units} with ratios {list(ratios)}; "
            "every split needs rows (training uses train and val, evaluation test): add data or raise its ratio"
        )
    result = {}
    for i, split in enumerate(SPLITS):
        part = raw[which == i].drop(columns=["split"], errors="ignore").reset_index(drop=True)
        write_csv(root / split_table_name(split), part, backup=True)
        result[split] = part
    return result


@dataclass
class LeakageReport:
    """What the splits of a dataset share. `shared[(a, b)]` = (originals, rows of a, rows of b,
    identical frame paths). With `group_by` (e.g. "animal_id"), `groups[split]` counts its values
    in each split and `shared_groups[(a, b)]` the values two splits share."""

    rows: dict[str, int]
    originals: dict[str, int]
    shared: dict[tuple[str, str], tuple[int, int, int, int]] = field(default_factory=dict)
    group_by: str | None = None
    groups: dict[str, int] = field(default_factory=dict)
    shared_groups: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(sum(v) == 0 for v in self.shared.values()) and not any(self.shared_groups.values())

    def render(self) -> str:
        g = self.group_by
        lines = ["split   rows  originals" + (f"  {g}" if g else "")]
        lines += [f"{s:<6}{self.rows[s]:>6}{self.originals[s]:>11}" + (f"{self.groups[s]:>{len(g) + 2}}" if g else "") for s in self.rows]
        lines.append("")
        lines.append("pair        shared originals  rows (first)  rows (second)  identical frames" + (f"  shared {g}" if g else ""))
        for (a, b), (orig, rows_a, rows_b, same) in self.shared.items():
            extra = f"{self.shared_groups[(a, b)]:>{len(g) + 9}}" if g else ""
            lines.append(f"{a + '/' + b:<12}{orig:>16}{rows_a:>14}{rows_b:>15}{same:>18}{extra}")
        lines.append("")
        if self.ok:
            lines.append("no leakage: no recording is in two splits" + (f", no {g} either" if g else ""))
        else:
            shared_g = sum(self.shared_groups.values())
            lines.append("LEAKAGE: recordings shared between splits" if not g else
                         f"LEAKAGE: {shared_g} {g} value(s) and {sum(v[0] for v in self.shared.values())} recording(s) shared between splits")
        return "\n".join(lines)


def audit_leakage(root: str | os.PathLike, group_by: str | None = None) -> LeakageReport:
    """Compare the split tables of `root` by `original_sample_id` and frame path, and with
    `group_by` (e.g. "animal_id", as `split_dataset(group_by=...)`) by that column too: each row
    needs a value (DataError naming the CSV and row)."""
    present = split_tables_present(root)
    if len(present) < 2:
        raise DataError(f"{root} has {len(present)} split table(s); run `fume split {root}` first")
    tables = {s: read_annotations(root, s) for s in present}
    if group_by:
        for s, t in tables.items():
            require_group_values(t, group_by, Path(root) / split_table_name(s))
            t[group_by] = t[group_by].astype(str).str.strip()
    report = LeakageReport(
        rows={s: len(t) for s, t in tables.items()},
        originals={s: t["original_sample_id"].nunique() for s, t in tables.items()},
        group_by=group_by or None,
        groups={s: t[group_by].nunique() for s, t in tables.items()} if group_by else {},
    )
    for a, b in combinations(present, 2):
        ta, tb = tables[a], tables[b]
        shared = set(ta["original_sample_id"]) & set(tb["original_sample_id"])
        report.shared[(a, b)] = (
            len(shared),
            int(ta["original_sample_id"].isin(shared).sum()),
            int(tb["original_sample_id"].isin(shared).sum()),
            len(set(ta["frame_path"]) & set(tb["frame_path"])),
        )
        if group_by:
            report.shared_groups[(a, b)] = len(set(ta[group_by]) & set(tb[group_by]))
    return report
