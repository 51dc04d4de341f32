"""What a simple model can learn from a dataset's frames: the label physics and unwanted cues.

For every frame (from its mask and image, as written): the gas-plume area (mask == 2, fraction of
the frame) and background statistics (mean, standard deviation and a 16-bin histogram, as
fractions, of the pixels the mask calls background); for generated data also the plume's mean
contrast (its recording's mean darkening inside the mask, before noise, from the generator's
synthetic_truth.csv: the background under the plume is known there only). A logistic regression
(class_weight="balanced") on a feature set of the CO2 frame, the CH4 frame or both is scored by
balanced accuracy with 5-fold cross-validation over recordings: folds are grouped by
original_sample_id and stratified by class, and CO2 and CH4 frames of the same pH are paired
(`random`, as `fume pair`) inside each side, so no recording is both trained and tested on.

The plume areas should tell the class only together and not perfectly; background and contrast
should not tell it at all (about chance, 1/3 for three classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fume.contract import BACKGROUND, GAS, GASES
from fume.data.frames import load_frame, load_mask
from fume.data.generate import TRUTH_FILE
from fume.data.layout import read_annotations
from fume.data.pairing import pair_table

HISTOGRAM_BINS = 16


def frame_features(frame: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """{"area": [1], "background": [2 + 16]} of one frame and its mask."""
    background = mask == BACKGROUND
    pixels = frame[background].astype(np.float64)
    histogram = np.histogram(pixels, bins=HISTOGRAM_BINS, range=(0, 256))[0] / max(pixels.size, 1)
    stats = [pixels.mean(), pixels.std()] if pixels.size else [0.0, 0.0]
    return {"area": np.array([(mask == GAS).mean()]), "background": np.array(stats + histogram.tolist())}


def dataset_features(root: str | Path) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """The annotation table of `root` and the features of each frame, by mask path; "contrast"
    too when the generator's truth file is there."""
    root = Path(root)
    table = read_annotations(root)
    darkening = {}
    if (root / TRUTH_FILE).is_file():
        truth = pd.read_csv(root / TRUTH_FILE, dtype={"original_sample_id": str})
        darkening = {(r.original_sample_id, r.gas_type): r.darkening for r in truth.itertuples()}
    features = {}
    for row in table.itertuples():
        features[row.mask_path] = frame_features(load_frame(root / row.frame_path), load_mask(root / row.mask_path))
        if darkening:
            features[row.mask_path]["contrast"] = np.array([darkening[row.original_sample_id, row.gas_type]])
    return table, features


def cross_validated(table: pd.DataFrame, features: dict[str, dict[str, np.ndarray]], names: tuple[str, ...] = ("area", "background", "contrast"), folds: int = 5) -> dict:
    """{name: balanced accuracy of a logistic regression on that feature of the CO2 frame, the CH4
    frame and both} from predictions on held-out recordings (see the module docstring), plus the
    number of held-out pairs and their classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=0)
    models = [(name, part) for name in names for part in (*GASES, "both")]
    truth, predicted = [], {model: [] for model in models}

    def pairs_of(rows: pd.DataFrame, seed: int) -> tuple[dict, np.ndarray]:
        pairs = pair_table(rows, "random", seed=seed)
        pairs = pairs[pairs["is_paired"]]
        x = {}
        for name in names:
            one = {gas: np.stack([features[p][name] for p in pairs[f"{gas}_mask"]]) for gas in GASES}
            x |= {(name, gas): one[gas] for gas in GASES} | {(name, "both"): np.hstack([one[gas] for gas in GASES])}
        return x, pairs["class_id"].to_numpy()

    for k, (train_idx, test_idx) in enumerate(splitter.split(table, table["class_id"], groups=table["original_sample_id"])):
        x_train, y_train = pairs_of(table.iloc[train_idx], seed=k)
        x_test, y_test = pairs_of(table.iloc[test_idx], seed=k)
        truth.append(y_test)
        for model in models:
            fitted = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
            predicted[model].append(fitted.fit(x_train[model], y_train).predict(x_test[model]))
    y = np.concatenate(truth)
    scores = {name: {} for name in names}
    for (name, part), p in predicted.items():
        scores[name][part] = float(balanced_accuracy_score(y, np.concatenate(p)))
    return scores | {"pairs": len(y), "by_class": np.bincount(y, minlength=3).tolist()}
