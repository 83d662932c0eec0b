"""Quantization of the shipped model (anyclip-shapes v1, trained): size, CPU image throughput and shapes
zero-shot accuracy of float32, onnxruntime int8 and Keras int8 / int4, in one run (torch backend).

    python bench/bench_export_quantize.py --threads 2 --samples 300
"""

import argparse
import os
import tempfile
import warnings

os.environ["KERAS_BACKEND"] = "torch"
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
from timing import timed  # noqa: E402


def _keras_bytes(model) -> int:
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    import keras
    import torch

    import anyclip
    from anyclip.eval.shapes import shapes_zero_shot
    from anyclip.export import OnnxCLIP, export, quantize
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    tokenizer = anyclip.get_tokenizer("anyclip-shapes")
    images = np.random.default_rng(0).standard_normal((args.batch, 64, 64, 3)).astype(np.float32)
    rows = []

    def row(name, model, size):
        speed = args.batch / timed(lambda: keras.ops.convert_to_numpy(model.encode_image(images, True))
                                   if hasattr(model, "quantize") else model.encode_image(images), 3)
        acc = shapes_zero_shot(model, tokenizer, num_samples=args.samples, tasks=("shape", "colour"))
        rows.append((name, size, speed, acc["shape"]["acc1"], acc["colour"]["acc1"]))

    with tempfile.TemporaryDirectory() as folder:
        model = anyclip.create_model("anyclip-shapes", "v1")
        row("Keras float32 (torch backend)", model, _keras_bytes(model))
        for q in (None, "int8"):
            out = os.path.join(folder, str(q))
            export(model, tokenizer, out, quantize=q)
            onnx = OnnxCLIP(out, threads=args.threads)
            size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".onnx"))
            row(f"onnxruntime {'float32' if q is None else 'int8 (dynamic)'}", onnx, size)
        for mode in ("int8", "int4"):
            quantized = anyclip.create_model("anyclip-shapes", "v1")
            quantize(quantized, mode, tokenizer=tokenizer)
            row(f"Keras {mode} (torch backend)", quantized, _keras_bytes(quantized))
    print(f"anyclip-shapes v1, {args.threads} threads, image batch {args.batch}, shapes test split {args.samples}")
    print("| variant | weights (MB) | images/s | shape acc | colour acc |")
    print("|---|---|---|---|---|")
    for name, size, speed, shape, colour in rows:
        print(f"| {name} | {size / 1e6:.1f} | {speed:.0f} | {100 * shape:.1f}% | {100 * colour:.1f}% |")


if __name__ == "__main__":
    main()
