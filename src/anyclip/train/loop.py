"""``anyclip train``: the training loop on one device (flags follow open_clip_train's names).

Writes ``<logs>/<name>/`` with ``params.json``, ``train.jsonl`` (one JSON object per logged step) and
``checkpoints/step_*/`` (see :mod:`anyclip.train.checkpoint`); ``--resume latest`` continues the newest
checkpoint from the exact sample where it stopped. The final weights are also exported to
``<logs>/<name>/final/`` in open_clip's folder layout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("anyclip.train")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``anyclip train``'s flags (open_clip_train's names where they overlap).

    Example:
        >>> parser = argparse.ArgumentParser(); add_train_arguments(parser)
    """
    p.add_argument("--train-data", required=True, help="CSV file or WebDataset shards (brace patterns, '::')")
    p.add_argument("--dataset-type", default="auto", choices=["auto", "csv", "webdataset"])
    p.add_argument("--csv-img-key", default=None, help="CSV column of image paths (default filepath)")
    p.add_argument("--csv-caption-key", default=None, help="CSV column of captions (default title)")
    p.add_argument("--csv-separator", default="\t", help="CSV separator (default tab, as open_clip)")
    p.add_argument("--model", default="ViT-B-32", help="architecture name, JSON config file, hf-hub: or local-dir:")
    p.add_argument("--pretrained", default=None, help="tag or checkpoint to fine-tune from")
    p.add_argument("--batch-size", type=int, default=64, help="samples per micro-batch")
    p.add_argument("--accum-freq", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--wd", type=float, default=0.2)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.98)
    p.add_argument("--eps", type=float, default=1e-6)
    p.add_argument("--warmup", type=int, default=0, help="warmup steps")
    p.add_argument("--lr-scheduler", default="cosine", choices=["cosine", "const", "const-cooldown"])
    p.add_argument("--epochs-cooldown", type=int, default=None, help="const-cooldown: epochs of cooldown")
    p.add_argument("--grad-clip-norm", type=float, default=None)
    p.add_argument("--siglip", action="store_true", help="sigmoid loss (needs a model with logit_bias)")
    p.add_argument("--lock-image", action="store_true", help="freeze the image tower")
    p.add_argument("--lock-text", action="store_true", help="freeze the text tower")
    p.add_argument("--workers", type=int, default=4, help="image decoding threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logs", default="./logs", help="where run folders go")
    p.add_argument("--name", default=None, help="run folder name (default: model and time)")
    p.add_argument("--save-frequency", type=int, default=1, help="save a checkpoint every N epochs")
    p.add_argument("--save-every-n-steps", type=int, default=None, help="also save every N optimiser steps")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (newest)")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    p.add_argument("--log-every-n-steps", type=int, default=10)
    p.add_argument("--precision", default="fp32", choices=["fp32", "amp_bf16"])


def _check(args) -> None:
    for name in ("batch_size", "accum_freq", "epochs", "save_frequency", "log_every_n_steps", "keep"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workers < 0 or args.warmup < 0:
        raise ValueError("--workers and --warmup must be >= 0")
    if args.lock_image and args.lock_text:
        raise ValueError("--lock-image and --lock-text together leave nothing to train")


def run_train_command(args) -> int:
    """Run ``anyclip train`` from parsed arguments; returns the exit status.

    Example:
        >>> run_train_command(parser.parse_args(["--train-data", "train.csv", "--model", "tiny.json"]))  # doctest: +SKIP
    """
    _check(args)
    import keras
    import numpy as np

    import anyclip

    from ..weights.export import save_open_clip_checkpoint
    from .checkpoint import load_training_checkpoint, resolve_checkpoint, save_training_checkpoint
    from .data import TrainBatches, open_train_data
    from .losses import clip_loss, siglip_loss
    from .optim import WarmupSchedule, create_optimizer
    from .step import TrainStep

    name = args.name or f"{Path(args.model).stem}-{time.strftime('%Y_%m_%d-%H_%M_%S')}"
    run_dir = Path(args.logs) / name
    ckpt_dir = run_dir / "checkpoints"
    data = open_train_data(args.train_data, args.dataset_type, img_key=args.csv_img_key,
                           caption_key=args.csv_caption_key, separator=args.csv_separator)
    model, preprocess_train, _ = anyclip.create_model_and_transforms(args.model, args.pretrained,
                                                                     precision=args.precision, seed=args.seed)
    tokenizer = anyclip.get_tokenizer(args.model)
    if args.siglip and model.logit_bias is None:
        raise ValueError(f"--siglip needs a model with a logit_bias (init_logit_bias in its config); "
                         f"{args.model} has none")
    model.visual.trainable = not args.lock_image
    model.text.trainable = not args.lock_text
    batches = TrainBatches(data, preprocess_train, tokenizer, args.batch_size * args.accum_freq, seed=args.seed,
                           workers=args.workers)
    steps_per_epoch = len(batches)
    total = steps_per_epoch * args.epochs
    cooldown = steps_per_epoch * (args.epochs_cooldown or 0)
    schedule = WarmupSchedule(args.lr, args.warmup, total, args.lr_scheduler, cooldown_steps=cooldown)
    optimizer = create_optimizer(model, args.lr, args.wd, args.beta1, args.beta2, args.eps, schedule,
                                 args.grad_clip_norm)
    loss_fn = (lambda o: siglip_loss(**o)) if args.siglip else (lambda o: clip_loss(**o))
    step_fn = TrainStep(model, optimizer, loss_fn, accum_freq=args.accum_freq)

    state = {"epoch": 0, "position": 0, "step": 0}
    if args.resume:
        path = resolve_checkpoint(ckpt_dir, args.resume)
        state = load_training_checkpoint(path, model, optimizer)
        log.warning("resumed from %s (epoch %d, sample %d of the epoch)", path, state["epoch"], state["position"])
    params = {k: v for k, v in vars(args).items() if not callable(v)}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "params.json").write_text(json.dumps(params, indent=2, default=str) + "\n")

    def save(epoch, position, step):
        save_training_checkpoint(ckpt_dir, model, optimizer, step,
                                 {"epoch": epoch, "position": position, "args": params}, keep=args.keep)

    from tqdm.auto import tqdm
    step = state["step"]
    with open(run_dir / "train.jsonl", "a", encoding="utf-8") as jsonl, \
            tqdm(total=total, initial=step, desc="train", unit="step", disable=not sys.stderr.isatty()) as bar:
        for epoch in range(state["epoch"], args.epochs):
            start = state["position"] if epoch == state["epoch"] else 0
            tick = time.perf_counter()
            for batch in batches.epoch(epoch, start=start):
                try:
                    metrics = step_fn(batch.images, batch.texts)
                except FloatingPointError as e:
                    print(f"anyclip train: stopped at step {step}: {e}; the last checkpoint in {ckpt_dir} "
                          "is intact", file=sys.stderr)
                    return 3
                step += 1
                now = time.perf_counter()
                rate = len(batch.indices) / max(now - tick, 1e-9)
                tick = now
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", samples_s=f"{rate:.1f}")
                if step % args.log_every_n_steps == 0 or step == total:
                    lr = float(keras.ops.convert_to_numpy(schedule(step - 1)))
                    scale = float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)))
                    jsonl.write(json.dumps({"step": step, "epoch": epoch, **metrics, "lr": lr, "logit_scale": scale,
                                            "samples_per_second": rate, "skipped": batches.skipped_total}) + "\n")
                    jsonl.flush()
                if args.save_every_n_steps and step % args.save_every_n_steps == 0:
                    save(epoch, batch.position, step)
            if (epoch + 1) % args.save_frequency == 0 or epoch + 1 == args.epochs:
                save(epoch + 1, 0, step)
    save_open_clip_checkpoint(model, run_dir / "final")
    print(f"trained {step} steps; checkpoints in {ckpt_dir}, final model in {run_dir / 'final'}")
    return 0


__all__ = ["add_train_arguments", "run_train_command"]
