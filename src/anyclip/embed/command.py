"""``anyclip embed``, ``anyclip index`` and ``anyclip search``: embedding at scale, FAISS indexes and top-k search.

They need the ``[embed]`` extra (pyarrow, faiss-cpu); without it they stop with a message saying so.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..cli_args import (
    existing_dir,
    existing_file,
    existing_path,
    fraction,
    non_negative_int,
    output_file,
    output_target,
    positive_int,
    separator,
)
from ..errors import UsageError
from ..extras import require_extras
from ..model_flags import (
    DEFAULT_MODEL,
    add_model_arguments,
    load_model_from_args,
    model_spec,
    pretrained_tag,
)
from ..transforms.limits import DEFAULT_MAX_PIXELS


def register(subparsers) -> None:
    """Add the ``embed``, ``index`` and ``search`` commands to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["index", ".", "-o", "idx/"]).type  # ".": an embedding folder that exists
        'auto'
    """
    p = subparsers.add_parser("embed", help="embed images or texts into resumable Parquet/.npy shards (or one file)")
    p.add_argument("inputs", nargs="*", help="folders, CSV/TSV/Parquet lists of paths, WebDataset .tar shards "
                   "(brace patterns, '::' lists) or image files; with --kind text: .txt (one per line) or CSV/Parquet")
    p.add_argument("--images", nargs="*", type=existing_file, help="image files (same as giving them as inputs)")
    p.add_argument("--texts", nargs="*", help="texts")
    p.add_argument("--text-file", type=existing_file, help="a file with one text per line")
    p.add_argument("--encoding", default=None,
                   help="encoding of --text-file and .txt inputs (default: UTF-8, or UTF-16 with a byte-order mark)")
    p.add_argument("--kind", choices=["image", "text"], default="image", help="what the inputs hold")
    p.add_argument("--column", default=None, help="the CSV/Parquet column of paths (or texts)")
    p.add_argument("--separator", default=None, type=separator, help="CSV separator (default: tab for .tsv, else comma)")
    p.add_argument("--output", "-o", required=True, type=output_target(".npy", ".parquet"),
                   help="a folder: sharded, resumable output (re-run the same command to resume); or one .npy/.parquet")
    p.add_argument("--format", choices=["parquet", "npy"], default="parquet",
                   help="shard format: part-N.parquet, or part-N.npy + part-N.meta.parquet")
    p.add_argument("--shard-size", type=positive_int, default=10_000, help="inputs per output shard (default 10000)")
    p.add_argument("--workers", type=non_negative_int, default=min(8, os.cpu_count() or 1),
                   help="decoding processes (0: decode in the main process)")
    p.add_argument("--fast", action="store_true",
                   help="JPEG draft-mode decoding and reduce(): faster, within a documented tolerance of the "
                        "exact (default) path")
    p.add_argument("--max-pixels", type=non_negative_int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger images as decompression bombs (0: PIL's own limit only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", action="store_true", help="run on a Ray cluster (Ray Data; pip install anyclip[ray])")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: ray.init's: local or RAY_ADDRESS)")
    p.add_argument("--ray-actors", type=positive_int, default=1, help="model replicas (one per node or GPU)")
    add_model_arguments(p)
    p.set_defaults(run=run_embed)

    p = subparsers.add_parser("index", help="build a FAISS index (exact, IVF or IVF-PQ by size) from embedding shards")
    p.add_argument("embeddings", nargs="+", type=existing_path,
                   help="anyclip embed output folders or .parquet/.npy files")
    p.add_argument("--output", "-o", required=True, type=output_target(), help="index folder to write")
    p.add_argument("--type", choices=["auto", "flat", "ivf", "ivfpq"], default="auto",
                   help="auto: exact up to --exact-below vectors, IVF up to --pq-above, IVF-PQ above")
    p.add_argument("--exact-below", type=non_negative_int, default=50_000,
                   help="auto: an exact (flat) index below this many vectors (default 50000)")
    p.add_argument("--pq-above", type=non_negative_int, default=2_000_000,
                   help="auto: IVF-PQ (compressed) above this many vectors (default 2000000)")
    p.add_argument("--target-recall", type=fraction, default=0.97,
                   help="IVF nprobe is raised until recall@10 against exact search reaches this")
    p.set_defaults(run=run_index)

    p = subparsers.add_parser("search", help="top-k of an index for a text or an image, with an HTML contact sheet")
    p.add_argument("index", type=existing_dir, help="an anyclip index folder")
    p.add_argument("--text", help="a text query")
    p.add_argument("--image", type=existing_file, help="an image query")
    p.add_argument("--top-k", "-k", type=positive_int, default=10, help="how many hits (default 10)")
    p.add_argument("--html", type=output_file(".html", ".htm"),
                   help="write a contact sheet of the hits (thumbnails) to this .html file")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arguments(p)
    p.set_defaults(run=run_search, model=None)


def run_embed(args) -> int:
    """Run ``anyclip embed`` for parsed ``args``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["embed", "photos/", "-o", "emb/"])  # doctest: +SKIP
        0
    """
    from . import EmbedSettings, Inputs, list_inputs, run_embed_job
    out = Path(args.output)
    require_extras((["ray"] if args.ray else []) + ([] if out.suffix == ".npy" else ["pyarrow"]), "this")
    texts = list(args.texts or [])
    kind = "text" if texts or args.text_file else args.kind
    specs = list(args.inputs or []) + list(args.images or [])
    if not (specs or texts or args.text_file) or (kind == "text" and args.images):
        raise UsageError("give either images (folders, CSV/Parquet lists, .tar shards, files) or "
                         "texts (--texts / --text-file, or files with --kind text)")
    settings = EmbedSettings(kind=kind, model=args.model, tag=pretrained_tag(args), batch_size=args.batch_size,
                             shard_size=args.shard_size, format=args.format, fast=args.fast,
                             max_pixels=args.max_pixels or None)
    if kind == "text":
        files = ([args.text_file] if args.text_file else []) + specs
        inputs = Inputs.concat([list_inputs(texts, "text-literal"),
                                list_inputs(files, "text", args.column, args.separator,
                                            encoding=args.encoding)])
    else:
        inputs = list_inputs(specs, "image", args.column, args.separator)
    if inputs.ignored:
        print(f"anyclip embed: ignored {inputs.ignored} file(s) without an image extension", file=sys.stderr)
    if not inputs.items:
        from ..errors import DataError
        given = specs or ([args.text_file] if args.text_file else [])
        raise DataError(f"no {kind} inputs found in {given}" + (f" ({inputs.ignored} file(s) without an image "
                        "extension ignored)" if inputs.ignored else "") + "; give files, folders or lists that hold "
                        f"{'images' if kind == 'image' else 'texts'}")
    progress = False if args.no_progress else None

    def load():
        model, _, tokenizer = load_model_from_args(args, encodes_images=kind == "image")
        return model, tokenizer
    if out.suffix in (".npy", ".parquet"):
        return _embed_to_file(args, inputs, settings, out, progress)
    from ..output_lock import locked_output
    stats: dict = {}
    with locked_output(out, "anyclip embed -o " + os.fspath(out)):  # EmbedJobError, DatasetError: the CLI reports
        if args.ray:
            from .ray_job import run_embed_job_on_ray
            manifest = run_embed_job_on_ray(inputs, out, settings, model_spec(args), address=args.ray_address,
                                            workers=args.workers, num_actors=args.ray_actors, stats=stats)
        else:
            manifest = run_embed_job(inputs, out, settings, load, workers=args.workers, progress=progress,
                                     stats=stats)
    return _report_job(manifest, stats, kind, out)


def _report_job(manifest: dict, stats: dict, kind: str, out: Path) -> int:
    """Say what this run wrote (new rows, rows earlier runs left); all inputs failed: a DataError."""
    from ..errors import DataError
    if manifest["num_errors"]:
        print(f"{manifest['num_errors']} input(s) failed, see {out / 'errors.jsonl'}", file=sys.stderr)
    if manifest["num_rows"] == 0:
        raise DataError(f"every one of the {manifest['num_errors']} input(s) failed (see {out / 'errors.jsonl'}); "
                        "nothing was embedded: fix or replace the inputs")
    total = f"{manifest['num_rows']} in {manifest['num_shards']} shard(s)"
    old = stats.get("old_rows", 0)
    if old:
        print(f"wrote {stats.get('new_rows', 0)} new {kind} embeddings ({old} already done; {total}) to {out}")
    else:
        print(f"wrote {manifest['num_rows']} {kind} embeddings in {manifest['num_shards']} shard(s) to {out}")
    return 0


def _embed_to_file(args, inputs, settings, out: Path, progress) -> int:
    """One ``.npy``/``.parquet`` file (ids: the paths or texts), errors beside it; not resumable."""
    from ..progress import progress_bar
    from .extra import require
    from .io import write_item_errors, write_rows_file
    from .job import ShardEncoder
    if out.suffix == ".parquet":
        require("pyarrow.parquet")  # before the model loads
    model, _, tokenizer = load_model_from_args(args, encodes_images=settings.kind == "image")
    encoder = ShardEncoder(model, tokenizer, settings, workers=args.workers if settings.kind == "image" else 0)
    try:
        with progress_bar(len(inputs.items), "embed", "img" if settings.kind == "image" else "txt", progress) as bar:
            emb, ok, failed = encoder.encode(inputs.items, bar)
    finally:
        encoder.close()
    if not ok:
        from ..errors import DataError
        err_path = out.with_name(out.stem + ".errors.jsonl")
        write_item_errors(err_path, failed)
        raise DataError(f"every one of the {len(failed)} input(s) failed (see {err_path}); nothing was embedded, "
                        f"{out} not written: fix or replace the inputs")
    write_rows_file(out, emb, ok, settings)
    err_path = out.with_name(out.stem + ".errors.jsonl")
    err_path.unlink(missing_ok=True)  # an earlier run's
    if failed:
        write_item_errors(err_path, failed)
        print(f"{len(failed)} file(s) skipped, see {err_path}", file=sys.stderr)
    print(f"wrote {len(ok)} {settings.kind} embeddings of dim {emb.shape[1]} to {out}")
    return 0


def run_index(args) -> int:
    """Run ``anyclip index`` for parsed ``args``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["index", "emb/", "-o", "idx/"])  # doctest: +SKIP
        0
    """
    from .index import build_index, read_embeddings, save_index
    require_extras(["pyarrow", "faiss"], "this")
    emb, rows = read_embeddings(args.embeddings)  # EmbeddingIndexError, a missing extra: the CLI reports them
    index, info = build_index(emb, args.type, exact_below=args.exact_below, pq_above=args.pq_above,
                              target_recall=args.target_recall)
    for key in ("model", "tag"):
        values = set(rows.column(key).to_pylist()) if key in rows.column_names else set()
        info[key] = values.pop() if len(values) == 1 else None
    info["kind"] = "text" if "text" in rows.column_names else "image"
    info["sources"] = [os.fspath(s) for s in args.embeddings]
    save_index(args.output, index, info, rows)
    extra = f", nprobe {info['nprobe']} (recall@10 {info['recall_at_10']:.3f})" if info["nprobe"] else ""
    print(f"wrote a {info['type']} index of {info['n']} vectors (dim {info['dim']}{extra}) to {args.output}")
    return 0


def run_search(args) -> int:
    """Run ``anyclip search`` for parsed ``args``.

    Example:
        >>> from anyclip.cli import main
        >>> main(["search", "idx/", "--text", "a red circle", "--html", "hits.html"])  # doctest: +SKIP
        0
    """
    import numpy as np

    from ..encode import encode_batch
    from ..transforms.host import load_image, numpy_output
    from .index import SearchIndex
    from .sheet import contact_sheet_html
    if bool(args.text) == bool(args.image):
        raise UsageError("give one query: --text TEXT or --image PATH")
    require_extras(["pyarrow", "faiss"], "this")
    index = SearchIndex(args.index)  # EmbeddingIndexError, a missing extra: the CLI reports them
    built_with = index.info.get("model")
    if args.model is None:
        args.model = built_with or DEFAULT_MODEL
        if args.pretrained is None and args.checkpoint is None:
            args.pretrained = index.info.get("tag")
    elif built_with and args.model != built_with:
        raise UsageError(f"--model {args.model} differs from the model the index at {args.index} was built with "
                         f"({built_with}); leave --model out to use {built_with}, or index embeddings of {args.model}")
    model, preprocess, tokenizer = load_model_from_args(args, encodes_images=bool(args.image))
    if args.text:  # ImageLoadError, EmbeddingIndexError: the CLI reports them
        query = encode_batch(model.encode_text, np.asarray(tokenizer([args.text])), 1)
    else:
        query = encode_batch(model.encode_image, numpy_output(preprocess)(load_image(args.image))[None], 1)
    scores, hits = index.search(query, args.top_k)
    scores, hits = scores[0][:len(hits[0])], hits[0]
    if args.json:
        print(json.dumps([{"rank": r + 1, "score": float(sc), **h} for r, (sc, h) in enumerate(zip(scores, hits))],
                         indent=1, ensure_ascii=False))
    else:
        for rank, (score, hit) in enumerate(zip(scores, hits), 1):
            print(f"{rank:>3}  {score:7.4f}  {hit.get('path', hit.get('text', hit.get('id')))}")
    if args.html:
        from ..atomic import atomic_write_text
        atomic_write_text(args.html, contact_sheet_html(args.text or args.image, scores, hits))
        print(f"wrote {args.html}", file=sys.stderr)
    return 0


__all__ = ["register", "run_embed", "run_index", "run_search"]
