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

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".checkpoint": ("list_training_checkpoints", "load_training_checkpoint", "remove_stale_temporaries",
                    "resolve_checkpoint", "save_training_checkpoint", "verify_checkpoint"),
    ".config": ("DataConfig", "DistributedConfig", "EvalConfig", "LossConfig", "OptimConfig", "OptionsConfig",
                "RunConfig", "TrainConfig"),
    ".data": ("EvalSets", "ImageTextSet", "RunData", "TrainBatch", "TrainBatches", "open_run_data", "open_train_data"),
    ".evaluate": ("TrainEvaluator",),
    ".logs": ("RunLog", "read_log", "truncate_logs"),
    ".loop": ("TrainingStopped", "train"),
    ".losses": ("LOGIT_SCALE_MAX", "CoCaLoss", "caption_loss", "clamp_logit_scale", "clip_loss", "coca_loss",
                "distill_clip_loss", "put_local_rows", "siglip_loss"),
    ".optim": ("WarmupSchedule", "create_optimizer", "decays"),
    ".plot": ("plot_run", "plot_runs"),
    ".step": ("TrainStep", "value_and_grad"),
    ".weights_avg": ("ModelEMA", "wise_ft"),
})
