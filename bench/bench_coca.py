"""CoCa caption generation: anyclip (JAX, torch) vs open_clip, same random weights and images, one run.

coca_ViT-B-32 with random weights (every caption runs to ``--seq-len``), a batch of 8 images, beam search
with 3 beams in one group (``num_beam_groups=1``). Prints the median wall time of each side (after one
warm-up call, which on JAX compiles the decoding loop) and the ratio anyclip / open_clip (< 1: faster).
Each anyclip backend runs in its own process::

    python bench/bench_coca.py
    python bench/bench_coca.py --batch 8 --beams 3 --seq-len 30 --repeats 3

open_clip 3.3.0's ``generate`` needs transformers' ``BeamSearchScorer`` (gone in transformers 5); the
copy in ``tests/hf_beam_search.py`` is installed for it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timing import timed  # noqa: E402

TESTS = Path(__file__).resolve().parent.parent / "tests"


def _options(args):
    return dict(generation_type="beam_search", num_beams=args.beams, num_beam_groups=1, seq_len=args.seq_len)


def _make_case(args, folder: Path):
    """A random open_clip coca_ViT-B-32 saved as open_clip writes it, and the images; returns the model."""
    import open_clip
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    ref = open_clip.create_model(args.model).eval()
    decoder = ref.text_decoder  # open_clip leaves the decoder's vocabulary projection uninitialised
    torch.nn.init.normal_(decoder.text_projection, std=decoder.text_projection.shape[0] ** -0.5)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    cfg = open_clip.get_model_config(args.model)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    size = cfg["vision_cfg"]["image_size"]
    images = np.random.default_rng(0).standard_normal((args.batch, size, size, 3)).astype("float32")
    np.save(folder / "images.npy", images)
    return ref


def _time_open_clip(args, ref, folder: Path):
    import torch
    from open_clip import coca_model
    from transformers import TopKLogitsWarper, TopPLogitsWarper
    sys.path.insert(0, str(TESTS))
    import hf_beam_search
    coca_model.BeamSearchScorer = hf_beam_search.BeamSearchScorer
    coca_model.GENERATION_TYPES = {"top_k": TopKLogitsWarper, "top_p": TopPLogitsWarper, "beam_search": "beam_search"}
    coca_model._has_transformers = True
    images = torch.from_numpy(np.load(folder / "images.npy")).permute(0, 3, 1, 2).contiguous()
    out = {}
    with torch.no_grad():
        seconds = timed(lambda: out.__setitem__("ids", ref.generate(images, **_options(args))), args.repeats)
    return seconds, out["ids"].numpy()


def _worker(args):
    """(one backend) time anyclip's generate on the saved case; print a JSON line."""
    import keras

    import anyclip
    folder = Path(args.folder)
    model = anyclip.create_model(f"local-dir:{folder}")
    images = np.load(folder / "images.npy")
    out = {}
    seconds = timed(lambda: out.__setitem__("ids", model.generate(images, **_options(args))), args.repeats)
    np.save(folder / f"ids_{keras.backend.backend()}.npy", out["ids"])
    print(json.dumps({"backend": keras.backend.backend(), "seconds": seconds}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="coca_ViT-B-32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="jax,torch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)

    folder = Path(tempfile.mkdtemp(prefix="bench-coca-"))
    ref = _make_case(args, folder)
    print(f"{args.model}, {args.batch} images, beam search {args.beams} beams, seq_len {args.seq_len}, "
          f"median of {args.repeats} after 1 warm-up", flush=True)
    theirs, ref_ids = _time_open_clip(args, ref, folder)
    del ref
    print(f"open_clip (torch)   {theirs:8.2f} s", flush=True)
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, __file__, "--worker", "--folder", str(folder), "--model", args.model,
               "--batch", str(args.batch), "--beams", str(args.beams), "--seq-len", str(args.seq_len),
               "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            print(f"anyclip ({backend}) failed:\n{proc.stderr[-3000:]}")
            continue
        ours = json.loads(lines[-1])["seconds"]
        same = np.array_equal(np.load(folder / f"ids_{backend}.npy"), ref_ids)
        print(f"anyclip ({backend:<5})    {ours:8.2f} s   ratio anyclip/open_clip {ours / theirs:5.2f}x   "
              f"same captions as open_clip: {same}", flush=True)


if __name__ == "__main__":
    main()
