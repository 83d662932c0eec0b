"""Image encode of any config: anyclip (JAX and torch backends) vs open_clip, same machine, same random weights.

Prints images/s of each side and the ratio anyclip / open_clip. Each Keras backend runs in its own
process (Keras fixes its backend once per process); open_clip is timed in each, next to it:

    python bench/bench_image_encode.py                          # RN50, batch 8, 224 px, jax then torch
    python bench/bench_image_encode.py --model ViT-B-16-SigLIP2 # timm towers: open_clip runs timm's ViT
    python bench/bench_image_encode.py --model RN101 --batch 16 --backends torch
"""

import argparse
import os
import subprocess
import sys

import numpy as np
from timing import timed


def run_backend(args):
    import keras
    import open_clip
    import torch

    import anyclip
    from anyclip.weights.mapping import load_state_dict

    torch.set_grad_enabled(False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ref = open_clip.create_model(args.model).eval().to(device)
    state = {k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()}
    model = anyclip.create_model(args.model, load_weights=False)
    load_state_dict(model, state)
    size = model.image_size
    images = np.random.default_rng(0).standard_normal((args.batch, *size, 3)).astype(np.float32)
    images_t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    ours = timed(lambda: keras.ops.convert_to_numpy(model.encode_image(images)), args.repeats, warmup=2)
    theirs = timed(lambda: ref.encode_image(images_t).cpu().numpy(), args.repeats, warmup=2)
    err = np.abs(keras.ops.convert_to_numpy(model.encode_image(images, normalize=True))
                 - ref.encode_image(images_t, normalize=True).cpu().numpy()).max()
    print(f"{args.model} image encode (batch {args.batch}, {size[0]} px)  backend={keras.backend.backend():<6} "
          f"anyclip {args.batch / ours:8.1f} img/s   open_clip {args.batch / theirs:8.1f} img/s   "
          f"ratio {theirs / ours:5.2f}x   max|diff| {err:.1e}   [{device}, torch threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}]", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="RN50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backends", default="jax,torch", help="comma-separated Keras backends, one process each")
    parser.add_argument("--backend", help=argparse.SUPPRESS)  # set in the child processes
    args = parser.parse_args()
    if args.backend:
        return run_backend(args)
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--backend", backend, "--model", args.model, "--batch", str(args.batch),
               "--repeats", str(args.repeats)]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
