"""How hard is the synthetic benchmark, and does anything but the gas physics tell the class? (issue 10)

    python benchmarks/label_physics.py [--difficulty realistic] [--size 320x240] [--n-originals 428] [--augmentations 20] [--seeds 0 1 2 3 4]
    python benchmarks/label_physics.py --root DATASET   # an existing dataset instead

Generates one dataset per seed with the default settings (or reads ROOT) and fits logistic
regressions (fume.data.difficulty: 5-fold cross-validation grouped by recording, CO2 and CH4
frames of the same pH paired inside each side) on three feature sets of each frame:

- the true gas-plume area (the label physics, the ceiling of what plume size can tell):
  target each gas alone 0.50-0.75, both 0.80-0.92 and at least +0.08 over the better gas;
- background statistics (mean, std, 16-bin histogram of the pixels outside the masks) and
- the mean plume contrast: cue tests, target at most 0.40 (chance is 0.33) for CO2, CH4 and both.

With the default class mix Transitional has only 11 recordings (3 of them CH4), so figures move
between seeds: the median over seeds is the figure to quote.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fume.contract import parse_size
from fume.data.difficulty import cross_validated, dataset_features
from fume.data.generate import generate_dataset
from fume.data.physics import DIFFICULTIES

FEATURES = ("area", "background", "contrast")


def verdict(medians: dict[str, dict[str, float]]) -> list[str]:
    """The targets missed (empty: all met)."""
    area = medians["area"]
    best = max(area["co2"], area["ch4"])
    missed = [f"area {gas} {area[gas]:.3f} outside 0.50-0.75" for gas in ("co2", "ch4") if not 0.50 <= area[gas] <= 0.75]
    if not 0.80 <= area["both"] <= 0.92:
        missed.append(f"area both {area['both']:.3f} outside 0.80-0.92")
    if area["both"] - best < 0.08:
        missed.append(f"area both only +{area['both'] - best:.3f} over the better gas (< +0.08)")
    missed += [f"{cue} {name} {medians[cue][name]:.3f} > 0.40" for cue in ("background", "contrast") if cue in medians
               for name in ("co2", "ch4", "both") if medians[cue][name] > 0.40]
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="an existing dataset instead of generating one")
    parser.add_argument("--difficulty", default="realistic", choices=DIFFICULTIES)
    parser.add_argument("--physics", default=None, help="a physics YAML file instead of the difficulty's")
    parser.add_argument("--size", default="320x240", help="frame size (plume areas are fractions, size barely matters)")
    parser.add_argument("--n-originals", type=int, default=428)
    parser.add_argument("--augmentations", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    results = []
    for seed in [None] if args.root else args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            root = args.root or Path(tmp) / "d"
            if args.root is None:
                generate_dataset(root, n_originals=args.n_originals, augmentations=args.augmentations,
                                 size=parse_size(args.size, model_input=False), seed=seed,
                                 difficulty=args.difficulty, physics=args.physics)
            table, features = dataset_features(root)
        names = FEATURES if "contrast" in next(iter(features.values())) else FEATURES[:2]  # contrast: generated data only
        result = cross_validated(table, features, names)
        results.append(result)
        where = str(args.root) if args.root else f"seed {seed}"
        print(f"{where}: {result['pairs']} held-out same-pH pairs, by class {result['by_class']}", flush=True)
        for name in names:
            r = result[name]
            print(f"  {name:<10} balanced accuracy  CO2 {r['co2']:.3f}  CH4 {r['ch4']:.3f}  both {r['both']:.3f}", flush=True)
    medians = {name: {k: float(np.median([r[name][k] for r in results])) for k in ("co2", "ch4", "both")} for name in names}
    area = medians["area"]
    print(f"median over {len(results)} dataset(s), balanced accuracy of a logistic regression on")
    print(f"  CO2 plume area alone : {area['co2']:.3f}   (target 0.50-0.75)")
    print(f"  CH4 plume area alone : {area['ch4']:.3f}   (target 0.50-0.75)")
    print(f"  both areas           : {area['both']:.3f}   (+{area['both'] - max(area['co2'], area['ch4']):.3f} over the better gas; "
          "target 0.80-0.92 and >= +0.08)")
    for cue in names[1:]:
        m = medians[cue]
        print(f"  {cue + ' (cue test)':<21}: CO2 {m['co2']:.3f}  CH4 {m['ch4']:.3f}  both {m['both']:.3f}   (target <= 0.40)")
    missed = verdict(medians)
    print("PASS" if not missed else "FAIL: " + "; ".join(missed))


if __name__ == "__main__":
    main()
