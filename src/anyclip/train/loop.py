"""``anyclip train``: the training loop (flags follow open_clip_train's names), on one device or, through
:mod:`anyclip.train.distributed`, on a JAX device mesh or under ``torchrun`` (``--batch-size`` per device).

Writes ``<logs>/<name>/`` with ``params.json``, ``train.jsonl`` (one JSON object per logged step, see
:mod:`anyclip.train.logs`; ``--report-to tensorboard`` adds ``tensorboard/``) and ``checkpoints/step_*/``
(see :mod:`anyclip.train.checkpoint`); ``--resume latest`` continues the newest checkpoint from the exact
sample where it stopped. The final weights are also exported to
``<logs>/<name>/final/`` in open_clip's folder layout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .distributed import add_distributed_arguments
from .evaluate import add_eval_arguments
from .options import PRECISIONS, add_option_arguments, check_option_arguments

log = logging.getLogger("anyclip.train")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``anyclip train``'s flags (open_clip_train's names where they overlap).

    Example:
        >>> parser = argparse.ArgumentParser(); add_train_arguments(parser)
    """
    p.add_argument("--train-data", required=True, help="CSV file, WebDataset shards (brace patterns, '::') or TFRecord files")
    p.add_argument("--dataset-type", default="auto", choices=["auto", "csv", "webdataset", "tfrecord"])
    p.add_argument("--csv-img-key", "--image-key", default=None,
                   help="CSV column of image paths (default filepath); TFRecord feature of image bytes (default jpg)")
    p.add_argument("--csv-caption-key", "--text-key", default=None,
                   help="CSV column of captions (default title); TFRecord feature of captions (default caption)")
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
    p.add_argument("--coca", action="store_true",
                   help="CoCa loss: contrastive + captioning (needs a CoCa model; CoCa models always use it)")
    p.add_argument("--coca-caption-loss-weight", type=float, default=2.0, help="weight of CoCa's caption loss")
    p.add_argument("--coca-contrastive-loss-weight", type=float, default=1.0,
                   help="weight of CoCa's contrastive loss (0 trains captioning only)")
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
    p.add_argument("--report-to", default="jsonl",
                   help="jsonl, tensorboard or both, comma-separated (train.jsonl is always written)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="amp/amp_fp16/fp16 add loss scaling")
    add_option_arguments(p)
    p.add_argument("--aug-cfg", nargs="*", default=[], metavar="KEY=VALUE",
                   help="train augmentation, open_clip's names: scale='(0.5,1.0)' ratio=... "
                        "color_jitter='(0.4,0.4,0.4,0.1)' color_jitter_prob=0.8 gray_scale_prob=0.2")
    add_eval_arguments(p)
    add_distributed_arguments(p)


def parse_aug_cfg(items) -> dict:
    """``--aug-cfg`` ``KEY=VALUE`` items (values are Python literals, as open_clip reads them) to a dict.

    Example:
        >>> parse_aug_cfg(["scale=(0.5, 1.0)", "gray_scale_prob=0.2"])
        {'scale': (0.5, 1.0), 'gray_scale_prob': 0.2}
    """
    import ast
    import dataclasses

    from ..transforms import AugmentConfig
    known = [f.name for f in dataclasses.fields(AugmentConfig)]
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--aug-cfg {item!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(f"--aug-cfg {item!r}: {value!r} is not a Python literal") from None
    AugmentConfig(**out)  # validates the values, naming the bad one
    return out


def _check(args) -> None:
    for name in ("batch_size", "accum_freq", "epochs", "save_frequency", "log_every_n_steps", "keep"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workers < 0 or args.warmup < 0:
        raise ValueError("--workers and --warmup must be >= 0")
    check_option_arguments(args)
    parse_aug_cfg(getattr(args, "aug_cfg", []))
    partial = args.lock_image_unlocked_groups or args.lock_text_unlocked_layers
    if args.lock_image and args.lock_text and not partial:
        raise ValueError("--lock-image and --lock-text together leave nothing to train")
    from .logs import parse_report_to
    parse_report_to(getattr(args, "report_to", "jsonl"))  # an unknown name or a missing tensorboardX fails fast


def _check_coca(args, coca: bool) -> None:
    """``--coca`` needs a CoCa model; CoCa's loss does not combine with the other loss options."""
    if args.coca and not coca:
        raise ValueError(f"--coca needs a CoCa model (a config with multimodal_cfg, e.g. coca_ViT-B-32); "
                         f"{args.model} is not one")
    if not coca:
        return
    for flag, used in (("--siglip", args.siglip), ("--distill-model", args.distill_model is not None)):
        if used:
            raise ValueError(f"{flag} does not work with a CoCa model ({args.model}), which trains with CoCa's loss")


def run_train_command(args) -> int:
    """Run ``anyclip train`` from parsed arguments; returns the exit status.

    Example:
        >>> run_train_command(parser.parse_args(["--train-data", "train.csv", "--model", "tiny.json"]))  # doctest: +SKIP
    """
    _check(args)
    from .distributed import DistributedError, setup_distributed
    ctx = setup_distributed(args)  # before the model: a JAX mesh lays the variables out as they are made
    try:
        return _train(args, ctx)
    except DistributedError as e:
        print(f"anyclip train: {e}", file=sys.stderr)
        return 4
    finally:
        ctx.close()


class _NoLog:
    """The run log of a process other than the first: nothing is written."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def log(self, *args, **kwargs):
        pass


def _train(args, ctx) -> int:
    import keras
    import numpy as np

    import anyclip

    from ..atomic import atomic_write_text
    from ..weights.export import pretrained_entry, save_open_clip_checkpoint
    from .checkpoint import load_training_checkpoint, resolve_checkpoint, save_training_checkpoint
    from .data import TrainBatches, open_train_data
    from .evaluate import TrainEvaluator
    from .logs import RunLog
    from .losses import clip_loss, coca_loss, distill_clip_loss, siglip_loss
    from .options import LOSS_SCALED, export_variants, prepare_model
    from .optim import WarmupSchedule, create_optimizer
    from .step import TrainStep

    name = args.name or f"{Path(args.model).stem}-{time.strftime('%Y_%m_%d-%H_%M_%S')}"
    run_dir = Path(args.logs) / name
    ckpt_dir = run_dir / "checkpoints"
    data = open_train_data(args.train_data, args.dataset_type, img_key=args.csv_img_key,
                           caption_key=args.csv_caption_key, separator=args.csv_separator)
    model, preprocess_train, preprocess_val = anyclip.create_model_and_transforms(args.model, args.pretrained,
                                                                     precision=args.precision, seed=args.seed)
    tokenizer = anyclip.get_tokenizer(args.model)
    if args.siglip and model.logit_bias is None:
        raise ValueError(f"--siglip needs a model with a logit_bias (init_logit_bias in its config); "
                         f"{args.model} has none")
    coca = hasattr(model, "text_decoder")  # a CoCa model trains with CoCa's loss, as in open_clip_train
    _check_coca(args, coca)
    extras = prepare_model(args, model)  # locks, grad checkpointing, teacher, EMA, zero-shot weights
    evaluator = TrainEvaluator(args, tokenizer, preprocess_val, data_config_from=args.train_data)
    if args.aug_cfg:
        from ..transforms import train_transform
        preprocess_train = train_transform(model.preprocess_cfg, parse_aug_cfg(args.aug_cfg))
    # --batch-size is per device (open_clip's per-GPU batch); every process reads the same global batches
    batches = TrainBatches(data, preprocess_train, tokenizer, args.batch_size * ctx.devices * args.accum_freq,
                           seed=args.seed, workers=args.workers)
    steps_per_epoch = len(batches)
    total = steps_per_epoch * args.epochs
    cooldown = steps_per_epoch * (args.epochs_cooldown or 0)
    schedule = WarmupSchedule(args.lr, args.warmup, total, args.lr_scheduler, cooldown_steps=cooldown)
    # The learning rate follows the loop's step, set before each step as open_clip_train's scheduler does: a
    # float16 step that the loss scaler skips still moves the schedule on (the optimiser's count does not).
    optimizer = create_optimizer(model, args.lr, args.wd, args.beta1, args.beta2, args.eps, None,
                                 args.grad_clip_norm, loss_scale=args.precision in LOSS_SCALED)
    loss_fn = (lambda o: siglip_loss(**o)) if args.siglip else (lambda o: clip_loss(**o))
    kind = "siglip" if args.siglip else "clip"
    if extras.teacher is not None:
        loss_fn, kind = (lambda o: distill_clip_loss(**o, output_dict=True)), "distill"
    if coca:  # texts reach the model, which returns teacher-forced caption logits and labels
        loss_fn, kind = (lambda o: coca_loss(**o, caption_loss_weight=args.coca_caption_loss_weight,
                                             clip_loss_weight=args.coca_contrastive_loss_weight,
                                             output_dict=True)), "coca"
    step_fn = TrainStep(model, optimizer, ctx.wrap_loss(loss_fn, kind), accum_freq=args.accum_freq,
                        teacher=extras.teacher, ema=extras.ema, distributed=ctx)

    state = {"epoch": 0, "position": 0, "step": 0}
    if args.resume:
        path = resolve_checkpoint(ckpt_dir, args.resume)
        state = load_training_checkpoint(path, model, optimizer, ema=extras.ema)
        log.warning("resumed from %s (epoch %d, sample %d of the epoch)", path, state["epoch"], state["position"])
    params = {k: v for k, v in vars(args).items() if not callable(v)}
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "params.json").write_text(json.dumps(params, indent=2, default=str) + "\n")

    def save(epoch, position, step):  # whole arrays, written once: a run resumes on any device count
        if ctx.is_main:
            save_training_checkpoint(ckpt_dir, model, optimizer, step,
                                     {"epoch": epoch, "position": position, "devices": ctx.devices,
                                      "args": params}, keep=args.keep, ema=extras.ema)

    from tqdm.auto import tqdm
    step = state["step"]
    run_log_cm = RunLog(run_dir, getattr(args, "report_to", "jsonl")) if ctx.is_main else _NoLog()
    with run_log_cm as run_log, tqdm(total=total, initial=step, desc="train", unit="step",
                                     disable=not (sys.stderr.isatty() and ctx.is_main)) as bar:
        for epoch in range(state["epoch"], args.epochs):
            start = state["position"] if epoch == state["epoch"] else 0
            tick = time.perf_counter()
            pending = None
            for batch in batches.epoch(epoch, start=start):
                if pending:
                    save(*pending)
                    pending = None
                optimizer.learning_rate = float(keras.ops.convert_to_numpy(schedule(step)))
                try:
                    metrics = step_fn(*ctx.shard(batch.images, batch.texts))
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
                    run_log.log({"step": step, "epoch": epoch, **metrics, "lr": lr, "logit_scale": scale,
                                 "samples_per_second": rate, "skipped": batches.skipped_total})
                if args.save_every_n_steps and step % args.save_every_n_steps == 0:
                    pending = (epoch, batch.position, step)  # saved once the epoch is known to go on
            last = epoch + 1 == args.epochs
            if (epoch + 1) % args.save_frequency == 0 or last or pending:
                save(epoch + 1, 0, step)  # an epoch's last step is saved once, as the epoch's end
            pending = None
            if ctx.is_main and evaluator.due(epoch + 1, last):
                results = evaluator(model, epoch + 1, last)
                run_log.log({"step": step, "epoch": epoch + 1, **results}, kind="eval")
                bar.write(f"eval after epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    ctx.barrier()
    if not ctx.is_main:
        return 0
    save_open_clip_checkpoint(model, run_dir / "final")
    export_variants(args, run_dir, model, extras)  # final_ema/, final_wise_ft_<alpha>/
    entry = pretrained_entry(run_dir / "final")
    atomic_write_text(run_dir / "final" / "pretrained_entry.json", json.dumps(entry, indent=1) + "\n")
    print(f"trained {step} steps; checkpoints in {ckpt_dir}, final model in {run_dir / 'final'}")
    return 0


__all__ = ["add_train_arguments", "run_train_command"]
