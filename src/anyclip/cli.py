"""The ``anyclip`` command line: list models, classify images zero-shot, embed, evaluate, train, plot, make data."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "anyclip-shapes"  # shipped inside the package: works offline
DEFAULT_PRETRAINED = "v1"


def _add_model_args(p: argparse.ArgumentParser):
    p.add_argument("--model", default=DEFAULT_MODEL, help="architecture name, hf-hub:org/repo or local-dir:PATH")
    p.add_argument("--pretrained", default=None,
                   help=f"pretrained tag, checkpoint file or folder (default {DEFAULT_PRETRAINED} for {DEFAULT_MODEL})")
    p.add_argument("--checkpoint", default=None, help="an open_clip checkpoint file to load (same as --pretrained PATH)")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="fp32", help="fp32, bf16, fp16, amp_bf16")


def _load(args):
    import anyclip
    pretrained = args.checkpoint or args.pretrained
    if pretrained is None and args.model == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    elif pretrained is None and not args.model.startswith(("hf-hub:", "local-dir:")):
        tags = anyclip.list_pretrained_tags_by_model(args.model) if args.model in anyclip.list_models() else []
        print(f"anyclip: warning: no --pretrained given, so {args.model} has random weights"
              + (f" (its tags: {', '.join(tags)})" if tags else ""), file=sys.stderr)
    model, _, preprocess = anyclip.create_model_and_transforms(
        args.model, pretrained, cache_dir=args.cache_dir, precision=args.precision)
    tokenizer = anyclip.get_tokenizer(args.model, cache_dir=args.cache_dir)
    return model, preprocess, tokenizer


def _batches(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _progress(total, desc, unit):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=total < 2 or not sys.stderr.isatty() and total < 64)


def embed_image_files(model, preprocess, paths, batch_size=32, desc="images"):
    """Embed image files in batches; returns ``(embeddings [n_ok, d], ok_paths, errors {path: reason})``.

    A file that cannot be read is reported in ``errors`` and skipped; the others are still embedded.

    Example:
        >>> emb, ok, errors = embed_image_files(model, preprocess, ["a.jpg", "b.png"])  # doctest: +SKIP
    """
    from keras import ops

    from .transforms import ImageLoadError, load_image
    out, ok, errors = [], [], {}
    with _progress(len(paths), desc, "img") as bar:
        for chunk in _batches(list(paths), batch_size):
            arrays, names = [], []
            for path in chunk:
                try:
                    arrays.append(preprocess(load_image(path)))
                    names.append(path)
                except (ImageLoadError, OSError, ValueError) as e:
                    errors[str(path)] = str(e)
            if arrays:
                emb = model.encode_image(np.stack(arrays), normalize=True)
                out.append(np.asarray(ops.convert_to_numpy(emb), dtype=np.float32))
                ok.extend(str(n) for n in names)
            bar.update(len(chunk))
    dim = model.config.embed_dim
    return (np.concatenate(out) if out else np.zeros((0, dim), np.float32)), ok, errors


def embed_texts(model, tokenizer, texts, batch_size=256, desc="texts"):
    """Embed strings in batches; returns normalised ``[n, d]`` float32.

    Example:
        >>> embed_texts(model, tokenizer, ["a cat", "a dog"]).shape  # doctest: +SKIP
        (2, 512)
    """
    from keras import ops
    out = []
    with _progress(len(texts), desc, "txt") as bar:
        for chunk in _batches(list(texts), batch_size):
            emb = model.encode_text(tokenizer(chunk), normalize=True)
            out.append(np.asarray(ops.convert_to_numpy(emb), dtype=np.float32))
            bar.update(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, model.config.embed_dim), np.float32)


def cmd_models(args):
    import anyclip
    if args.pretrained_only:
        for model, tag in anyclip.list_pretrained():
            print(f"{model}\t{tag}")
        return 0
    for name in anyclip.list_models():
        tags = anyclip.list_pretrained_tags_by_model(name)
        print(f"{name}\t{', '.join(tags) if tags else '-'}")
    return 0


_MAX_LABEL_WIDTH = 40  # longer labels are shortened with an ellipsis in the table (never in --json)


def _clip_label(label: str, width: int) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def cmd_classify(args):
    labels = list(args.labels)
    if args.labels_file:
        labels += [line.strip() for line in Path(args.labels_file).read_text(encoding="utf-8").splitlines()
                   if line.strip()]
    if len(labels) < 1:
        raise SystemExit("anyclip classify: give at least one label with --labels or --labels-file")
    from .zero_shot import build_zero_shot_classifier, default_activation, features_probs
    model, preprocess, tokenizer = _load(args)
    activation = default_activation(model) if args.activation == "auto" else args.activation
    if activation == "sigmoid" and model.logit_bias is None:
        print(f"anyclip classify: warning: {args.model} has no logit bias (it was not trained with the sigmoid "
              "loss): sigmoid probabilities of its logits are near 1 for every label", file=sys.stderr)
    templates = args.template or ["a photo of a {}."]
    weights = build_zero_shot_classifier(model, tokenizer, labels, templates)
    features, ok, errors = embed_image_files(model, preprocess, args.images, args.batch_size)
    probs = features_probs(model, features, weights, activation)
    top = min(args.top_k, len(labels))
    rows = []
    for path, p in zip(ok, probs):
        order = np.argsort(-p)[:top]
        rows.append({"image": path, "predictions": [{"label": labels[i], "prob": float(p[i])} for i in order]})
    if args.json:
        print(json.dumps({"activation": activation, "results": rows, "errors": errors}, indent=2))
    else:
        width = max([len(Path(r["image"]).name) for r in rows] + [5])
        label_width = min(max([len(q["label"]) for r in rows for q in r["predictions"]] + [4]), _MAX_LABEL_WIDTH)
        cell = label_width + 7  # label, a space, "100.0%"
        print(f"{'image':<{width}}  " + "  ".join(f"{f'top{i + 1}':<{cell}}" for i in range(top)).rstrip())
        for r in rows:
            cells = [f"{_clip_label(q['label'], label_width):<{label_width}} {q['prob']:6.1%}"
                     for q in r["predictions"]]
            print(f"{Path(r['image']).name:<{width}}  " + "  ".join(cells))
        if activation == "sigmoid":
            print("(sigmoid probabilities: each label is scored on its own; rows need not sum to 100%)")
        for path, reason in errors.items():
            print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0 if rows else 1


def _embed_tag(args):
    tag = args.checkpoint or args.pretrained
    return DEFAULT_PRETRAINED if tag is None and args.model == DEFAULT_MODEL else tag


def cmd_embed(args):
    from .data.common import DatasetError
    from .embed import EmbedJobError, EmbedSettings, Inputs, list_inputs, run_embed_job
    texts = list(args.texts or [])
    kind = "text" if texts or args.text_file else args.kind
    specs = list(args.inputs or []) + list(args.images or [])
    if not (specs or texts or args.text_file) or (kind == "text" and args.images):
        raise SystemExit("anyclip embed: give either images (folders, CSV/Parquet lists, .tar shards, files) or "
                         "texts (--texts / --text-file, or files with --kind text)")
    try:
        settings = EmbedSettings(kind=kind, model=args.model, tag=_embed_tag(args), batch_size=args.batch_size,
                                 shard_size=args.shard_size, format=args.format, fast=args.fast,
                                 max_pixels=args.max_pixels or None)
        if kind == "text":
            files = ([args.text_file] if args.text_file else []) + specs
            inputs = Inputs.concat([list_inputs(texts, "text-literal"),
                                    list_inputs(files, "text", args.column, args.separator)])
        else:
            inputs = list_inputs(specs, "image", args.column, args.separator)
    except (EmbedJobError, DatasetError) as e:
        print(f"anyclip embed: error: {e}", file=sys.stderr)
        return 2
    if inputs.ignored:
        print(f"anyclip embed: ignored {inputs.ignored} file(s) without an image extension", file=sys.stderr)
    progress = False if args.no_progress else None
    out = Path(args.output)
    if out.suffix in (".npy", ".parquet"):
        return _embed_to_file(args, inputs, settings, out, progress)

    def load():
        model, _, tokenizer = _load(args)
        return model, tokenizer
    try:
        if args.ray:
            from .embed.ray_job import run_embed_job_on_ray
            manifest = run_embed_job_on_ray(inputs, out, settings, _embed_model_spec(args), address=args.ray_address,
                                            workers=args.workers, num_actors=args.ray_actors)
        else:
            manifest = run_embed_job(inputs, out, settings, load, workers=args.workers, progress=progress)
    except (EmbedJobError, DatasetError, ImportError) as e:
        print(f"anyclip embed: error: {e}", file=sys.stderr)
        return 2
    if manifest["num_errors"]:
        print(f"{manifest['num_errors']} input(s) failed, see {out / 'errors.jsonl'}", file=sys.stderr)
    print(f"wrote {manifest['num_rows']} {kind} embeddings in {manifest['num_shards']} shard(s) to {out}")
    return 0


def _embed_model_spec(args) -> dict:
    return {k: getattr(args, k) for k in ("model", "pretrained", "checkpoint", "cache_dir", "precision")}


def _embed_to_file(args, inputs, settings, out, progress):
    """One ``.npy``/``.parquet`` file (ids: the paths or texts), errors beside it; not resumable."""
    from .embed import ShardEncoder
    from .embed.io import write_embeddings, write_errors
    model, _, tokenizer = _load(args)
    encoder = ShardEncoder(model, tokenizer, settings, workers=args.workers if settings.kind == "image" else 0)
    try:
        from .embed.job import _bar
        with _bar(len(inputs.items), 0, "img" if settings.kind == "image" else "txt", progress) as bar:
            emb, ok, failed = encoder.encode(inputs.items, bar)
    finally:
        encoder.close()
    meta = {"model": args.model, "pretrained": args.checkpoint or args.pretrained, "kind": settings.kind}
    write_embeddings(out, emb, [item.name for item in ok], meta)
    if failed:
        err_path = out.with_name(out.stem + ".errors.jsonl")
        write_errors(err_path, {item.name: reason for item, reason in failed})
        print(f"{len(failed)} file(s) skipped, see {err_path}", file=sys.stderr)
    print(f"wrote {len(ok)} {settings.kind} embeddings of dim {emb.shape[1]} to {out}")
    return 0


def cmd_index(args):
    from .embed.index import EmbeddingIndexError, build_index, read_embeddings, save_index
    try:
        emb, rows = read_embeddings(args.embeddings)
        index, info = build_index(emb, args.type, exact_below=args.exact_below, pq_above=args.pq_above,
                                  target_recall=args.target_recall)
    except (EmbeddingIndexError, ImportError) as e:
        print(f"anyclip index: error: {e}", file=sys.stderr)
        return 2
    for key in ("model", "tag"):
        values = set(rows.column(key).to_pylist()) if key in rows.column_names else set()
        info[key] = values.pop() if len(values) == 1 else None
    info["kind"] = "text" if "text" in rows.column_names else "image"
    info["sources"] = [os.fspath(s) for s in args.embeddings]
    save_index(args.output, index, info, rows)
    extra = f", nprobe {info['nprobe']} (recall@10 {info['recall_at_10']:.3f})" if info["nprobe"] else ""
    print(f"wrote a {info['type']} index of {info['n']} vectors (dim {info['dim']}{extra}) to {args.output}")
    return 0


def cmd_search(args):
    from keras import ops

    from .embed.index import EmbeddingIndexError, SearchIndex
    from .embed.sheet import contact_sheet_html
    if bool(args.text) == bool(args.image):
        raise SystemExit("anyclip search: give one query: --text TEXT or --image PATH")
    try:
        index = SearchIndex(args.index)
    except (EmbeddingIndexError, ImportError) as e:
        print(f"anyclip search: error: {e}", file=sys.stderr)
        return 2
    if args.model is None:
        args.model = index.info.get("model") or DEFAULT_MODEL
        if args.pretrained is None and args.checkpoint is None:
            args.pretrained = index.info.get("tag")
    model, preprocess, tokenizer = _load(args)
    if args.text:
        query = model.encode_text(tokenizer([args.text]), normalize=True)
    else:
        from .transforms import ImageLoadError, load_image
        try:
            pixels = preprocess(load_image(args.image))
        except ImageLoadError as e:
            print(f"anyclip search: error: {e}", file=sys.stderr)
            return 2
        query = model.encode_image(pixels[None], normalize=True)
    try:
        scores, hits = index.search(np.asarray(ops.convert_to_numpy(query), np.float32), args.top_k)
    except EmbeddingIndexError as e:
        print(f"anyclip search: error: {e}", file=sys.stderr)
        return 2
    scores, hits = scores[0][:len(hits[0])], hits[0]
    if args.json:
        print(json.dumps([{"rank": r + 1, "score": float(sc), **h} for r, (sc, h) in enumerate(zip(scores, hits))],
                         indent=1, ensure_ascii=False))
    else:
        for rank, (score, hit) in enumerate(zip(scores, hits), 1):
            print(f"{rank:>3}  {score:7.4f}  {hit.get('path', hit.get('text', hit.get('id')))}")
    if args.html:
        from .atomic import atomic_write_text
        atomic_write_text(args.html, contact_sheet_html(args.text or args.image, scores, hits))
        print(f"wrote {args.html}", file=sys.stderr)
    return 0


def cmd_data_shapes(args):
    from .data.shapes import ShapesConfig
    from .data.shapes_io import make_shapes
    try:
        config = ShapesConfig(image_size=args.image_size, max_count=args.max_count, seed=args.seed)
        out = make_shapes(args.out, args.split, args.num_samples, args.format, config=config,
                          shard_size=args.shard_size, image_format=args.image_format, workers=args.workers)
    except ValueError as e:
        print(f"anyclip data shapes: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.num_samples} {args.split} samples to {out}")
    return 0


def cmd_train(args):
    from .train.loop import run_train_command
    try:
        return run_train_command(args)
    except (ValueError, ImportError) as e:  # bad flags or data (DatasetError is a ValueError), a missing extra
        print(f"anyclip train: error: {e}", file=sys.stderr)
        return 2


def cmd_plot(args):
    from .train.plot import plot_runs
    try:
        out = plot_runs(args.runs, args.output, title=args.title, dpi=args.dpi)
    except (ValueError, ImportError) as e:  # an empty or broken log, or no matplotlib: say which
        print(f"anyclip plot: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def cmd_convert(args):
    from .export.convert import convert
    if args.pretrained is None and not args.model.startswith(("hf-hub:", "local-dir:")):
        raise SystemExit(f"anyclip convert: give the weights to convert (a pretrained tag, a checkpoint file or "
                         f"folder) after {args.model}; 'none' converts random weights")
    pretrained = None if args.pretrained in (None, "none") else args.pretrained
    if args.to == "open_clip" and args.precision != "fp32":
        raise SystemExit("anyclip convert: error: open_clip checkpoints are written in float32; "
                         "--precision applies to --to keras")
    try:
        path = convert(args.model, pretrained, args.out, to=args.to, cache_dir=args.cache_dir,
                       precision=args.precision)
    except ValueError as e:
        raise SystemExit(f"anyclip convert: error: {e}") from None
    print(f"wrote {path}")
    return 0


def cmd_eval(args):
    from .eval.command import run_eval_command
    return run_eval_command(args, load=_load)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anyclip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list model architectures and their pretrained tags")
    p.add_argument("--pretrained-only", action="store_true", help="print one model/tag pair per line")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("classify", help="zero-shot classify images against text labels")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--labels", nargs="*", default=[], help="class names")
    p.add_argument("--labels-file", help="a file with one class name per line")
    p.add_argument("--template", action="append", help="prompt template with {} (repeatable)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--activation", choices=["auto", "softmax", "sigmoid"], default="auto",
                   help="softmax over the labels (CLIP), or a sigmoid per label (SigLIP); auto: sigmoid for "
                        "models with a logit bias (SigLIP), else softmax")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_model_args(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("embed", help="embed images or texts into resumable Parquet/.npy shards (or one file)")
    p.add_argument("inputs", nargs="*", help="folders, CSV/TSV/Parquet lists of paths, WebDataset .tar shards "
                   "(brace patterns, '::' lists) or image files; with --kind text: .txt (one per line) or CSV/Parquet")
    p.add_argument("--images", nargs="*", help="image files (same as giving them as inputs)")
    p.add_argument("--texts", nargs="*", help="texts")
    p.add_argument("--text-file", help="a file with one text per line")
    p.add_argument("--kind", choices=["image", "text"], default="image", help="what the inputs hold")
    p.add_argument("--column", default=None, help="the CSV/Parquet column of paths (or texts)")
    p.add_argument("--separator", default=None, help="CSV separator (default: tab for .tsv, else comma)")
    p.add_argument("--output", "-o", required=True,
                   help="a folder: sharded, resumable output (re-run the same command to resume); or one .npy/.parquet")
    p.add_argument("--format", choices=["parquet", "npy"], default="parquet",
                   help="shard format: part-N.parquet, or part-N.npy + part-N.meta.parquet")
    p.add_argument("--shard-size", type=int, default=10_000, help="inputs per output shard (default 10000)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="decoding processes (0: decode in the main process)")
    p.add_argument("--fast", action="store_true",
                   help="JPEG draft-mode decoding and reduce(): faster, within a documented tolerance of the "
                        "exact (default) path")
    from .transforms.host import DEFAULT_MAX_PIXELS
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger images as decompression bombs (0: PIL's own limit only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", action="store_true", help="run on a Ray cluster (Ray Data; pip install anyclip[ray])")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: ray.init's: local or RAY_ADDRESS)")
    p.add_argument("--ray-actors", type=int, default=1, help="model replicas (one per node or GPU)")
    _add_model_args(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("index", help="build a FAISS index (exact, IVF or IVF-PQ by size) from embedding shards")
    p.add_argument("embeddings", nargs="+", help="`anyclip embed` output folders or .parquet/.npy files")
    p.add_argument("--output", "-o", required=True, help="index folder to write")
    p.add_argument("--type", choices=["auto", "flat", "ivf", "ivfpq"], default="auto",
                   help="auto: exact up to --exact-below vectors, IVF up to --pq-above, IVF-PQ above")
    p.add_argument("--exact-below", type=int, default=50_000)
    p.add_argument("--pq-above", type=int, default=2_000_000)
    p.add_argument("--target-recall", type=float, default=0.97,
                   help="IVF nprobe is raised until recall@10 against exact search reaches this")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="top-k of an index for a text or an image, with an HTML contact sheet")
    p.add_argument("index", help="an `anyclip index` folder")
    p.add_argument("--text", help="a text query")
    p.add_argument("--image", help="an image query")
    p.add_argument("--top-k", "-k", type=int, default=10)
    p.add_argument("--html", help="write a contact sheet of the hits (thumbnails) to this file")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_model_args(p)
    p.set_defaults(func=cmd_search, model=None)

    p = sub.add_parser("data", help="make datasets")
    data = p.add_subparsers(dest="dataset", required=True)
    p = data.add_parser("shapes", help="write the synthetic shapes dataset as WebDataset shards or CSV")
    p.add_argument("out", help="output folder")
    p.add_argument("--split", default="train", choices=["train", "val", "test", "test_heldout"])
    p.add_argument("-n", "--num-samples", type=int, default=10000)
    p.add_argument("--format", default="wds", choices=["wds", "csv"])
    p.add_argument("--image-format", default="jpg", choices=["jpg", "png"])
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--workers", type=int, default=1, help="processes drawing images (0: every CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-count", type=int, default=3)
    p.set_defaults(func=cmd_data_shapes)

    from .train.loop import add_train_arguments
    p = sub.add_parser("train", help="train or fine-tune a CLIP model on image-caption data")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plot", help="draw loss, learning rate, temperature and eval curves of training runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folder(s) with train.jsonl (or the file itself)")
    p.add_argument("--output", "-o", default="curves.png", help="image to write (default curves.png)")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--dpi", type=int, default=100)
    p.set_defaults(func=cmd_plot)

    from .eval.command import add_eval_arguments
    p = sub.add_parser("convert", help="write a model and its weights as an open_clip checkpoint or a Keras file")
    p.add_argument("model", help="architecture name, hf-hub:org/repo or local-dir:PATH")
    p.add_argument("pretrained", nargs="?", default=None,
                   help="pretrained tag, checkpoint file or folder ('none': random weights)")
    p.add_argument("out", help="output: a folder or .safetensors (open_clip), .keras or .weights.h5 (keras)")
    p.add_argument("--to", choices=["open_clip", "keras"], default="open_clip")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="the Keras model's dtype (--to keras); open_clip checkpoints are always float32")
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser("eval", help="zero-shot classification, retrieval or linear-probe metrics on a dataset")
    add_eval_arguments(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``anyclip`` command.

    Example:
        >>> main(["models"])  # doctest: +SKIP
    """
    logging.basicConfig(level=os.environ.get("ANYCLIP_LOG", "WARNING"), format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    from .towers.config import ConfigError
    from .weights import CheckpointError, UnknownPretrainedError, WeightMismatchError, WeightsUnavailableError
    try:
        return args.func(args)
    except (ConfigError, UnknownPretrainedError, WeightMismatchError, WeightsUnavailableError, CheckpointError,
            FileNotFoundError) as e:
        print(f"anyclip {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
