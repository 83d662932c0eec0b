"""Exported encoders vs open_clip eager on this CPU, same random weights, in one run (ratios, not times, compare).

Exports ``--model`` (open_clip's random initialisation, loaded into anyclip) to ONNX, quantizes it to int8
with onnxruntime, and prints image and text encode throughput of: open_clip (torch eager, inference mode),
anyclip's Keras model (torch backend), onnxruntime float32 and onnxruntime int8, each with ``--threads``
threads, and each one's ratio to open_clip. Goals for ViT-B-32 images: onnxruntime fp32 >= 1.5x, int8 >= 2.5x.

    python bench/bench_export.py --model ViT-B-32 --threads 2
"""

import argparse
import os
import tempfile
import warnings

os.environ["KERAS_BACKEND"] = "torch"  # the ONNX export route
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
from timing import timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-batch", type=int, default=16)
    parser.add_argument("--text-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keras-int8-onnx", action="store_true",
                        help="also export the Keras-int8-quantized model to ONNX and time it (slow to export)")
    args = parser.parse_args()

    import keras
    import open_clip
    import torch

    import anyclip
    from anyclip.export.onnx import export_onnx, onnx_session, run_onnx
    from anyclip.export.quantization import quantize_onnx
    from anyclip.weights import load_state_dict
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    reference = open_clip.create_model(args.model).eval()
    model = anyclip.create_model(args.model, load_weights=False)
    load_state_dict(model, {k: v.numpy() for k, v in reference.state_dict().items()})
    h, w = model.image_size
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.image_batch, 3, h, w)).astype(np.float32)
    tokens = open_clip.get_tokenizer(args.model)(["a photo of a cat on a sofa"] * args.text_batch).numpy()

    with tempfile.TemporaryDirectory() as folder:
        paths = export_onnx(model, folder)
        int8 = {tower: quantize_onnx(path, replace=False) for tower, path in paths.items()}
        sessions = {
            "onnxruntime fp32": {t: onnx_session(p, args.threads) for t, p in paths.items()},
            "onnxruntime int8": {t: onnx_session(p, args.threads) for t, p in int8.items()},
        }
        sizes = {"onnxruntime fp32": sum(os.path.getsize(p) for p in paths.values()),
                 "onnxruntime int8": sum(os.path.getsize(p) for p in int8.values())}
        if args.keras_int8_onnx:  # the other int8 route: Keras' own quantization, then the same ONNX export
            from anyclip.export import quantize
            quantized = anyclip.create_model(args.model, load_weights=False)
            load_state_dict(quantized, {k: v.numpy() for k, v in reference.state_dict().items()})
            quantize(quantized, "int8")
            os.makedirs(os.path.join(folder, "keras-int8"))
            keras_int8 = export_onnx(quantized, os.path.join(folder, "keras-int8"))
            # image encoder only: onnxruntime refuses this text graph (Reshape shape inference), see README
            sessions["onnxruntime, Keras-int8 graph"] = {"image": onnx_session(keras_int8["image"], args.threads)}
            sizes["onnxruntime, Keras-int8 graph"] = os.path.getsize(keras_int8["image"])
        nhwc, images_t, tokens_t = images.transpose(0, 2, 3, 1).copy(), torch.from_numpy(images), torch.from_numpy(tokens)
        runners = {
            "open_clip eager": {"image": lambda: reference.encode_image(images_t, normalize=True),
                                "text": lambda: reference.encode_text(tokens_t, normalize=True)},
            "anyclip keras (torch)": {"image": lambda: keras.ops.convert_to_numpy(model.encode_image(nhwc, True)),
                                      "text": lambda: keras.ops.convert_to_numpy(model.encode_text(tokens, True))},
        }
        for name, pair in sessions.items():
            runners[name] = {"image": lambda s=pair["image"]: run_onnx(s, images)}
            if "text" in pair:
                runners[name]["text"] = lambda s=pair["text"]: run_onnx(s, tokens)
        seconds = {name: {t: timed(fn, args.repeats) for t, fn in pair.items()} for name, pair in runners.items()}

    base = seconds["open_clip eager"]
    print(f"{args.model}, {args.threads} threads, images batch {args.image_batch}, texts batch {args.text_batch}")
    print("| runtime | images/s | × open_clip | texts/s | × open_clip | files (MB) |")
    print("|---|---|---|---|---|---|")
    for name, s in seconds.items():
        size = f"{sizes[name] / 1e6:.0f}" if name in sizes else "–"
        text = (f"{args.text_batch / s['text']:.1f} | {base['text'] / s['text']:.2f}" if "text" in s
                else "– | –")
        print(f"| {name} | {args.image_batch / s['image']:.1f} | {base['image'] / s['image']:.2f} | {text} | {size} |")


if __name__ == "__main__":
    main()
