"""Training: losses with open_clip semantics, the optimiser recipe, the train step and checkpoints.

Everything is written in ``keras.ops`` and runs on the JAX, torch and TensorFlow backends::

    from anyclip.train import TrainStep, WarmupSchedule, clip_loss, create_optimizer
    optimizer = create_optimizer(model, lr=5e-4, schedule=WarmupSchedule(5e-4, warmup=100, total_steps=10_000))
    step = TrainStep(model, optimizer, lambda out: clip_loss(**out), accum_freq=4)
    metrics = step(images, token_ids)                     # {"loss": ...}

A whole run, as ``anyclip train`` does it, from one checked :class:`TrainConfig` (the flags' names)::

    from anyclip.train import TrainConfig, train
    run_dir = train(TrainConfig.from_flags(train_data="train.csv", model="ViT-B-32", epochs=2, batch_size=128))
"""

from .checkpoint import (list_training_checkpoints, load_training_checkpoint, resolve_checkpoint,
                         save_training_checkpoint)
from .config import (DataConfig, DistributedConfig, EvalConfig, LossConfig, OptimConfig, OptionsConfig, RunConfig,
                     TrainConfig)
from .data import EvalSets, ImageTextSet, RunData, TrainBatch, TrainBatches, open_run_data, open_train_data
from .evaluate import TrainEvaluator
from .logs import RunLog, read_log
from .loop import TrainingStopped, train
from .losses import (LOGIT_SCALE_MAX, CoCaLoss, caption_loss, clamp_logit_scale, clip_loss, coca_loss,
                     distill_clip_loss, put_local_rows, siglip_loss)
from .optim import WarmupSchedule, create_optimizer, decays
from .plot import plot_run, plot_runs
from .step import TrainStep, value_and_grad
from .weights_avg import ModelEMA, wise_ft

__all__ = ["CoCaLoss", "DataConfig", "DistributedConfig", "EvalConfig", "EvalSets", "ImageTextSet", "LOGIT_SCALE_MAX",
           "LossConfig", "ModelEMA", "OptimConfig", "OptionsConfig", "RunConfig", "RunData", "RunLog", "TrainBatch",
           "TrainBatches", "TrainConfig", "TrainEvaluator", "TrainStep", "TrainingStopped", "WarmupSchedule",
           "caption_loss", "clamp_logit_scale", "clip_loss", "coca_loss", "create_optimizer", "decays",
           "distill_clip_loss", "list_training_checkpoints", "load_training_checkpoint", "open_run_data",
           "open_train_data", "plot_run", "plot_runs", "put_local_rows", "read_log", "resolve_checkpoint",
           "save_training_checkpoint", "siglip_loss", "train", "value_and_grad", "wise_ft"]
