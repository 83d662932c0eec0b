"""Quantization: size, CPU image throughput and shapes zero-shot results of float32, onnxruntime int8 / int4 and Keras
int8 / int4, in one run (torch backend).

Trained weights (the shipped anyclip-shapes v1): zero-shot accuracy on the shapes test split. Random weights
(``--pretrained none``, e.g. ViT-B-32 offline): accuracy means nothing, so each variant's agreement of its
zero-shot predictions with float32's and the cosine similarity of its image embeddings to float32's are given.

    python bench/bench_export_quantize.py --threads 2 --samples 300
    python bench/bench_export_quantize.py --model ViT-B-32 --pretrained none --threads 2 --samples 64 --batch 16
"""

import argparse
import os
import shutil
import tempfile
import warnings

os.environ["KERAS_BACKEND"] = "torch"
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
from timing import timed  # noqa: E402


def _keras_bytes(model) -> int:
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)


def _shape_predictions(model, tokenizer, samples: int, batch: int):
    """Unit image embeddings of the shapes test split and their zero-shot shape predictions."""
    import keras

    from anyclip.data import ShapesConfig, ShapesDataset
    from anyclip.eval.shapes import zero_shot_tasks
    from anyclip.transforms import image_transform, numpy_output
    from anyclip.zero_shot import build_zero_shot_classifier
    task = zero_shot_tasks(ShapesConfig())["shape"]
    data = ShapesDataset(ShapesConfig(), task.split, samples)
    preprocess = numpy_output(image_transform(model.preprocess_cfg))
    images = np.stack([preprocess(data[i][0]) for i in range(samples)])
    feats = np.concatenate([np.asarray(keras.ops.convert_to_numpy(model.encode_image(images[i:i + batch], True))
                                       if hasattr(model, "quantize") else model.encode_image(images[i:i + batch]))
                            for i in range(0, samples, batch)])
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    classifier = np.asarray(build_zero_shot_classifier(model, tokenizer, task.classnames, task.templates,
                                                       use_tqdm=False), dtype=np.float32)
    return feats, (feats @ classifier).argmax(-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="anyclip-shapes")
    parser.add_argument("--pretrained", default=None, help="tag ('none': random weights); default v1 for "
                                                           "anyclip-shapes, none otherwise")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    pretrained = args.pretrained or ("v1" if args.model == "anyclip-shapes" else "none")
    pretrained = None if pretrained == "none" else pretrained

    import keras
    import torch

    import anyclip
    from anyclip.eval.shapes import shapes_zero_shot
    from anyclip.export import OnnxCLIP, export, quantize, quantize_onnx
    from anyclip.export.verify import QUANTIZED_MIN_COSINE
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    def create():  # random weights: the same seed gives the same model each time
        return anyclip.create_model(args.model, pretrained, seed=0) if pretrained is None else \
            anyclip.create_model(args.model, pretrained)
    tokenizer = anyclip.get_tokenizer(args.model)
    float_model = create()
    h, w = float_model.image_size
    images = np.random.default_rng(0).standard_normal((args.batch, h, w, 3)).astype(np.float32)
    reference = _shape_predictions(float_model, tokenizer, args.samples, args.batch) if pretrained is None else None
    rows = []

    def row(name, model, size):
        speed = args.batch / timed(lambda: keras.ops.convert_to_numpy(model.encode_image(images, True))
                                   if hasattr(model, "quantize") else model.encode_image(images), 3)
        if reference is None:
            acc = shapes_zero_shot(model, tokenizer, num_samples=args.samples, tasks=("shape", "colour"))
            rows.append((name, size, speed, f"{100 * acc['shape']['acc1']:.1f}%",
                         f"{100 * acc['colour']['acc1']:.1f}%"))
        else:
            feats, predictions = _shape_predictions(model, tokenizer, args.samples, args.batch)
            cosine = (feats * reference[0]).sum(-1)
            rows.append((name, size, speed, f"{100 * (predictions == reference[1]).mean():.1f}%",
                         f"{cosine.min():.4f} / {cosine.mean():.4f}"))

    with tempfile.TemporaryDirectory() as folder:
        row("Keras float32 (torch backend)", float_model, _keras_bytes(float_model))
        for q in (None, "int8"):
            out = os.path.join(folder, str(q))
            export(float_model, tokenizer, out, quantize=q)
            onnx = OnnxCLIP(out, threads=args.threads)
            size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".onnx"))
            row(f"onnxruntime {'float32' if q is None else 'int8 (dynamic)'}", onnx, size)
        int4 = shutil.copytree(os.path.join(folder, "None"), os.path.join(folder, "int4"))  # what --quantize int4 does
        files = [os.path.join(int4, f) for f in os.listdir(int4) if f.endswith(".onnx")]
        for path in files:
            quantize_onnx(path, mode="int4")
        row("onnxruntime int4 (weight-only, blocks of 16)", OnnxCLIP(int4, threads=args.threads),
            sum(os.path.getsize(path) for path in files))
        text_cosines = {}
        for mode in ("int8", "int4"):
            quantized = create()
            # random weights quantize worse than trained ones: report the cosine instead of refusing below the floor
            floor = QUANTIZED_MIN_COSINE if reference is None else 0.0
            checked = quantize(quantized, mode, tokenizer=tokenizer, min_cosine=floor)
            text_cosines[mode] = checked["text"]["min_cosine"]
            row(f"Keras {mode} (torch backend)", quantized, _keras_bytes(quantized))
    print(f"{args.model} {pretrained or 'random weights'}, {args.threads} threads, image batch {args.batch}, "
          f"shapes test split {args.samples}")
    columns = ("shape acc", "colour acc") if reference is None else \
        ("shape predictions = float32's", "image cosine to float32 (min / mean)")
    print(f"| variant | weights (MB) | images/s | {' | '.join(columns)} |")
    print("|---|---|---|---|---|")
    for name, size, speed, first, second in rows:
        print(f"| {name} | {size / 1e6:.1f} | {speed:.1f} | {first} | {second} |")
    print("Keras quantized text embeddings, lowest cosine to float32 over the verification captions: "
          + ", ".join(f"{mode} {cosine:.4f}" for mode, cosine in text_cosines.items()))


if __name__ == "__main__":
    main()
