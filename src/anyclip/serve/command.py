"""``anyclip serve``: the embedding, zero-shot and search service with its web page (needs ``anyclip[serve]``)."""

from __future__ import annotations

import os
import sys

from ..cli_args import (
    existing_dir,
    int_range,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from ..model_flags import add_model_arguments
from ..transforms.limits import DEFAULT_MAX_PIXELS

SERVE_MODULES = ("starlette", "uvicorn", "prometheus_client", "pyarrow", "faiss")


def register(subparsers) -> None:
    """Add the ``serve`` command to ``anyclip``'s sub-command parsers.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anyclip")
        >>> register(parser.add_subparsers(dest="command"))
        >>> args = parser.parse_args(["serve"])
        >>> args.host, args.port, args.max_batch_size
        ('127.0.0.1', 8000, 32)
    """
    p = subparsers.add_parser("serve", help="an HTTP service (embeddings, zero-shot, search) with a web page")
    p.add_argument("--index", type=existing_dir, default=None,
                   help="an anyclip index folder to search (default: shapes pictures embedded by the model, cached)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_range(0, 65535), default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--api-key", default=os.environ.get("ANYCLIP_API_KEY") or None,
                   help="require this key (Authorization: Bearer KEY) on /v1/* and /metrics (default: "
                        "ANYCLIP_API_KEY, else no key)")
    p.add_argument("--max-batch-size", type=positive_int, default=32,
                   help="inputs per model batch (default 32; 1 turns dynamic batching off)")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=5.0,
                   help="how long a batch waits for more inputs (default 5 ms)")
    p.add_argument("--max-queue", type=positive_int, default=1024,
                   help="inputs waiting per encoder before the server answers 503 (default 1024)")
    p.add_argument("--max-body-mb", type=positive_float, default=16.0, help="request body limit (default 16 MB)")
    p.add_argument("--timeout", type=positive_float, default=30.0, help="seconds a request may take (504 after)")
    p.add_argument("--max-pixels", type=non_negative_int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger uploaded images as decompression bombs (0: PIL's own limit only)")
    p.add_argument("--cors-origin", action="append", default=[],
                   help="allow browser pages of this origin to call the API (repeatable; default: CORS off)")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"], default="info",
                   help="uvicorn's log level (default info)")
    add_model_arguments(p)
    p.set_defaults(run=run_serve, model=None)


def build_engine(args):
    """The :class:`~anyclip.serve.engine.Engine` for parsed ``args``: model, then the index (default or --index).

    Example:
        >>> engine = build_engine(build_parser().parse_args(["serve"]))  # doctest: +SKIP
    """
    from ..embed.index import SearchIndex
    from ..errors import UsageError
    from ..model_flags import DEFAULT_MODEL, load_model_from_args, pretrained_tag
    from .default_index import build_default_index
    from .engine import Engine
    index = SearchIndex(args.index) if args.index else None  # EmbeddingIndexError: the CLI reports it
    built_with = index.info.get("model") if index is not None else None
    if args.model is None:
        args.model = built_with or DEFAULT_MODEL
        if args.pretrained is None and args.checkpoint is None and index is not None:
            args.pretrained = index.info.get("tag")
    elif built_with and args.model != built_with:
        raise UsageError(f"--model {args.model} differs from the model the index at {args.index} was built with "
                         f"({built_with}); leave --model out to use {built_with}")
    model, preprocess, tokenizer = load_model_from_args(args)
    tag = pretrained_tag(args)
    if index is None:
        print("anyclip serve: indexing the shapes pictures (once per model)...", file=sys.stderr)
        index = SearchIndex(build_default_index(model, preprocess, args.model, tag, batch_size=args.batch_size))
    return Engine(model, preprocess, tokenizer, index, model_name=args.model, max_batch_size=args.max_batch_size,
                  max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_pixels=args.max_pixels or None)


def run_serve(args) -> int:
    """Run ``anyclip serve`` for parsed ``args`` until interrupted.

    Example:
        >>> from anyclip.cli import main
        >>> main(["serve", "--port", "8080"])  # doctest: +SKIP
    """
    from ..errors import UsageError
    from ..extras import require_extras
    require_extras(SERVE_MODULES, "this")
    import uvicorn

    from .app import create_app
    from .settings import ServeSettings
    try:
        settings = ServeSettings(api_key=args.api_key, cors_origins=tuple(args.cors_origin),
                                 max_body_bytes=int(args.max_body_mb * (1 << 20)), request_timeout_s=args.timeout)
    except ValueError as e:
        raise UsageError(f"anyclip serve: {e}") from None
    engine = build_engine(args)
    print(f"anyclip serve: compiling {len(engine.text.buckets)} batch shapes per encoder...", file=sys.stderr)
    engine.warm_up()
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"anyclip serve: warning: listening on {args.host} without --api-key: anyone who can reach it may "
              "use it", file=sys.stderr)
    uvicorn.run(create_app(engine, settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


__all__ = ["register", "run_serve", "build_engine"]
