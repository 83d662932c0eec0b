"""anyclip vs open_clip on the same machine, same random weights, in one run.

Prints throughput of each side and the ratio anyclip / open_clip for: image encode (batch 32),
text encode (batch 64 short prompts; batch 64 full 77-token texts), tokenizer throughput and
checkpoint load time (file -> ready model). Run under each backend:

    KERAS_BACKEND=jax python bench/bench_core.py
    KERAS_BACKEND=torch python bench/bench_core.py --model ViT-B-32 --repeats 5
"""

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
from timing import timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-batch", type=int, default=32)
    parser.add_argument("--text-batch", type=int, default=64)
    args = parser.parse_args()

    import keras
    import open_clip
    import torch
    from safetensors.torch import save_file

    import anyclip

    torch.set_grad_enabled(False)
    backend = keras.backend.backend()
    ref = open_clip.create_model(args.model).eval()
    tmp = tempfile.mkdtemp()
    ckpt = os.path.join(tmp, "open_clip_model.safetensors")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, ckpt)
    model = anyclip.create_model(args.model, pretrained=ckpt)
    rows = []

    def row(name, ours, theirs, unit):
        rows.append((name, ours, theirs, unit))
        print(f"{name:<34} anyclip {ours:10.1f} {unit:<9} open_clip {theirs:10.1f} {unit:<9} ratio {ours / theirs:5.2f}x",
              flush=True)

    size = model.image_size
    images = np.random.default_rng(0).standard_normal((args.image_batch, *size, 3)).astype(np.float32)
    images_t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    ours = timed(lambda: keras.ops.convert_to_numpy(model.encode_image(images)), args.repeats)
    theirs = timed(lambda: ref.encode_image(images_t).numpy(), args.repeats)
    row(f"image encode (batch {args.image_batch})", args.image_batch / ours, args.image_batch / theirs, "img/s")

    ref_tok = open_clip.get_tokenizer(args.model)
    tok = anyclip.get_tokenizer(args.model)
    classes = [c for c in anyclip.IMAGENET_CLASSNAMES]
    short = [f"a photo of a {c}." for c in classes[: args.text_batch]]
    words = "the quick brown fox jumps over a lazy dog while it rains in the city of light".split()
    long = [" ".join(words[(i + j) % len(words)] for j in range(90)) for i in range(args.text_batch)]
    for label, texts in (("short prompts", short), ("full 77-token texts", long)):
        ids = tok(texts)
        ids_t = torch.from_numpy(np.asarray(ids)).long()
        ours = timed(lambda: keras.ops.convert_to_numpy(model.encode_text(ids)), args.repeats)
        theirs = timed(lambda: ref.encode_text(ids_t).numpy(), args.repeats)
        row(f"text encode (batch {args.text_batch}, {label})", len(texts) / ours, len(texts) / theirs, "txt/s")

    corpus = [f"a photo of a {c}, taken on a {d} day." for c in classes for d in ("sunny", "rainy")]
    ours = timed(lambda: tok(corpus), args.repeats)
    theirs = timed(lambda: ref_tok(corpus), max(1, args.repeats // 2))
    row(f"tokenizer ({len(corpus)} captions)", len(corpus) / ours, len(corpus) / theirs, "txt/s")

    def load_ours():
        keras.backend.clear_session()
        m = anyclip.create_model(args.model, pretrained=ckpt)
        keras.ops.convert_to_numpy(m.logit_scale)

    def load_theirs():
        open_clip.create_model(args.model, pretrained=ckpt)

    ours = timed(load_ours, 3, warmup=0)
    theirs = timed(load_theirs, 3, warmup=0)
    row("checkpoint load (file -> model)", 1 / ours, 1 / theirs, "loads/s")
    print(f"\nbackend={backend} model={args.model} threads={torch.get_num_threads()} cpus={os.cpu_count()}")


if __name__ == "__main__":
    main()
