"""``anyclip train``: the training loop (flags follow open_clip_train's names), on one device or, through
:mod:`anyclip.train.distributed`, on a JAX device mesh or under ``torchrun`` (``--batch-size`` per device).

The command line is read once, at the edge: :func:`run_train_command` turns the parsed flags into a
:class:`~anyclip.train.config.TrainConfig` and :func:`train` runs it (Python calls :func:`train` directly).
Writes ``<logs>/<name>/`` with ``params.json``, ``train.jsonl`` (one JSON object per logged step, see
:mod:`anyclip.train.logs`; ``--report-to tensorboard`` adds ``tensorboard/``) and ``checkpoints/step_*/``
(see :mod:`anyclip.train.checkpoint`); ``--resume latest`` continues the newest checkpoint that verifies from
the exact sample where it stopped (damaged newer ones are skipped with a line saying why; none yet: a fresh
start) and cuts the logs back to that step. The final weights are also exported to
``<logs>/<name>/final/`` in open_clip's folder layout. The run folder is locked for the whole run (by the
process that writes it): a second ``anyclip train`` into it stops, naming the first. When stderr is not a
terminal, a progress line comes every ``--log-every-seconds`` instead of a progress bar.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

from .config import TrainConfig, add_train_arguments

log = logging.getLogger("anyclip.train")


class TrainingStopped(RuntimeError):
    """Training stopped before its end (a non-finite loss); the last checkpoint is intact.

    Example:
        >>> isinstance(TrainingStopped("stopped at step 12: the loss is not finite"), RuntimeError)
        True
    """


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``anyclip train`` from parsed arguments; returns the exit status.

    Example:
        >>> run_train_command(parser.parse_args(["--train-data", "train.csv", "--model", "tiny.json"]))  # doctest: +SKIP
    """
    from .distributed import DistributedError
    config = TrainConfig.from_args(args)
    try:
        train(config)
    except (TrainingStopped, DistributedError) as e:
        print(f"anyclip train: {e}", file=sys.stderr)
        return 3 if isinstance(e, TrainingStopped) else 4
    return 0


def train(config: TrainConfig) -> Path:
    """Train as ``anyclip train`` does; returns the run folder (the model is in its ``final/``).

    Raises :class:`TrainingStopped` when the loss stops being finite and
    :class:`~anyclip.train.distributed.DistributedError` when a worker is lost.

    Example:
        >>> from anyclip.train import TrainConfig, train
        >>> config = TrainConfig.from_flags(train_data="data/shapes/train/train.csv", model="anyclip-shapes",
        ...                                 batch_size=128, epochs=6, lr=1e-3, zeroshot_shapes=500, name="shapes")
        >>> run_dir = train(config)  # doctest: +SKIP
        >>> model = anyclip.create_model("anyclip-shapes", str(run_dir / "final"))  # doctest: +SKIP
    """
    from .distributed import setup_distributed
    # before the model: a JAX mesh lays the variables out as they are made
    ctx = setup_distributed(config.distributed, model=config.model, precision=config.precision)
    try:
        return _train(config, ctx)
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


def _main_only(ctx):
    """Print a line to stderr on the process that writes the run folder; elsewhere nothing."""
    return (lambda line: print(line, file=sys.stderr, flush=True)) if ctx.is_main else (lambda line: None)


def _loss_fn(kind: str, loss):
    """The loss of ``kind`` (:meth:`TrainConfig.loss_kind`) as ``fn(outputs)``; ``loss``: the ``loss`` section."""
    from .losses import clip_loss, coca_loss, distill_clip_loss, siglip_loss
    if kind == "coca":  # texts reach the model, which returns teacher-forced caption logits and labels
        return lambda o: coca_loss(**o, caption_loss_weight=loss.coca_caption_loss_weight,
                                   clip_loss_weight=loss.coca_contrastive_loss_weight, output_dict=True)
    if kind == "distill":
        return lambda o: distill_clip_loss(**o, output_dict=True)
    return (lambda o: siglip_loss(**o)) if kind == "siglip" else (lambda o: clip_loss(**o))


