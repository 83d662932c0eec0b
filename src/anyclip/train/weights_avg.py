"""Weight averages for training: an EMA of the weights (timm's ``ModelEmaV3``) and WiSE-FT interpolation.

* :class:`ModelEMA` keeps a float32 exponential moving average of a model's trainable weights beside
  the model; ``anyclip train --ema`` updates it after every optimiser step, saves it in each training
  checkpoint and exports it as ``final_ema/``.
* :func:`wise_ft` interpolates every weight of a zero-shot and a fine-tuned model (Wortsman et al.,
  "Robust fine-tuning of zero-shot models"): ``(1 - alpha) * zero_shot + alpha * finetuned``.
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import keras
import numpy as np
from keras import ops


class ModelEMA:
    """Exponential moving average of ``model``'s trainable weights, with timm ``ModelEmaV3`` semantics.

    After optimiser update number ``step`` (1-based), ``ema <- lerp(ema, weight, 1 - decay(step))``
    (torch's ``lerp`` formula), where ``decay(step)`` is 0 up to ``update_after_step + 1`` (the EMA
    copies the weights), then ``decay`` -- or, with ``warmup``, ``1 - (1 + s / warmup_gamma) **
    -warmup_power`` for ``s = step - update_after_step - 1``, clipped to ``[min_decay, decay]``. The
    averages start as a copy of the weights and are float32 whatever the model's dtype; the weights
    tracked are the model's trainable variables when the EMA is created (lock towers first).

    Example:
        >>> ema = ModelEMA(model, decay=0.999)  # doctest: +SKIP
        >>> step = TrainStep(model, optimizer, loss_fn, ema=ema)  # doctest: +SKIP
        >>> with ema.applied():  # the model holds the averaged weights inside the block  # doctest: +SKIP
        ...     save_open_clip_checkpoint(model, "final_ema")
    """

    def __init__(self, model, decay: float = 0.9999, warmup: bool = False, warmup_gamma: float = 1.0,
                 warmup_power: float = 2 / 3, min_decay: float = 0.0, update_after_step: int = 0):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        if not 0.0 <= min_decay <= decay:
            raise ValueError(f"EMA min_decay must be in [0, decay={decay}], got {min_decay}")
        if warmup_gamma <= 0 or warmup_power <= 0 or update_after_step < 0:
            raise ValueError(f"need warmup_gamma > 0, warmup_power > 0 and update_after_step >= 0, got "
                             f"{warmup_gamma}, {warmup_power}, {update_after_step}")
        self.decay, self.warmup, self.min_decay = float(decay), bool(warmup), float(min_decay)
        self.warmup_gamma, self.warmup_power = float(warmup_gamma), float(warmup_power)
        self.update_after_step = int(update_after_step)
        self.sources = list(model.trainable_variables)
        if not self.sources:
            raise ValueError("the model has no trainable variables to average")
        self.averages = [keras.Variable(np.asarray(ops.convert_to_numpy(v.value), np.float32), dtype="float32",
                                        trainable=False, name=f"ema_{i}") for i, v in enumerate(self.sources)]
        self._update_fn = _lerp_fn()

    def decay_at(self, step: int) -> float:
        """The decay used for update number ``step`` (timm's ``get_decay``).

        Example:
            >>> [ModelEMA(model, decay=0.9, warmup=True).decay_at(s) for s in (1, 2, 3)]  # doctest: +SKIP
            [0.0, 0.37..., 0.51...]
        """
        step = max(0, int(step) - self.update_after_step - 1)
        if step <= 0:
            return 0.0
        if not self.warmup:
            return self.decay
        value = 1.0 - (1.0 + step / self.warmup_gamma) ** -self.warmup_power
        return max(min(value, self.decay), self.min_decay)

    def update(self, step: int) -> None:
        """Fold the current weights into the average, after optimiser update number ``step`` (1-based)."""
        weight = np.float32(1.0 - self.decay_at(step))
        new = self._update_fn([a.value for a in self.averages], [v.value for v in self.sources], weight)
        for var, value in zip(self.averages, new):
            var.assign(value)

    @contextlib.contextmanager
    def applied(self):
        """Inside the block the model holds the averaged weights; its own weights come back afterwards."""
        saved = [np.asarray(ops.convert_to_numpy(v.value)) for v in self.sources]
        try:
            for var, avg in zip(self.sources, self.averages):
                var.assign(ops.cast(avg.value, var.dtype))
            yield self
        finally:
            for var, value in zip(self.sources, saved):
                var.assign(value)


def _lerp_fn():
    """``[lerp(a, w, weight)]`` over lists, as ``torch.lerp`` computes it (one compiled call on JAX)."""
    def lerp(averages, values, weight):
        out = []
        for avg, value in zip(averages, values):
            diff = ops.cast(value, "float32") - avg
            out.append(ops.where(weight < 0.5, avg + weight * diff, ops.cast(value, "float32") - diff * (1 - weight)))
        return out
    if keras.backend.backend() == "jax":
        import jax
        return jax.jit(lerp)
    return lerp


def _as_state(x, what: str) -> dict[str, np.ndarray]:
    if hasattr(x, "visual") and hasattr(x, "text"):
        from ..weights.mapping import export_state_dict
        return export_state_dict(x)
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    raise TypeError(f"wise_ft: {what} must be a CLIP model or an open_clip state dict, got {type(x).__name__}")


def wise_ft(zero_shot, finetuned, alpha: float, into=None) -> dict[str, np.ndarray]:
    """WiSE-FT: ``theta = (1 - alpha) * theta_zero_shot + alpha * theta_finetuned`` for every weight.

    ``zero_shot`` and ``finetuned`` are CLIP models or open_clip state dicts (``{key: array}``) with the
    same keys and shapes; ``alpha`` in ``[0, 1]`` (0 gives the zero-shot weights, 1 the fine-tuned
    ones, exactly). Returns the interpolated state dict (float32) and loads it into ``into`` if given.

    Example:
        >>> zero_shot = anyclip.create_model("ViT-B-32", "openai")  # doctest: +SKIP
        >>> wise_ft(zero_shot, finetuned_model, 0.5, into=finetuned_model)  # doctest: +SKIP
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"wise_ft: alpha must be a number in [0, 1], got {alpha!r}")
    alpha = float(alpha)
    zs, ft = _as_state(zero_shot, "zero_shot"), _as_state(finetuned, "finetuned")
    only_zs, only_ft = sorted(set(zs) - set(ft)), sorted(set(ft) - set(zs))
    if only_zs or only_ft:
        raise ValueError(f"wise_ft: the two models have different weights: only in zero_shot {only_zs[:5]}, "
                         f"only in finetuned {only_ft[:5]}")
    out = {}
    for key, a in zs.items():
        b = ft[key]
        if a.shape != b.shape:
            raise ValueError(f"wise_ft: {key!r} has shape {a.shape} in zero_shot but {b.shape} in finetuned")
        a, b = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
        out[key] = ((1.0 - alpha) * a + alpha * b).astype(np.float32, copy=False)
    if into is not None:
        from ..weights.mapping import load_state_dict
        load_state_dict(into, out, source=f"wise_ft(alpha={alpha})")
    return out


__all__ = ["ModelEMA", "wise_ft"]
