"""The README's figure of synthetic frames and masks: one recording per gas and class.

    python benchmarks/synthetic_examples.py [--difficulty realistic] [--size 640x480] [--seed 0] [--out docs/figures/synthetic_frames_and_masks.png]

For each class (a middle pH of it) and gas, one original frame as `fume generate` writes it and
its mask (black background, white tube, gray gas), with the mask's share of the frame and the
mean darkening inside it (from the renderer's clean background, before noise).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fume.config import LabelConfig
from fume.contract import GAS, GASES, TUBE, parse_size
from fume.data.physics import DIFFICULTIES, load_physics
from fume.data.render import Recording, render_scene
from fume.io import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--difficulty", default="realistic", choices=DIFFICULTIES)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/figures/synthetic_frames_and_masks.png"))
    args = parser.parse_args()
    physics, labels, size = load_physics(difficulty=args.difficulty), LabelConfig(), parse_size(args.size, model_input=False)
    columns = [(c, labels.phs_of_class(c)[len(labels.phs_of_class(c)) // 2]) for c in range(labels.num_classes)]
    fig, axes = plt.subplots(len(GASES), 2 * len(columns), figsize=(4.2 * len(columns), 3.4), constrained_layout=True)
    for row, gas in enumerate(GASES):
        for col, (class_id, ph) in enumerate(columns):
            rec = Recording(10 * row + col, "example", gas, ph, class_id)
            r = render_scene(rec, size, physics, np.random.default_rng([args.seed, row, col]))
            gas_px = r.mask == GAS
            darkening = float((1 - r.clean[gas_px] / r.background[gas_px]).mean()) if gas_px.any() else 0.0
            shown = np.zeros(r.mask.shape, np.float32)
            shown[gas_px], shown[r.mask == TUBE] = 0.5, 1.0
            ax_frame, ax_mask = axes[row, 2 * col], axes[row, 2 * col + 1]
            ax_frame.imshow(r.frame, cmap="gray", vmin=0, vmax=255)
            ax_mask.imshow(shown, cmap="gray", vmin=0, vmax=1)
            ax_frame.set_title(f"{gas.upper()} pH {ph} ({labels.class_names[class_id]})", fontsize=9)
            ax_mask.set_title(f"mask: gas {gas_px.mean():.0%}, darkening {darkening:.0%}", fontsize=9)
            for ax in (ax_frame, ax_mask):
                ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"FUME synthetic frames ({args.difficulty}, {size[0]}x{size[1]}, seed {args.seed}): frame and mask per gas and class", fontsize=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