def _train(config: TrainConfig, ctx) -> Path:
    import keras
    import numpy as np

    import anyclip

    from ..atomic import atomic_write_text
    from ..matmul_precision import matmul_scope
    from ..output_lock import locked_output
    from ..weights.export import pretrained_entry, save_open_clip_checkpoint
    from .checkpoint import (
        load_training_checkpoint,
        remove_stale_temporaries,
        resolve_checkpoint,
        save_training_checkpoint,
    )
    from .data import TrainBatches, open_run_data
    from .evaluate import TrainEvaluator
    from .logs import RunLog, truncate_logs
    from .optim import WarmupSchedule, create_optimizer
    from .options import LOSS_SCALED, export_variants, prepare_model
    from .progress import ProgressLines
    from .step import TrainStep

    with contextlib.ExitStack() as hold:
        run, opt = config.run, config.optim
        name = run.name or f"{Path(config.model).stem}-{time.strftime('%Y_%m_%d-%H_%M_%S')}"
        run_dir = Path(run.logs) / name
        ckpt_dir = run_dir / "checkpoints"
        # one writer per run folder for the whole run, taken before any work: a second `anyclip train --name` on it
        # stops at once, naming this one
        if ctx.is_main:
            hold.enter_context(locked_output(run_dir, f"anyclip train --name {name}"))
            for stale in remove_stale_temporaries(ckpt_dir):
                print(f"removed {stale}, a checkpoint left half-written by an earlier run", file=sys.stderr)
        data = open_run_data(config.data, config.eval)  # the training pairs and every eval set, read once
        model, preprocess_train, preprocess_val = anyclip.create_model_and_transforms(
            config.model, config.pretrained, precision=config.precision, seed=config.seed,
            resize_pos_embed=config.resize_pos_embed)
        hold.enter_context(matmul_scope(config.precision))  # fp32 steps run exact float32 products on GPUs too
        tokenizer = anyclip.get_tokenizer(config.model)
        kind = config.loss_kind(model)
        extras = prepare_model(config.options, model, config.precision)  # locks, grad checkpointing, teacher, EMA, ...
        evaluator = TrainEvaluator(config.eval, data.evals, tokenizer, preprocess_val, workers=config.data.workers)
        if config.data.aug_cfg:
            from ..transforms import train_transform
            preprocess_train = train_transform(model.preprocess_cfg, config.data.augment)
        # --batch-size is per device (open_clip's per-GPU batch); every process reads the same global batches
        batches = TrainBatches(data.train, preprocess_train, tokenizer,
                               opt.device_batch_size(ctx.devices) * ctx.devices * opt.accum_freq,
                               seed=config.seed, workers=config.data.workers)
        steps_per_epoch = len(batches)
        total = steps_per_epoch * opt.epochs
        cooldown = steps_per_epoch * (opt.epochs_cooldown or 0)
        schedule = WarmupSchedule(opt.lr, opt.warmup, total, opt.lr_scheduler, cooldown_steps=cooldown)
        # The learning rate follows the loop's step, set before each step as open_clip_train's scheduler does: a
        # float16 step that the loss scaler skips still moves the schedule on (the optimiser's count does not).
        optimizer = create_optimizer(model, opt.lr, opt.wd, opt.beta1, opt.beta2, opt.eps, None, opt.grad_clip_norm,
                                     loss_scale=config.precision in LOSS_SCALED)
        step_fn = TrainStep(model, optimizer, ctx.wrap_loss(_loss_fn(kind, config.loss), kind),
                            accum_freq=opt.accum_freq, teacher=extras.teacher, ema=extras.ema, distributed=ctx)

        state = {"epoch": 0, "position": 0, "step": 0}
        if run.resume:
            path = resolve_checkpoint(ckpt_dir, run.resume, notify=_main_only(ctx))
            if path is None:
                _main_only(ctx)(f"--resume {run.resume}: no checkpoint in {ckpt_dir} yet; starting from step 0")
            else:
                state = load_training_checkpoint(path, model, optimizer, ema=extras.ema)
                log.warning("resumed from %s (epoch %d, sample %d of the epoch)", path, state["epoch"],
                            state["position"])
            if ctx.is_main:  # the steps after the checkpoint run again: their old records go
                truncate_logs(run_dir, state["step"])
        params = {"command": "train", **config.flags()}  # the keys of `anyclip train`'s parsed flags
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "params.json").write_text(json.dumps(params, indent=2, default=str) + "\n")

        def save(epoch, position, step):  # whole arrays, written once: a run resumes on any device count
            if ctx.is_main:
                save_training_checkpoint(ckpt_dir, model, optimizer, step,
                                         {"epoch": epoch, "position": position, "devices": ctx.devices,
                                          "args": params}, keep=run.keep, ema=extras.ema)

        from tqdm.auto import tqdm
        step = state["step"]
        run_log_cm = RunLog(run_dir, run.report_to) if ctx.is_main else _NoLog()
        on_tty = sys.stderr.isatty()
        progress = ProgressLines(total, opt.epochs, run.log_every_seconds if ctx.is_main and not on_tty else 0,
                                 start_step=step)
        with run_log_cm as run_log, tqdm(total=total, initial=step, desc="train", unit="step",
                                         disable=not (on_tty and ctx.is_main)) as bar:
            for epoch in range(state["epoch"], opt.epochs):
                start = state["position"] if epoch == state["epoch"] else 0
                tick = time.perf_counter()
                pending = None
                for batch in batches.epoch(epoch, start=start):
                    if pending:
                        save(*pending)
                        pending = None
                    lr_now = float(keras.ops.convert_to_numpy(schedule(step)))
                    optimizer.learning_rate = lr_now
                    try:
                        metrics = step_fn(*ctx.shard(batch.images, batch.texts))
                    except FloatingPointError as e:
                        raise TrainingStopped(f"stopped at step {step}: {e}; the last checkpoint in {ckpt_dir} "
                                              "is intact") from e
                    step += 1
                    now = time.perf_counter()
                    rate = len(batch.indices) / max(now - tick, 1e-9)
                    tick = now
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", samples_s=f"{rate:.1f}")
                    progress.update(step, epoch, float(metrics["loss"]), lr_now, len(batch.indices))
                    if step % run.log_every_n_steps == 0 or step == total:
                        lr = float(keras.ops.convert_to_numpy(schedule(step - 1)))
                        scale = float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)))
                        run_log.log({"step": step, "epoch": epoch, **metrics, "lr": lr, "logit_scale": scale,
                                     "samples_per_second": rate, "skipped": batches.skipped_total})
                    if run.save_every_n_steps and step % run.save_every_n_steps == 0:
                        pending = (epoch, batch.position, step)  # saved once the epoch is known to go on
                last = epoch + 1 == opt.epochs
                if (epoch + 1) % run.save_frequency == 0 or last or pending:
                    save(epoch + 1, 0, step)  # an epoch's last step is saved once, as the epoch's end
                pending = None
                if ctx.is_main and evaluator.due(epoch + 1, last):
                    results = evaluator(model, epoch + 1, last)
                    run_log.log({"step": step, "epoch": epoch + 1, **results}, kind="eval")
                    bar.write(f"eval after epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
        ctx.barrier()
        if not ctx.is_main:
            return run_dir
        save_open_clip_checkpoint(model, run_dir / "final")
        export_variants(run_dir, model, extras)  # final_ema/, final_wise_ft_<alpha>/
        entry = pretrained_entry(run_dir / "final")
        atomic_write_text(run_dir / "final" / "pretrained_entry.json", json.dumps(entry, indent=1) + "\n")
        print(f"trained {step} steps; checkpoints in {ckpt_dir}, final model in {run_dir / 'final'}")
        return run_dir


__all__ = ["TrainingStopped", "add_train_arguments", "run_train_command", "train"]
