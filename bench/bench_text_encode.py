"""Text encode per tower: anyclip (JAX and torch backends) vs open_clip, same machine, same random weights.

For each model of ``--models`` this writes one random open_clip checkpoint (``tests/reference.py``'s
``build_reference_case``: every tensor re-drawn; text towers are full size for the default models, the
image tower of ``roberta-ViT-B-32`` is cut to 2 blocks, which the text path does not use) and loads it into
both sides. It times two batches of ``--batch`` texts in interleaved rounds (medians): short prompts
(8 tokens then padding) and full texts (every position used). CLIP-tokenizer models get real BPE ids from
anyclip's tokenizer; SigLIP and HF towers (whose tokenizers live on the hub) get random ids of their
vocabulary ended by eos and padded with the pad id. Prints texts/s, the ratio anyclip / open_clip and the
load average.

    python bench/bench_text_encode.py          # ViT-B-32 (causal CLIP), ViT-B-16-SigLIP2, roberta-ViT-B-32
    python bench/bench_text_encode.py --models ViT-B-32 --backends torch --batch 64
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from timing import interleaved, load_average, per_backend

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
SHORT = 8  # tokens of a short prompt, eos included ("a photo of a golden retriever." is 9 with sot)


def token_batches(name, cfg, folder, batch):
    """{"short": ids, "full": ids} of shape (batch, context length)."""
    text = cfg["text_cfg"]
    ctx = text.get("context_length", 77)
    if not text.get("hf_tokenizer_name"):
        import anyclip
        tok = anyclip.get_tokenizer(name)
        words = "the quick brown fox jumps over a lazy dog while it rains in the city of light".split()
        short = [f"a photo of a {w}." for w in (words * batch)[:batch]]
        long = [" ".join(words[(i + j) % len(words)] for j in range(90)) for i in range(batch)]
        return {"short": np.asarray(tok(short)), "full": np.asarray(tok(long))}
    if text.get("hf_model_name"):
        hf = json.loads((Path(text["hf_model_name"]) / "config.json").read_text())
        pad, eos, vocab = hf["pad_token_id"], hf["eos_token_id"], hf["vocab_size"]
    else:
        pad, eos, vocab = text.get("pad_id", 0), text.get("eos_id", 2), text["vocab_size"]
    rng = np.random.default_rng(0)
    out = {}
    for kind, length in (("short", SHORT), ("full", ctx)):
        ids = np.full((batch, ctx), pad, dtype=np.int32)
        body = rng.integers(3, vocab, size=(batch, length))
        body[body == pad] = 3
        body[:, -1] = eos
        ids[:, :length] = body
        out[kind] = ids
    return out


def run_backend(args):
    import keras
    import open_clip
    import torch

    import anyclip

    torch.set_grad_enabled(False)
    folder = Path(args.case)
    cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    ref = open_clip.create_model(f"local-dir:{folder}").eval()
    model = anyclip.create_model(f"local-dir:{folder}")
    for kind, ids in token_batches(args.model, cfg, folder, args.batch).items():
        ids_t = torch.from_numpy(ids).long()
        ours, theirs = interleaved([lambda: keras.ops.convert_to_numpy(model.encode_text(ids)),
                                    lambda: ref.encode_text(ids_t).numpy()], args.repeats, warmup=2)
        err = np.abs(keras.ops.convert_to_numpy(model.encode_text(ids, normalize=True))
                     - ref.encode_text(ids_t, normalize=True).numpy()).max()
        print(f"{args.model} text encode ({kind:<5} batch {args.batch} x {ids.shape[1]})  "
              f"backend={keras.backend.backend():<6} anyclip {args.batch / ours:8.1f} txt/s   "
              f"open_clip {args.batch / theirs:8.1f} txt/s   ratio {theirs / ours:5.2f}x   max|diff| {err:.1e}   "
              f"[torch threads {torch.get_num_threads()}, load {load_average():.1f}]", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ViT-B-32,ViT-B-16-SigLIP2,roberta-ViT-B-32",
                        help="comma-separated open_clip model names")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="jax,torch", help="comma-separated Keras backends, one process each")
    parser.add_argument("--backend", help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        return run_backend(args)
    sys.path.insert(0, TESTS)
    from reference import build_reference_case

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            case = build_reference_case(name, Path(tmp) / name)
            print(f"{name}: {'; '.join(case['notes']) or 'full size'}", flush=True)
            per_backend(__file__, args.backends.split(","), ["--model", name, "--case", case["folder"],
                        "--batch", str(args.batch), "--repeats", str(args.repeats)])


if __name__ == "__main__":
    main()
