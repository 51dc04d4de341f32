"""The whole video path at camera rate: `fume predict` on a CO2 and a CH4 640x480 video (decode
both, pair, pre-process, infer, smooth, draw overlays, encode annotated.mp4) with the ONNX backend,
and headless (--no-video-output). Goal: >= 25 pairs/s on a quiet machine.

    .venv/bin/python benchmarks/video_speed.py [--frames 120] [--checkpoint best.ckpt] [--threads 2]

Without --checkpoint an untrained FUME is used (speed does not depend on the weights). Prints
pairs/s and each stage's time per pair (decoding and drawing/encoding run in their own threads,
overlapping inference, so the stages add up to more than the wall time), and the load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from fume.config import load_config
from fume.data.sequence import generate_sequence
from fume.inference import Predictor
from fume.inference.video import predict_video
from fume.machine import machine_description

GOAL_PAIRS_PER_S = 25.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode, alternating")
    args = parser.parse_args()

    if args.checkpoint:
        predictor = Predictor.from_checkpoint(args.checkpoint, backend="onnxruntime", threads=args.threads)
    else:
        from fume.models import create_model

        config = load_config(None, ["data.image_size=[640,480]"])
        predictor = Predictor.from_model(create_model("fume"), config, backend="onnxruntime", threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="fume-video-bench-") as tmp:
        seq = Path(tmp) / "seq"
        print(f"... rendering two {args.frames}-frame 640x480 recordings", flush=True)
        generate_sequence(seq, n_frames=args.frames, size=(640, 480), fps=30.0, ph=[6.5, 5.3], seed=0)
        print(f"machine: {machine_description()}; load average before {os.getloadavg()}")
        runs: dict[str, list] = {"with annotated.mp4": [], "headless (--no-video-output)": []}
        for r in range(args.rounds):
            for mode in runs:
                write = mode.startswith("with")
                result = predict_video(predictor, Path(tmp) / f"out{r}{write}", co2=seq / "co2.mp4", ch4=seq / "ch4.mp4", write_video=write)
                runs[mode].append(result)
        print(f"load average after {os.getloadavg()}")
        for mode, results in runs.items():
            best = max(results, key=lambda res: res.frames / res.times.wall)
            rate = best.frames / best.times.wall
            print(f"{mode:<30} {best.times.describe(best.frames)}  "
                  f"(goal {GOAL_PAIRS_PER_S:.0f} pairs/s: {'met' if rate >= GOAL_PAIRS_PER_S else 'not met'}; best of {len(results)})")


if __name__ == "__main__":
    main()
