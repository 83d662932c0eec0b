"""Embedding throughput, images/s end to end (decode + preprocess + encode): anyclip vs open_clip, same run.

Writes ``--n`` JPEGs of mixed sizes (480 px to 2000 px, photos from scikit-image with noise), creates one random
model of ``--model`` on each side, and times a whole pass over the folder with ``--workers`` decoding processes:

* ``open_clip``      a ``torch.utils.data.Dataset`` of ``PIL.Image.open`` + open_clip's eval transform,
                     ``DataLoader(num_workers=W, batch_size=B)``, ``encode_image(normalize=True)`` under
                     ``torch.inference_mode``
* ``anyclip exact``  :class:`anyclip.embed.ShardEncoder` (what ``anyclip embed`` runs): W worker processes
                     decode and crop (the exact path, equal to open_clip's transform), the model encodes
* ``anyclip fast``   the same with ``--fast`` (JPEG draft-mode decoding and ``reduce``; documented tolerance)

A first untimed pass warms each side (JIT compile, worker start); then the sides alternate for ``--repeats``
passes and the medians are printed with the ratios anyclip / open_clip.

    python bench/bench_embed.py                                  # anyclip-shapes (64 px), 256 JPEGs, 2 workers
    python bench/bench_embed.py --model ViT-B-32 --n 128 --batch-size 32
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np

SIZES = [(480, 640), (1200, 1600), (2000, 1500), (768, 1024), (333, 500), (1080, 1920)]


def write_folder(root, n, seed=0):
    from PIL import Image
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        photo = Image.fromarray(photos[i % len(photos)]).resize((w, h), Image.Resampling.BICUBIC)
        pixels = np.clip(np.asarray(photo).astype(int) + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"img{i:04d}.jpg"), quality=90)


def open_clip_side(model_name, paths, batch_size, workers):
    import json
    from pathlib import Path

    import open_clip
    import torch
    from PIL import Image

    import anyclip
    cfg = json.loads((Path(anyclip.__file__).parent / "models" / "configs" / f"{model_name}.json").read_text())
    model = open_clip.model.CLIP(**{k: v for k, v in cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg",
                                                                          "quick_gelu")}).eval()
    size = cfg["vision_cfg"]["image_size"]
    transform = open_clip.image_transform(size, is_train=False)

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return transform(Image.open(paths[i]))

    def run():
        loader = torch.utils.data.DataLoader(Files(), batch_size=batch_size, num_workers=workers)
        out = []
        with torch.inference_mode():
            for batch in loader:
                out.append(model.encode_image(batch, normalize=True))
        return torch.cat(out).numpy()
    return run


def anyclip_side(model_name, paths, batch_size, workers, fast):
    import anyclip
    from anyclip.embed import EmbedSettings, ShardEncoder, list_inputs
    model = anyclip.create_model(model_name)
    settings = EmbedSettings(kind="image", model=model_name, batch_size=batch_size, fast=fast)
    encoder = ShardEncoder(model, None, settings, workers=workers)
    items = list_inputs(paths).items

    def run():
        emb, _, errors = encoder.encode(items)
        assert not errors, errors[:3]
        return emb
    return run, encoder


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="anyclip-shapes")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=None, help="reuse this folder of JPEGs (written if empty)")
    args = parser.parse_args()
    import keras
    import torch
    folder = args.folder or tempfile.mkdtemp(prefix="bench-embed-")
    os.makedirs(folder, exist_ok=True)
    if not any(name.endswith(".jpg") for name in os.listdir(folder)):
        write_folder(folder, args.n)
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))[:args.n]
    exact, enc_a = anyclip_side(args.model, paths, args.batch_size, args.workers, fast=False)
    fast, enc_b = anyclip_side(args.model, paths, args.batch_size, args.workers, fast=True)
    ref = open_clip_side(args.model, paths, args.batch_size, args.workers)
    sides = {"open_clip": ref, "anyclip exact": exact, "anyclip fast": fast}
    times = {name: [] for name in sides}
    for name, fn in sides.items():  # warm-up: compile, start workers
        fn()
    for _ in range(args.repeats):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    enc_a.close()
    enc_b.close()
    print(f"{len(paths)} JPEGs ({min(s[0] for s in SIZES)}-{max(max(s) for s in SIZES)} px), model {args.model}, "
          f"batch {args.batch_size}, {args.workers} workers, keras {keras.backend.backend()}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    base = len(paths) / statistics.median(times["open_clip"])
    print(f"{'side':<14} {'images/s':>9} {'vs open_clip':>13}")
    for name, t in times.items():
        rate = len(paths) / statistics.median(t)
        print(f"{name:<14} {rate:9.1f} {rate / base:12.2f}x")


if __name__ == "__main__":
    main()
