"""Image encode of the timm CNN / hierarchical towers: anyclip (JAX and torch) vs open_clip + timm, same run.

Runs ``bench_image_encode.py`` (one process per Keras backend, open_clip timed next to anyclip in each) for
each model and prints its lines: images/s of both sides and the ratio anyclip / open_clip.

    python bench/bench_timm_encode.py                                   # convnext_base, batch 8
    python bench/bench_timm_encode.py --models convnext_base,swin_base_patch4_window7_224 --batch 16
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="convnext_base", help="comma-separated anyclip / open_clip model names")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backends", default="jax,torch", help="comma-separated Keras backends, one process each")
    args = parser.parse_args()
    script = Path(__file__).with_name("bench_image_encode.py")
    for model in args.models.split(","):
        subprocess.run([sys.executable, str(script), "--model", model, "--batch", str(args.batch), "--repeats",
                        str(args.repeats), "--backends", args.backends], env=dict(os.environ), check=True)


if __name__ == "__main__":
    main()
