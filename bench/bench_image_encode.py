"""Image encode of any config: anyclip (JAX and torch backends) vs open_clip, same machine, same random weights.

Prints images/s of each side and the ratio anyclip / open_clip. Each Keras backend runs in its own
process (Keras fixes its backend once per process); open_clip is timed in each, next to it. Weights are
open_clip's model re-drawn at random (BatchNorm statistics included, ``tests/reference.py``) and loaded into
both. ``--reparameterize`` adds MobileCLIP's deployment form: anyclip's ``reparameterize`` against timm's
``reparameterize_model`` on the same weights.

    python bench/bench_image_encode.py                                  # RN50, batch 8, 224 px, jax then torch
    python bench/bench_image_encode.py --models ViT-B-16-SigLIP2,EVA02-B-16,ViTamin-S  # timm towers
    python bench/bench_image_encode.py --models convnext_base,swin_base_patch4_window7_224 --batch 16
    python bench/bench_image_encode.py --models MobileCLIP2-S0 --reparameterize --backends torch
"""

import argparse
import os
import sys

import numpy as np
from timing import interleaved, load_average, per_backend


def _forms(args, model, ref, state):
    """(form name, anyclip model, open_clip model) rows to time."""
    yield "", model, ref
    if args.reparameterize:
        import open_clip
        from timm.models import reparameterize_model

        from anyclip.weights.reparameterize import reparameterize
        fused = open_clip.create_model(args.model).eval()
        fused.load_state_dict(state)
        fused.visual.trunk = reparameterize_model(fused.visual.trunk)
        yield " reparam", reparameterize(model), fused.to(next(ref.parameters()).device)


def run_backend(args):
    import keras
    import open_clip
    import torch

    import anyclip
    from anyclip.weights.mapping import load_state_dict

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from reference import randomize

    torch.set_grad_enabled(False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ref = open_clip.create_model(args.model).eval()
    state = randomize(ref.state_dict(), 0)
    ref.load_state_dict(state)
    ref = ref.to(device)
    model = anyclip.create_model(args.model, load_weights=False)
    load_state_dict(model, {k: v.numpy() for k, v in state.items()})
    size = model.image_size
    images = np.random.default_rng(0).standard_normal((args.batch, *size, 3)).astype(np.float32)
    images_t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    for form, ours_model, theirs_model in _forms(args, model, ref, state):
        ours, theirs = interleaved([lambda m=ours_model: keras.ops.convert_to_numpy(m.encode_image(images)),
                                    lambda m=theirs_model: m.encode_image(images_t).cpu().numpy()],
                                   args.repeats, warmup=2)
        err = np.abs(keras.ops.convert_to_numpy(ours_model.encode_image(images, normalize=True))
                     - theirs_model.encode_image(images_t, normalize=True).cpu().numpy()).max()
        print(f"{args.model}{form} image encode (batch {args.batch}, {size[0]} px)  "
              f"backend={keras.backend.backend():<6} anyclip {args.batch / ours:8.1f} img/s   "
              f"open_clip {args.batch / theirs:8.1f} img/s   ratio {theirs / ours:5.2f}x   max|diff| {err:.1e}   "
              f"[{device}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load {load_average():.1f}]",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="RN50", help="comma-separated anyclip / open_clip model names")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--reparameterize", action="store_true",
                        help="also time the re-parameterised MobileCLIP (FastViT) towers")
    parser.add_argument("--backends", default="jax,torch", help="comma-separated Keras backends, one process each")
    parser.add_argument("--backend", help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--model", help=argparse.SUPPRESS)  # set in the child processes
    args = parser.parse_args()
    if args.backend:
        return run_backend(args)
    for model in args.models.split(","):
        per_backend(__file__, args.backends.split(","), ["--model", model, "--batch", str(args.batch),
                    "--repeats", str(args.repeats)] + (["--reparameterize"] if args.reparameterize else []))

if __name__ == "__main__":
    main()
