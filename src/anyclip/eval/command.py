"""``anyclip eval``: zero-shot classification, retrieval or a linear probe from the command line; and
``anyclip classify``: zero-shot classify image files against text labels, as a table or JSON.

Flags follow clip_benchmark and open_clip's training script where they have one. Datasets are read
(and checked) before the model loads, so a bad file fails fast. The result is printed and written as
clip_benchmark-style JSON (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..cli_args import (
    existing_dir,
    existing_file,
    existing_path,
    file_or_keyword,
    float_range,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    prompt_template,
    separator,
)
from ..errors import DataError, UsageError
from ..extras import require_extras
from ..model_flags import add_model_arguments, choose_backend_for, load_model_from_args

TASKS = ("auto", "zeroshot_classification", "zeroshot_retrieval", "linear_probe")
_MAX_LABEL_WIDTH = 40  # classify: longer labels are shortened with an ellipsis in the table (never in --json)


def register(subparsers) -> None:
    """Add the ``eval`` command to ``anyclip``'s sub-command parsers.

    Example:
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["eval", "--dataset", "."]).task  # ".": a dataset folder that exists
        'auto'
    """
    p = subparsers.add_parser("eval", help="zero-shot classification, retrieval or linear-probe metrics on a dataset")
    add_eval_arguments(p)
    add_model_arguments(p)
    p.set_defaults(run=run_eval_command)


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``eval`` flags (the model flags are added by :func:`register`).

    Example:
        >>> parser = argparse.ArgumentParser(); add_eval_arguments(parser)
    """
    from ..data.common import DATASET_TYPES
    p.add_argument("--task", default="auto", choices=TASKS,
                   help="what to measure (auto: retrieval for caption files, zero-shot classification otherwise)")
    p.add_argument("--dataset", required=True, type=existing_path,
                   help="ImageFolder root, labels CSV, WebDataset shards (shard-{000..009}.tar), or a retrieval "
                        "JSON/CSV; for linear_probe the test split, or a folder with train/ and test/")
    p.add_argument("--dataset-type", choices=DATASET_TYPES, default=None, help="layout of --dataset (auto-detected)")
    p.add_argument("--dataset-root", default=None, type=existing_dir,
                   help="folder that relative image paths in a CSV/JSON are resolved against (default: its folder)")
    p.add_argument("--split", default="test", help="split of a Karpathy-style retrieval JSON (default test)")
    p.add_argument("--train-dataset", default=None, type=existing_path, help="linear_probe: the training split")
    p.add_argument("--val-dataset", default=None, type=existing_path,
                   help="linear_probe: a validation split for the C sweep (default: held out from train)")
    p.add_argument("--classnames", default=None, type=file_or_keyword("imagenet"),
                   help="class names file (one per line, or JSON list) or 'imagenet'")
    p.add_argument("--encoding", default=None,
                   help="encoding of the --classnames and --templates files (default: UTF-8, or UTF-16 with a "
                        "byte-order mark)")
    p.add_argument("--templates", default=None, type=file_or_keyword("imagenet", "simple", "default"),
                   help="prompt templates file (one per line, {} or {c} for the class), 'imagenet' (80), "
                        "'simple' (7) or 'default' ('a photo of a {}.')")
    p.add_argument("--csv-img-key", default=None, help="CSV column of image paths (default: filepath, image, path...)")
    p.add_argument("--csv-label-key", default=None, help="CSV column of labels (default: label, class, target...)")
    p.add_argument("--csv-caption-key", default=None, help="CSV column of captions (default: caption, title, text...)")
    p.add_argument("--csv-separator", default=None, type=separator, 
                   help="CSV separator (default: tab when the header line has one, else comma)")
    p.add_argument("--workers", type=non_negative_int, default=min(8, os.cpu_count() or 1),
                   help="image decoding threads (0: decode in the main thread)")
    p.add_argument("--recall-k", type=positive_int, nargs="+", default=[1, 5, 10], help="retrieval: the k of R@k")
    p.add_argument("--feature-cache", default=None, help="linear_probe: folder to cache split features in")
    p.add_argument("--val-fraction", type=float_range(0, 1, include_low=False, include_high=False), default=0.2, help="linear_probe: share of train held out")
    p.add_argument("--c-values", type=positive_float, nargs="+", default=None,
                   help="linear_probe: C values to try (one value: no sweep; default: the log-spaced sweep)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="linear_probe: seed of the validation hold-out")
    p.add_argument("--output", "-o", default="results.json", type=output_file(".json"),
                   help="where to write the JSON results (an existing file is kept unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output results file")
    p.add_argument("--confusion-png", default=None, type=output_file(".png"),
                   help="classification: also draw the confusion matrix in this .png file")
    p.add_argument("--language", default="en", help="recorded in the JSON, as clip_benchmark does")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _validate(args) -> None:
    """The checks of values given from Python (the command line checks them by type), and the extras needed."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}")
    if min(args.recall_k) < 1:
        raise UsageError(f"--recall-k values must be at least 1, got {args.recall_k}")
    if not 0 < args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    if args.task == "linear_probe":
        require_extras(["sklearn"], "--task linear_probe")
    if args.confusion_png:
        require_extras(["matplotlib"], "--confusion-png")


def _separator(args) -> str:
    """``--csv-separator``, else ``auto``: tab when the header has one (as ``anyclip data shapes`` writes)."""
    return args.csv_separator or "auto"


def _check_classes(data, what: str) -> None:
    """Refuse a classification set of fewer than two classes: its accuracy would mean nothing."""
    n = data.num_classes
    if n is not None and n < 2:
        raise DataError(f"{data.name}: {what} has {n} class(es) ({', '.join(data.classnames or ())}); "
                        "classification accuracy needs at least two: add classes, or give --classnames")


TABLE_SUFFIXES = (".csv", ".tsv", ".tab")


def _table_in_folder(path, dataset_type):
    """``path``, or the one CSV/TSV file at the top of the folder ``path`` (what ``anyclip data shapes --format csv``
    writes: ``val.csv`` beside ``images/``) when no ``--dataset-type`` is given; a notice says which is read."""
    folder = Path(path)
    if dataset_type is not None or not folder.is_dir():
        return path
    entries = list(folder.iterdir())
    tables = [e for e in entries if e.is_file() and e.suffix.lower() in TABLE_SUFFIXES]
    if len(tables) != 1 or any(e.name.endswith(".tar") for e in entries):
        return path
    print(f"anyclip eval: reading {tables[0]}, the one table in {path} (--dataset-type imagefolder reads the "
          "folder's subfolders as classes instead)", file=sys.stderr)
    return os.fspath(tables[0])


def _labelled(path, args, classnames, dataset_type=None):
    from ..data.common import DatasetError, detect_dataset_type
    from ..data.labelled import read_image_folder, read_labelled_csv, read_webdataset
    path = _table_in_folder(path, dataset_type)
    kind = dataset_type or detect_dataset_type(path, "classification", separator=_separator(args))
    if kind == "imagefolder":
        return read_image_folder(path, classnames)
    if kind == "csv":
        return read_labelled_csv(path, classnames, img_key=args.csv_img_key, label_key=args.csv_label_key,
                                 separator=_separator(args), root=args.dataset_root)
    if kind == "webdataset":
        return read_webdataset(path, classnames)
    raise DatasetError(f"{path}: a {kind} dataset holds captions, not labels; use --task zeroshot_retrieval")


def _retrieval(args, kind):
    from ..data.common import DatasetError
    from ..data.retrieval import read_retrieval_csv, read_retrieval_json
    if kind == "retrieval-json":
        return read_retrieval_json(args.dataset, args.dataset_root, split=args.split)
    if kind == "retrieval-csv":
        return read_retrieval_csv(args.dataset, args.dataset_root, img_key=args.csv_img_key,
                                  caption_key=args.csv_caption_key, separator=_separator(args))
    raise DatasetError(f"{args.dataset}: a {kind} dataset has labels, not captions; retrieval needs a "
                       f"retrieval-json or retrieval-csv file")


def _refuse_classification_options(args, names, why) -> None:
    """A given option the task would ignore is an error, not a silent no-op."""
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None)]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(f"{' and '.join(given)} {verb} to zero-shot classification, but {why}; give --task "
                         f"zeroshot_classification to classify by its labels, or drop {' and '.join(given)}")


def _read_data(args, task):
    from ..data.common import detect_dataset_type
    from ..data.labelled import read_classnames
    classnames = read_classnames(args.classnames, args.encoding, "--classnames") if args.classnames else None
    if task == "linear_probe":
        _refuse_classification_options(args, ("templates",), "a linear probe uses no prompts")
        train_path, test_path, val_path = args.train_dataset, args.dataset, args.val_dataset
        root = Path(args.dataset)
        if train_path is None and (root / "train").is_dir() and (root / "test").is_dir():
            train_path, test_path = root / "train", root / "test"
            if val_path is None and (root / "val").is_dir():
                val_path = root / "val"
        if train_path is None:
            from ..data.common import DatasetError
            raise DatasetError("linear_probe needs a training split: --train-dataset, or --dataset holding "
                               "train/ and test/ folders")
        kind = args.dataset_type
        train = _labelled(train_path, args, classnames, kind)
        _check_classes(train, "the training split")
        names = classnames or train.classnames  # read the other splits with train's class ids
        test = _labelled(test_path, args, names, kind)
        val = _labelled(val_path, args, names, kind) if val_path is not None else None
        if train.items is not None and len({label for _, label in train.items}) < 2:
            raise DataError(f"{train_path}: every training image has the same label; a linear probe needs "
                            "at least two classes with images")
        return {"train": train, "test": test, "val": val}
    args.dataset = _table_in_folder(args.dataset, args.dataset_type)
    kind = args.dataset_type or detect_dataset_type(
        args.dataset, None if task == "auto" else task, separator=_separator(args),
        label_key=args.csv_label_key, caption_key=args.csv_caption_key)
    if task == "auto":
        task = "zeroshot_retrieval" if kind.startswith("retrieval") else "zeroshot_classification"
    if task == "zeroshot_retrieval":
        _refuse_classification_options(args, ("templates", "classnames", "confusion_png"),
                                       f"{args.dataset} is read as a retrieval set (images with captions)")
        return {"task": task, "data": _retrieval(args, kind)}
    data = _labelled(args.dataset, args, classnames, kind)
    _check_classes(data, "the dataset")
    return {"task": task, "data": data}


MAX_SKIPPED_LINES = 20


def _report_skipped(result) -> None:
    """One stderr line per unreadable image (the first ``MAX_SKIPPED_LINES``, then a count)."""
    for s in result.skipped[:MAX_SKIPPED_LINES]:
        print(f"anyclip eval: skipped {s.name}: {s.reason}", file=sys.stderr)
    if len(result.skipped) > MAX_SKIPPED_LINES:
        print(f"anyclip eval: ... and {len(result.skipped) - MAX_SKIPPED_LINES} more unreadable image(s), all "
              "listed in the results JSON", file=sys.stderr)


def run_eval_command(args, load=load_model_from_args) -> int:
    """Run ``anyclip eval`` for parsed ``args``; ``load(args)`` returns ``(model, preprocess, tokenizer)``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["eval", "--dataset", "pets/val", "--output", "pets.json"])  # doctest: +SKIP
        0
    """
    # DatasetError and the other user errors end at the CLI's error boundary (one line, exit 1 or 2)
    _validate(args)
    choose_backend_for(args.precision)  # before anything imports Keras
    from .linear_probe import linear_probe
    from .report import format_summary, save_confusion_png, write_results_json
    from .retrieval import zero_shot_retrieval
    from .zero_shot import zero_shot_classification
    if args.output and Path(args.output).exists() and not getattr(args, "overwrite", False):
        from ..errors import UsageError
        raise UsageError(f"{args.output} exists (results of an earlier eval?); give another --output file, "
                         "or --overwrite to replace it")
    task = args.task
    data = _read_data(args, task)
    task = data.get("task", task)
    model, preprocess, tokenizer = load(args)
    weights = getattr(model, "pretrained_cfg", None) or {}
    if args.feature_cache and not (weights.get("checkpoint") or weights.get("pretrained")):
        raise UsageError("--feature-cache needs a model with weights (--pretrained or --checkpoint): "
                         "features of a randomly initialised model are not worth caching")
    progress = False if args.no_progress else None
    common = dict(preprocess=preprocess, batch_size=args.batch_size, workers=args.workers, progress=progress)
    if task == "zeroshot_classification":
        templates = args.templates
        if args.encoding and templates and os.path.isfile(templates):  # else read_templates reads UTF-8/UTF-16
            from ..data.common import read_text_list
            templates = [t for _, t in read_text_list(templates, "--templates", args.encoding)]
        result = zero_shot_classification(model, tokenizer, data["data"], templates=templates, **common)
    elif task == "zeroshot_retrieval":
        result = zero_shot_retrieval(model, tokenizer, data["data"], recall_k=args.recall_k, **common)
    else:
        result = linear_probe(model, data["train"], data["test"], val=data["val"],
                              feature_cache=args.feature_cache, val_fraction=args.val_fraction,
                              c_values=args.c_values, seed=args.seed, **common)
    _report_skipped(result)
    pretrained = model.pretrained_cfg.get("pretrained") if getattr(model, "pretrained_cfg", None) else None
    print(format_summary(result, args.dataset))
    if args.output:
        out = write_results_json(args.output, result, dataset=args.dataset, model=args.model, pretrained=pretrained,
                                 language=args.language)
        print(f"wrote {out}")
    if args.confusion_png:
        if result.confusion is None:
            print("anyclip eval: --confusion-png applies to classification tasks only; not drawn", file=sys.stderr)
        else:
            png = save_confusion_png(args.confusion_png, result.confusion, result.classnames,
                                     title=f"{Path(args.model).name} on {Path(args.dataset).name}")
            print(f"wrote {png}")
    return 0


def register_classify(subparsers) -> None:
    """Add the ``classify`` command to ``anyclip``'s sub-command parsers.

    Example:
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register_classify(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["classify", __file__, "--labels", "cat", "dog"]).top_k  # an existing file
        3
    """
    p = subparsers.add_parser("classify", help="zero-shot classify images against text labels")
    p.add_argument("images", nargs="+", type=existing_file, help="image files")
    p.add_argument("--labels", nargs="*", default=[], help="class names")
    p.add_argument("--labels-file", type=existing_file, help="a file with one class name per line")
    p.add_argument("--encoding", default=None,
                   help="encoding of --labels-file (default: UTF-8, or UTF-16 with a byte-order mark)")
    p.add_argument("--template", action="append", type=prompt_template, help="prompt template with {} (repeatable)")
    p.add_argument("--top-k", type=positive_int, default=3, help="how many labels to show per image (default 3)")
    p.add_argument("--activation", choices=["auto", "softmax", "sigmoid"], default="auto",
                   help="softmax over the labels (CLIP), or a sigmoid per label (SigLIP); auto: sigmoid for "
                        "models with a logit bias (SigLIP), else softmax")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_arguments(p)
    p.set_defaults(run=run_classify)


def _clip_label(label: str, width: int) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def _print_table(rows: list[dict], top: int, activation: str) -> None:
    width = max([len(Path(r["image"]).name) for r in rows] + [5])
    label_width = min(max([len(q["label"]) for r in rows for q in r["predictions"]] + [4]), _MAX_LABEL_WIDTH)
    cell = label_width + 7  # label, a space, "100.0%"
    print(f"{'image':<{width}}  " + "  ".join(f"{f'top{i + 1}':<{cell}}" for i in range(top)).rstrip())
    for r in rows:
        cells = [f"{_clip_label(q['label'], label_width):<{label_width}} {q['prob']:6.1%}" for q in r["predictions"]]
        print(f"{Path(r['image']).name:<{width}}  " + "  ".join(cells))
    if activation == "sigmoid":
        print("(sigmoid probabilities: each label is scored on its own; rows need not sum to 100%)")


def _classify_labels(args) -> list[str]:
    """The labels of ``--labels`` and ``--labels-file``: none blank, none repeated (each names where it came from)."""
    from ..textfile import read_text_lines
    entries = []  # (where the label was given, label, whether it came from the file)
    for n, label in enumerate(args.labels, 1):
        if not label.strip():
            raise UsageError(f"--labels: label {n} is empty; give every class a name (quote names with spaces)")
        entries.append((f"--labels item {n}", label.strip(), False))
    if args.labels_file:
        lines = read_text_lines(args.labels_file, "--labels-file", args.encoding, keep_blank=True)
        in_file = [(f"{args.labels_file} line {n}", line, True) for n, line in enumerate(lines, 1) if line]
        if not in_file:
            raise DataError(f"--labels-file {args.labels_file}: holds no labels (the file is empty or blank); "
                            "write one class name per line")
        entries += in_file
    if not entries:
        raise UsageError("give at least one label with --labels or --labels-file")
    first_seen: dict[str, str] = {}
    for where, label, from_file in entries:
        if label in first_seen:
            error = DataError if from_file else UsageError
            raise error(f"label {label!r} is given twice ({first_seen[label]} and {where}); "
                        "each class needs its own name")
        first_seen[label] = where
    return [label for _, label, _ in entries]


def run_classify(args) -> int:
    """Run ``anyclip classify`` for parsed ``args``: 0 when some image was classified, else 1.

    Example:
        >>> from anyclip.cli import main
        >>> main(["classify", "examples/shapes/red-triangle.png", "--labels", "red triangle", "blue"])  # doctest: +SKIP
        0
    """
    labels = _classify_labels(args)
    model, preprocess, tokenizer = load_model_from_args(args)  # first: it may pick the backend (bf16 on a CPU)
    import numpy as np

    from ..encode import encode_images
    from ..zero_shot import (
        build_zero_shot_classifier,
        default_activation,
        features_probs,
    )
    activation = default_activation(model) if args.activation == "auto" else args.activation
    if activation == "sigmoid" and model.logit_bias is None:
        print(f"anyclip classify: warning: {args.model} has no logit bias (it was not trained with the sigmoid "
              "loss): sigmoid probabilities of its logits are near 1 for every label", file=sys.stderr)
    weights = build_zero_shot_classifier(model, tokenizer, labels, args.template or ["a photo of a {}."])
    feats = encode_images(model, args.images, preprocess, batch_size=args.batch_size)
    probs = features_probs(model, feats.features, weights, activation)
    errors = {skip.name: skip.reason for skip in feats.skipped}
    top = min(args.top_k, len(labels))
    rows = []
    for i, p in zip(feats.indices, probs):
        order = np.argsort(-p)[:top]
        predictions = [{"label": labels[j], "prob": float(p[j])} for j in order]
        rows.append({"image": args.images[i], "predictions": predictions})
    if args.json:
        print(json.dumps({"activation": activation, "results": rows, "errors": errors}, indent=2))
    else:
        _print_table(rows, top, activation)
        for path, reason in errors.items():
            print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0 if rows else 1


__all__ = ["TASKS", "add_eval_arguments", "register", "register_classify", "run_classify", "run_eval_command"]
