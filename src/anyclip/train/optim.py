"""open_clip's optimiser recipe on Keras: AdamW without decay on gains/biases, warmup + cosine/const schedules."""

from __future__ import annotations

import math

import keras
from keras import ops

SCHEDULES = ("cosine", "const", "const-cooldown")


@keras.saving.register_keras_serializable(package="anyclip")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """open_clip_train's learning-rate schedules as a Keras schedule of the optimiser step (0-based).

    Linear warmup ``lr * (step + 1) / warmup``, then ``cosine`` (to 0 at ``total_steps``), ``const``, or
    ``const-cooldown`` (constant, then a ``(1 - e / cooldown_steps) ** cooldown_power`` decay to
    ``cooldown_end_lr`` over the last ``cooldown_steps``). Values equal open_clip_train's ``cosine_lr``,
    ``const_lr`` and ``const_lr_cooldown`` at every step.

    Example:
        >>> schedule = WarmupSchedule(5e-4, warmup=100, total_steps=1000)
        >>> round(float(schedule(0)), 12)  # warmup: 1/100 of the peak at step 0
        5e-06
    """

    def __init__(self, base_lr: float, warmup: int = 0, total_steps: int = 1, kind: str = "cosine",
                 cooldown_steps: int = 0, cooldown_power: float = 1.0, cooldown_end_lr: float = 0.0):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {kind!r}; choose from {', '.join(SCHEDULES)}")
        if base_lr < 0 or warmup < 0 or total_steps < 1:
            raise ValueError(f"need lr >= 0, warmup >= 0 and total_steps >= 1, got lr={base_lr}, warmup={warmup}, "
                             f"total_steps={total_steps}")
        if kind == "cosine" and warmup >= total_steps:
            raise ValueError(f"warmup ({warmup} steps) must be shorter than training ({total_steps} steps)")
        if kind == "const-cooldown" and not 0 < cooldown_steps <= total_steps:
            raise ValueError(f"cooldown_steps must be in (0, total_steps={total_steps}], got {cooldown_steps}")
        self.base_lr, self.warmup, self.total_steps, self.kind = float(base_lr), int(warmup), int(total_steps), kind
        self.cooldown_steps, self.cooldown_power = int(cooldown_steps), float(cooldown_power)
        self.cooldown_end_lr = float(cooldown_end_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = self.base_lr
        if self.kind == "cosine":
            progress = (step - self.warmup) / max(1, self.total_steps - self.warmup)
            lr = 0.5 * (1.0 + ops.cos(math.pi * progress)) * self.base_lr
        elif self.kind == "const-cooldown":
            start = self.total_steps - self.cooldown_steps
            progress = ops.clip((step - start) / self.cooldown_steps, 0.0, 1.0)
            decayed = (1.0 - progress) ** self.cooldown_power * (self.base_lr - self.cooldown_end_lr)
            lr = ops.where(step < start, self.base_lr, decayed + self.cooldown_end_lr)
        if self.warmup > 0:
            lr = ops.where(step < self.warmup, self.base_lr * (step + 1.0) / self.warmup, lr)
        return ops.cast(ops.convert_to_tensor(lr), "float32")

    def get_config(self):
        return {"base_lr": self.base_lr, "warmup": self.warmup, "total_steps": self.total_steps, "kind": self.kind,
                "cooldown_steps": self.cooldown_steps, "cooldown_power": self.cooldown_power,
                "cooldown_end_lr": self.cooldown_end_lr}


def decays(variable) -> bool:
    """open_clip's rule: weight decay applies to matrices and kernels, not to gains, biases, scalars.

    That excludes every LayerNorm gain and bias, every Dense bias, layer-scale gammas, the class
    embedding and ``logit_scale``/``logit_bias`` (all of rank < 2).

    Example:
        >>> [v.path for v in model.trainable_variables if not decays(v)]  # doctest: +SKIP
    """
    return len(variable.shape) >= 2


def create_optimizer(model, lr: float = 5e-4, wd: float = 0.2, beta1: float = 0.9, beta2: float = 0.98,
                     eps: float = 1e-6, schedule: keras.optimizers.schedules.LearningRateSchedule | float | None = None,
                     grad_clip_norm: float | None = None, ema: bool = False,
                     ema_momentum: float = 0.9999, loss_scale: bool = False) -> keras.optimizers.Optimizer:
    """AdamW as open_clip_train builds it (defaults are its ViT defaults), for ``model``'s trainable variables.

    ``schedule`` (e.g. :class:`WarmupSchedule`) replaces the constant ``lr``; ``grad_clip_norm`` clips the
    global gradient norm; ``ema`` keeps an exponential moving average of the weights (Keras's
    ``use_ema``; :class:`~anyclip.train.weights_avg.ModelEMA` is timm's EMA, saved in checkpoints).
    ``loss_scale`` wraps the optimiser in a ``keras.optimizers.LossScaleOptimizer`` with torch
    ``GradScaler``'s defaults (scale 2**16, doubled after 2000 finite steps, halved and the step skipped
    on non-finite gradients; clipping sees the unscaled gradients) for float16 training.
    Keras's Adam adds ``eps`` to ``sqrt(v)`` before the bias correction where torch adds it
    after: the two differ by a factor ``sqrt(1 - beta2 ** t)`` on ``eps`` only.

    Example:
        >>> optimizer = create_optimizer(model, lr=1e-4, schedule=WarmupSchedule(1e-4, 100, 10_000))  # doctest: +SKIP
    """
    for name, value in (("lr", lr), ("wd", wd), ("eps", eps)):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule if schedule is not None else lr, weight_decay=wd, beta_1=beta1, beta_2=beta2,
        epsilon=eps, global_clipnorm=grad_clip_norm, use_ema=ema, ema_momentum=ema_momentum)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if not decays(v)])
    if loss_scale:
        return keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0 ** 16, dynamic_growth_steps=2000)
    return optimizer
