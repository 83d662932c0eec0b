"""Image preprocessing throughput: open_clip's PIL transform vs anyclip's host path vs the in-graph path.

Writes ``--n`` JPEGs of mixed sizes (cut from scikit-image's photos) to a temporary folder, then
measures images/s for

* ``open_clip``          ``Image.open`` + ``open_clip.transform.image_transform(..., is_train=False)``
* ``anyclip host``       ``load_image`` (full decode, EXIF, bomb guard) + ``image_transform`` (exact)
* ``anyclip graph/pil``  PIL decode to uint8, then ``jax.jit(preprocess_images)`` per same-size batch
* ``anyclip graph/keras``  the same with ``resampler="keras"`` (``keras.ops.image.resize``)

both from files (decode included) and on images already in memory (transform only), and prints the
ratios against open_clip. Compile time of the jitted path is reported apart (one compile per input size).

    python bench/bench_preprocess.py                # 64 JPEGs, size 224, jax backend
    python bench/bench_preprocess.py --n 128 --size 336 --repeats 5
"""

import argparse
import os
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
from timing import timed  # noqa: E402

SIZES = [(480, 640), (640, 480), (512, 512), (768, 1024), (333, 500), (1080, 1440)]




def write_jpegs(folder, n, seed=0):
    from PIL import Image
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        photo = Image.fromarray(photos[i % len(photos)])
        image = photo.resize((w, h), Image.Resampling.BICUBIC)
        noise = rng.integers(-6, 7, (h, w, 3))
        image = Image.fromarray(np.clip(np.asarray(image).astype(int) + noise, 0, 255).astype(np.uint8))
        path = os.path.join(folder, f"img{i:03d}.jpg")
        image.save(path, quality=90)
        paths.append(path)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="number of JPEGs")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--interpolation", default="bicubic", choices=["bicubic", "bilinear"])
    parser.add_argument("--resize-mode", default="shortest", choices=["shortest", "longest", "squash"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads for open_clip's tensor ops (DataLoader workers use 1; "
                             "more threads slow these tiny ops down)")
    args = parser.parse_args()

    from open_clip.transform import image_transform as open_clip_transform  # noqa: I001 (before anything imports tensorflow)
    import jax
    import keras
    import torch
    from PIL import Image

    from anyclip.transforms import PreprocessConfig, image_transform, load_image, preprocess_images

    torch.set_grad_enabled(False)
    torch.set_num_threads(args.torch_threads)
    cfg = PreprocessConfig(size=args.size, interpolation=args.interpolation, resize_mode=args.resize_mode)
    theirs = open_clip_transform(cfg.size, is_train=False, mean=cfg.mean, std=cfg.std, resize_mode=cfg.resize_mode,
                                 interpolation=cfg.interpolation, fill_color=cfg.fill_color)
    ours = image_transform(cfg)
    folder = tempfile.mkdtemp(prefix="anyclip-bench-")
    paths = write_jpegs(folder, args.n)
    n = len(paths)
    print(f"{n} JPEGs, sizes {sorted(set(SIZES[: min(n, len(SIZES))]))}, {cfg}")
    print(f"keras backend {keras.backend.backend()}, jax devices {jax.devices()}, torch threads "
          f"{torch.get_num_threads()}")

    jitted = {name: jax.jit(lambda x, r=name: preprocess_images(x, cfg, resampler=r)) for name in ("pil", "keras")}

    def graph_run(arrays_by_size, resampler):
        out = [jitted[resampler](batch) for batch in arrays_by_size.values()]
        for o in out:
            o.block_until_ready()
        return out

    def group(arrays):
        groups = defaultdict(list)
        for a in arrays:
            groups[a.shape].append(a)
        return {k: np.stack(v) for k, v in groups.items()}

    def decode_rgb(path):
        return np.asarray(Image.open(path).convert("RGB"))

    # compile once per input size (not part of the throughput numbers)
    in_memory_arrays = group([decode_rgb(p) for p in paths])
    compile_s = {}
    for resampler in ("pil", "keras"):
        start = time.perf_counter()
        graph_run(in_memory_arrays, resampler)
        compile_s[resampler] = time.perf_counter() - start

    # the in-graph path's output equals the host path's (pil resampler)
    check = in_memory_arrays[next(iter(in_memory_arrays))][:1]
    diff = float(np.abs(np.asarray(jitted["pil"](check))[0] - ours(Image.fromarray(check[0]))).max())

    results = {}

    def measure(name, fn):
        seconds = timed(fn, args.repeats)
        results[name] = n / seconds
        print(f"  {name:<34} {n / seconds:9.1f} images/s", flush=True)

    print("from files (decode included):")
    measure("decode only (PIL, RGB)", lambda: [decode_rgb(p) for p in paths])
    measure("open_clip", lambda: [theirs(Image.open(p)) for p in paths])
    measure("anyclip host (exact)", lambda: [ours(load_image(p)) for p in paths])
    measure("anyclip graph/pil (jax jit)", lambda: graph_run(group([decode_rgb(p) for p in paths]), "pil"))
    measure("anyclip graph/keras (jax jit)", lambda: graph_run(group([decode_rgb(p) for p in paths]), "keras"))

    print("in memory (transform only):")
    pil_images = [Image.open(p).convert("RGB") for p in paths]
    for image in pil_images:
        image.load()
    measure("open_clip ", lambda: [theirs(image) for image in pil_images])
    measure("anyclip host (exact) ", lambda: [ours(image) for image in pil_images])
    measure("anyclip graph/pil (jax jit) ", lambda: graph_run(in_memory_arrays, "pil"))
    measure("anyclip graph/keras (jax jit) ", lambda: graph_run(in_memory_arrays, "keras"))

    print(f"jit compile for {len(in_memory_arrays)} input sizes: pil {compile_s['pil']:.1f} s, "
          f"keras {compile_s['keras']:.1f} s; graph/pil vs host max |diff| {diff:.2e}")
    print("ratios vs open_clip (higher is faster):")
    for suffix, label in (("", "from files"), (" ", "in memory")):
        base = results["open_clip" + suffix]
        cells = [f"{name.strip()} {results[name + suffix] / base:4.2f}x" for name in
                 ("anyclip host (exact)", "anyclip graph/pil (jax jit)", "anyclip graph/keras (jax jit)")]
        print(f"  {label:<11} " + ", ".join(cells))


if __name__ == "__main__":
    main()
