"""Zero-shot evaluation throughput on a folder of JPEGs: anyclip vs open_clip, measured in the same run.

Writes ``--n`` JPEGs of mixed sizes (cut from scikit-image's photos) as an ImageFolder of ``--classes``
classes, creates one random ViT-B-32 (open_clip's own initialisation), saves it and loads the same
weights into anyclip, builds each side's zero-shot classifier once (timed apart), then times the image
loop that dominates an evaluation, decode + preprocess + image tower + logits + metrics:

* ``open_clip``  torchvision ``ImageFolder`` + open_clip's eval transform + ``DataLoader(num_workers=W)``
                 + ``encode_image(normalize=True)`` + ``100 * f @ W`` + open_clip's top-k (``torch.inference_mode``)
* ``anyclip``    :func:`anyclip.eval.zero_shot_classification` with the prebuilt classifier
                 (``workers=W`` decode threads, the Keras backend from ``KERAS_BACKEND``, default jax)

The first pass of each (JIT compile on jax/tensorflow; DataLoader workers starting) is reported apart;
then the two alternate for ``--repeats`` passes, so both see the same machine load, and the table gives
the medians and the ratio anyclip / open_clip. Both sides must report the same top-1 and top-5.

    python bench/bench_eval.py                       # 256 JPEGs, batch 64, 2 workers
    python bench/bench_eval.py --n 512 --workers 4 --batch-size 128
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

SIZES = [(480, 640), (640, 480), (512, 512), (768, 1024), (333, 500), (375, 500)]
CLASSNAMES = ["astronaut", "coffee", "cat", "rocket", "camera man", "coins", "horse", "moon"]


def write_folder(root, n, classes, seed=0):
    from PIL import Image
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        photo = Image.fromarray(photos[i % len(photos)]).resize((w, h), Image.Resampling.BICUBIC)
        pixels = np.clip(np.asarray(photo).astype(int) + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = os.path.join(root, f"class{i % classes:02d}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"img{i:04d}.jpg"), quality=90)


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="number of JPEGs")
    parser.add_argument("--classes", type=int, default=8, choices=range(2, len(CLASSNAMES) + 1), metavar="2..8")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers / anyclip decode threads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    # torch / open_clip before anything imports tensorflow (import-order crash of triton otherwise), and
    # open_clip's DataLoader forks its workers before jax starts its threads.
    import open_clip
    import torch
    import torchvision
    from safetensors.torch import save_file

    classnames = CLASSNAMES[:args.classes]
    templates = ["a photo of a {}.", "a bad photo of the {}.", "a photo of the large {}."]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "images")
        write_folder(root, args.n, args.classes)
        torch.manual_seed(0)
        ref = open_clip.create_model(args.model).eval()
        weights = os.path.join(tmp, "weights.safetensors")
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, weights)

        # ---------------------------------------------------------------- open_clip
        tokenizer = open_clip.get_tokenizer(args.model)
        start = time.perf_counter()
        with torch.inference_mode():
            classifier = open_clip.build_zero_shot_classifier(ref, tokenizer=tokenizer, classnames=classnames,
                                                              templates=templates, device="cpu")
        oc_classifier_s = time.perf_counter() - start
        dataset = torchvision.datasets.ImageFolder(root, transform=open_clip.image_transform(
            ref.visual.image_size, is_train=False))
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers,
                                             persistent_workers=args.workers > 0)

        def open_clip_pass():
            top1 = top5 = n = 0
            with torch.inference_mode():
                for images, target in loader:
                    logits = 100.0 * ref.encode_image(images, normalize=True) @ classifier
                    pred = logits.topk(min(5, len(classnames)), 1, True, True)[1]
                    hits = pred.eq(target[:, None])
                    top1 += int(hits[:, 0].sum())
                    top5 += int(hits.any(1).sum())
                    n += len(images)
            return top1 / n, top5 / n

        oc_first_s, _ = timed(open_clip_pass, 1)  # starts the persistent DataLoader workers

        # ---------------------------------------------------------------- anyclip
        import keras

        import anyclip
        from anyclip.data.labelled import read_image_folder
        from anyclip.eval import zero_shot_classification
        model = anyclip.create_model(args.model, pretrained=weights)
        ac_tokenizer = anyclip.get_tokenizer(args.model)
        start = time.perf_counter()
        weights_ac = anyclip.build_zero_shot_classifier(model, ac_tokenizer, classnames, templates)
        ac_classifier_s = time.perf_counter() - start
        data = read_image_folder(root, classnames)

        def anyclip_pass():
            result = zero_shot_classification(model, ac_tokenizer, data, classifier=weights_ac,
                                              batch_size=args.batch_size, workers=args.workers, progress=False)
            return result.metrics["acc1"], result.metrics["acc5"]

        ac_first_s, _ = timed(anyclip_pass, 1)
        # alternate the two so that both see the same machine load
        oc_times, ac_times = [], []
        for _ in range(args.repeats):
            seconds, oc_acc = timed(open_clip_pass, 1)
            oc_times.append(seconds)
            seconds, ac_acc = timed(anyclip_pass, 1)
            ac_times.append(seconds)
        oc_s, ac_s = statistics.median(oc_times), statistics.median(ac_times)
        ratios = [o / a for o, a in zip(oc_times, ac_times)]
        loader = None  # stops the persistent DataLoader workers

    backend = keras.backend.backend()
    print(f"zero-shot eval, {args.model} (random weights), {args.n} JPEGs of {len(set(SIZES))} sizes, "
          f"{args.classes} classes, batch {args.batch_size}, {args.workers} workers, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), anyclip on {backend}")
    print(f"{'':<12}{'images/s':>10}{'pass (s)':>10}{'first pass (s)':>16}{'classifier (s)':>16}"
          f"{'top-1':>8}{'top-5':>8}")
    for name, seconds, first, clf, acc in (("open_clip", oc_s, oc_first_s, oc_classifier_s, oc_acc),
                                           ("anyclip", ac_s, ac_first_s, ac_classifier_s, ac_acc)):
        print(f"{name:<12}{args.n / seconds:>10.1f}{seconds:>10.2f}{first:>16.2f}{clf:>16.2f}"
              f"{acc[0]:>8.4f}{acc[1]:>8.4f}")
    print(f"ratio anyclip / open_clip (images/s): {oc_s / ac_s:.2f}x from the medians; per repeat: "
          f"{', '.join(f'{r:.2f}x' for r in ratios)}")
    if not np.allclose(oc_acc, ac_acc):
        print("WARNING: the two sides disagree on accuracy", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
