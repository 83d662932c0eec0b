"""One optimiser step of a CLIP model on any Keras backend, with open_clip's gradient accumulation.

The step is written once, as a function that calls the model and the loss; only "differentiate this
function" is backend-specific (``jax.value_and_grad`` over a :class:`keras.StatelessScope`, torch
autograd, ``tf.GradientTape``), in :func:`value_and_grad` below.

Gradient accumulation follows open_clip's ``--accum-freq``: a contrastive loss couples every pair in the
batch, so averaging per-micro-batch losses is *not* the large-batch loss. Instead the features of all
micro-batches are first computed without gradients; then, for each micro-batch, its features are
recomputed with gradients, put in place of their cached copy, and the loss over the whole set is
differentiated. The summed gradients equal the gradient of one step on the whole batch (exactly, for a
model without dropout; patch dropout draws different patches in the two passes, as in open_clip). One
deliberate difference: open_clip sums the temperature's (and SigLIP bias's) gradient over the micro-batches,
``accum_freq`` times the large-batch value; here it is counted once, so the update is the large-batch one.

Options: a frozen ``teacher`` model for distillation (its outputs reach the loss as ``dist_*``), dynamic
loss scaling for float16 (a ``keras.optimizers.LossScaleOptimizer``: the loss is multiplied by its scale,
the optimiser unscales, skips steps with non-finite gradients and adapts the scale, as torch's
``GradScaler``), and a :class:`~anyclip.train.weights_avg.ModelEMA` updated after every applied step.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import keras
import numpy as np
from keras import ops

from ..layers.backend import jax_on_cpu
from .losses import clamp_logit_scale, put_local_rows

LossFn = Callable[[Mapping[str, object]], object]


def value_and_grad(fn: Callable, variables: Sequence[keras.Variable], state: Sequence[keras.Variable] = ()):
    """``fn(*args) -> (loss, aux)`` into ``g(*args) -> (loss, aux, grads)``, gradients w.r.t. ``variables``.

    ``state`` lists non-trainable variables that ``fn`` may update (random-seed states, batch-norm
    statistics): on JAX their new values are written back after the call; on torch and TensorFlow the
    model updates them in place as usual. On JAX, ``g.lower(*args)`` lowers the compiled program for inspection
    (``g.lower(*args).compile().memory_analysis()``).

    Example:
        >>> g = value_and_grad(lambda x: (ops.sum(model.visual(x) ** 2), None), model.trainable_variables)  # doctest: +SKIP
        >>> loss, _, grads = g(images)  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    variables, state = list(variables), list(state)
    if backend == "jax":
        import jax

        def split(values, state_values, *args):
            (loss, aux), new_state = _pure(fn, variables, state)(values, state_values, *args)
            return loss, (aux, new_state)

        grad_fn = jax.jit(jax.value_and_grad(split, has_aux=True), compiler_options=_gradient_compiler_options())

        def run(*args):
            (loss, (aux, new_state)), grads = grad_fn([v.value for v in variables], [v.value for v in state], *args)
            _write_back(state, new_state)
            return loss, aux, grads
        run.lower = lambda *args: grad_fn.lower([v.value for v in variables], [v.value for v in state], *args)
        return run
    if backend == "torch":
        import torch

        def run(*args):
            with torch.enable_grad():
                loss, aux = fn(*args)
                params = [var.value for var in variables]
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            return loss.detach(), _detach(aux), grads
        return run
    if backend == "tensorflow":
        import tensorflow as tf

        def run(*args):
            with tf.GradientTape() as tape:
                loss, aux = fn(*args)
            grads = tape.gradient(loss, [v.value for v in variables],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            # Embedding lookups give IndexedSlices; dense tensors can be summed over micro-batches.
            return loss, aux, [tf.convert_to_tensor(g) for g in grads]
        return run
    raise NotImplementedError(f"training needs the jax, torch or tensorflow backend, not {backend!r}")


def _gradient_compiler_options() -> dict | None:
    """XLA options for a compiled gradient: on a CPU, the scheduler that orders operations for the least memory.

    A gradient program keeps the forward activations until the backward pass uses them; XLA:CPU's default order
    favours running independent operations at once over freeing buffers early. For ViT-B-32 at batch 32 the
    memory-optimised order needs 2.9 GiB of temporary buffers instead of 3.3 (``memory_analysis()`` of the compiled
    program), with the same gradients bit for bit and no measurable loss of speed on 2 cores.
    """
    return {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"} if jax_on_cpu() else None


def _pure(fn, variables, state):
    """JAX: ``fn(*args)`` as a pure function of the variables' values, also returning the new ``state``."""
    def pure(values, state_values, *args):
        mapping = list(zip(variables, values)) + list(zip(state, state_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = fn(*args)
        new_state = [scope.get_current_value(v) for v in state]
        return out, [s if n is None else n for n, s in zip(new_state, state_values)]
    return pure


def _write_back(state, values):
    for var, value in zip(state, values):
        var.assign(value)


def _detach(tree):
    if isinstance(tree, dict):
        return {k: _detach(v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_detach(v) for v in tree)
    return tree.detach() if hasattr(tree, "detach") else tree


class TrainStep:
    """``step(images, texts) -> {"loss": float, ...}``: forward, loss, gradients, optimiser update, clamp.

    ``loss_fn(outputs)`` gets the model's output dict (``image_features``, ``text_features``,
    ``logit_scale`` -- already exponentiated -- and ``logit_bias`` when the model has one) and returns
    a scalar, or a dict of scalars that are summed (each is reported). ``accum_freq > 1`` splits the
    batch into that many micro-batches and accumulates gradients as open_clip does (the update equals
    one step on the whole batch). After each update ``logit_scale`` is clamped to ``[0, ln(100)]``.
    With accumulation, a model that returns caption ``labels`` (CoCa) also hands the loss ``all_labels``, the
    whole batch's, so that each micro-batch's caption loss is its share of the batch's mean; the parts named
    in ``summed_parts`` are reported as the sum of those shares, the others (whole-batch values) as means.

    ``teacher``: a frozen model run in inference mode on the whole batch; its ``image_features``,
    ``text_features`` and ``logit_scale`` join the outputs as ``dist_*`` (for :func:`distill_clip_loss`).
    A ``keras.optimizers.LossScaleOptimizer`` turns on dynamic loss scaling (metrics then also hold
    ``loss_scale`` and ``step_skipped``, 1.0 for a step dropped for non-finite gradients). ``ema``: a
    :class:`~anyclip.train.weights_avg.ModelEMA` of the trainable weights, updated after each applied step.
    ``distributed``: a :class:`~anyclip.train.distributed.Distributed` whose ranks' gradients and metrics are
    all-reduced (torch DDP; give it a ``loss_fn`` from its ``wrap_loss``); a JAX mesh needs nothing here.

    Example:
        >>> optimizer = keras.optimizers.AdamW(1e-4)  # doctest: +SKIP
        >>> step = TrainStep(model, optimizer, lambda out: clip_loss(**out))  # doctest: +SKIP
        >>> step(images, tokens)["loss"]  # doctest: +SKIP
    """

    def __init__(self, model, optimizer: keras.optimizers.Optimizer, loss_fn: LossFn, accum_freq: int = 1,
                 max_logit_scale: float | None = math.log(100), teacher=None, ema=None,
                 summed_parts: Sequence[str] = ("caption_loss",), distributed=None):
        if int(accum_freq) != accum_freq or accum_freq < 1:
            raise ValueError(f"accum_freq must be a positive integer, got {accum_freq!r}")
        self.distributed = distributed
        torch_ranks = distributed is not None and distributed.backend == "torch" and distributed.processes > 1
        if torch_ranks and (accum_freq > 1 or teacher is not None):
            raise ValueError("--accum-freq > 1 and --distill-model are not supported across torch processes "
                             "yet (JAX data parallelism supports them)")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.accum_freq, self.max_logit_scale = int(accum_freq), max_logit_scale
        self.summed_parts = frozenset(summed_parts)
        self.variables = list(model.trainable_variables)
        if not self.variables:
            raise ValueError("the model has no trainable variables (are both towers locked?)")
        self.optimizer.build(self.variables)
        state = list(model.non_trainable_variables)
        self._grad_single = value_and_grad(self._single, self.variables, state)
        self._grad_micro = value_and_grad(self._micro, self.variables, state)
        self._features = None
        self._apply = _apply_fn(self.optimizer, self.variables)
        self.scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.ema = ema
        self._updates = None  # optimiser updates so far, mirrored on the host
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
            self._teacher = _inference_fn(teacher, training=False)

    # Each function below is differentiated by value_and_grad; they only call the model and the loss.
    def _outputs(self, images, texts):
        return self.model({"images": images, "texts": texts}, training=True)

    def _total(self, outputs, extra):
        """``(differentiated loss, (loss, parts))``: the loss times the loss scale when there is one."""
        if extra["teacher"] is not None:
            outputs = {**outputs, **{f"dist_{k}": v for k, v in extra["teacher"].items()}}
        losses = self.loss_fn(outputs)
        if not isinstance(losses, Mapping):
            losses = {"loss": losses}
        total = sum(losses.values()) if len(losses) > 1 else next(iter(losses.values()))
        scaled = total if extra["scale"] is None else total * ops.cast(extra["scale"], total.dtype)
        return scaled, (total, dict(losses))

    def _single(self, images, texts, extra):
        return self._total(self._outputs(images, texts), extra)

    def _micro(self, images, texts, cached, index, extra):
        outputs = dict(self._outputs(images, texts))
        for key in ("image_features", "text_features"):
            outputs[key] = put_local_rows(cached[key], outputs[key], index, keep_grad=False)
        if "labels" in cached:  # a captioning model: the caption loss is averaged over the whole batch's tokens
            outputs["all_labels"] = cached["labels"]
        # The temperature (and bias) enter every micro-loss directly, not through the live slice: let only
        # the first micro-batch carry their gradient, so that they too get the whole batch's gradient once.
        for key in ("logit_scale", "logit_bias"):
            if key in outputs:
                outputs[key] = ops.where(index == 0, outputs[key], ops.stop_gradient(outputs[key]))
        return self._total(outputs, extra)

    def _cached_features(self, images, texts):
        if self._features is None:
            self._features = _inference_fn(self.model)
        out = self._features(images, texts)
        return {k: out[k] for k in ("image_features", "text_features", "labels") if k in out}

    def __call__(self, images, texts) -> dict[str, float]:
        metrics, grads = self.compute_gradients(images, texts)
        # The update count lives on the host: read from the device once (it may come from a checkpoint),
        # then again only where the loss-scale optimiser may have skipped the update.
        before = self._iterations() if self.scaled or self._updates is None else self._updates
        self._apply(grads)
        if self.max_logit_scale is not None:
            clamp_logit_scale(self.model, 0.0, self.max_logit_scale)
        self._updates = self._iterations() if self.scaled else before + 1
        if self.scaled:  # the loss-scale optimiser skips the update (and halves the scale) on inf/nan grads
            metrics["step_skipped"] = 0.0 if self._updates != before else 1.0
        if self.ema is not None and self._updates != before:
            self.ema.update(self._updates)
        return metrics

    def _iterations(self) -> int:
        return int(ops.convert_to_numpy(self.optimizer.iterations))

    def compute_gradients(self, images, texts) -> tuple[dict[str, float], list]:
        """``(metrics, grads)`` for one batch, before any update (grads follow ``self.variables``).

        With a ``LossScaleOptimizer`` the grads are those of the scaled loss (``metrics["loss_scale"]``
        times the true ones); its ``apply`` unscales them.
        """
        images, texts = _as_array(images, "float32"), _as_array(texts, "int32")
        batch = ops.shape(images)[0]
        if ops.shape(texts)[0] != batch:
            raise ValueError(f"images and texts must have the same batch size, got {ops.shape(images)} "
                             f"and {ops.shape(texts)}")
        extra = {"scale": self.optimizer.dynamic_scale.value if self.scaled else None,
                 "teacher": None if self.teacher is None else self._teacher_outputs(images, texts)}
        if self.accum_freq == 1:
            _, (loss, parts), grads = self._grad_single(images, texts, extra)
        else:
            loss, parts, grads = self._accumulate(images, texts, batch, extra)
        metrics = {k: float(ops.convert_to_numpy(v)) for k, v in parts.items()}
        metrics["loss"] = float(ops.convert_to_numpy(loss))
        if self.distributed is not None:  # every rank stops together on a non-finite loss
            grads = self.distributed.reduce_gradients(grads)
            metrics = self.distributed.reduce_metrics(metrics)
        if self.scaled:
            metrics["loss_scale"] = float(ops.convert_to_numpy(extra["scale"]))
        if not math.isfinite(metrics["loss"]):
            raise FloatingPointError(f"the loss is not finite ({metrics['loss']}); no update was applied "
                                     "(lower the learning rate, or check the data)")
        return metrics, grads

    def _teacher_outputs(self, images, texts):
        out = self._teacher(images, texts)
        return {k: out[k] for k in ("image_features", "text_features", "logit_scale")}

    def _accumulate(self, images, texts, batch, extra):
        if batch % self.accum_freq:
            raise ValueError(f"the batch of {batch} does not split into accum_freq={self.accum_freq} "
                             "equal micro-batches")
        size = batch // self.accum_freq
        micro = [(images[i * size:(i + 1) * size], texts[i * size:(i + 1) * size]) for i in range(self.accum_freq)]
        cached = [self._cached_features(*m) for m in micro]
        cached = {k: ops.concatenate([c[k] for c in cached], axis=0) for k in cached[0]}
        total_grads, total_loss, parts = None, 0.0, {}
        for i, (imgs, txts) in enumerate(micro):
            _, (loss, parts_i), grads = self._grad_micro(imgs, txts, cached, np.int32(i), extra)
            total_grads = grads if total_grads is None else [a + b for a, b in zip(total_grads, grads)]
            total_loss = total_loss + loss
            parts = {k: parts.get(k, 0.0) + v for k, v in parts_i.items()}
        # A micro-step's loss is the whole batch's (only the live slice differs): report the mean; summed parts
        # are each micro-batch's share of the batch's value: report their sum.
        n = self.accum_freq
        parts = {k: v if k in self.summed_parts else v / n for k, v in parts.items()}
        if self.summed_parts & parts.keys():
            return sum(parts.values()), parts, total_grads
        return total_loss / n, parts, total_grads


def _apply_fn(optimizer, variables):
    """``apply(grads)``: the optimiser update (one compiled function on JAX, eager elsewhere)."""
    if keras.backend.backend() != "jax":
        return lambda grads: optimizer.apply(grads, variables)
    import jax
    # The optimiser's old state and the gradients are used once: XLA writes the new values into their buffers
    # (donation), so an update holds no second copy of the optimiser state. The weights' old values are not donated:
    # an EMA or a teacher may share those arrays.
    jitted = jax.jit(optimizer.stateless_apply, donate_argnums=(0, 1))

    def apply(grads):
        values, opt_values = jitted([v.value for v in optimizer.variables], grads, [v.value for v in variables])
        _write_back(variables, values)
        _write_back(optimizer.variables, opt_values)
    return apply


def _inference_fn(model, training=True):
    """The model's outputs without gradients: the cached micro-batch features, or a frozen teacher's."""
    backend = keras.backend.backend()
    state = list(model.non_trainable_variables)

    def features(images, texts):
        return dict(model({"images": images, "texts": texts}, training=training))

    if backend == "jax":
        import jax
        variables = list(model.trainable_variables)
        jitted = jax.jit(_pure(features, variables, state))

        def run(images, texts):
            out, new_state = jitted([v.value for v in variables], [v.value for v in state], images, texts)
            _write_back(state, new_state)
            return out
        return run
    if backend == "torch":
        import torch

        def run(images, texts):
            with torch.no_grad():
                return features(images, texts)
        return run
    return lambda images, texts: {k: ops.stop_gradient(v) for k, v in features(images, texts).items()}


def _as_array(x, dtype):
    if isinstance(x, (list, tuple, np.ndarray)):
        x = np.asarray(x)
        if x.dtype != dtype:
            x = x.astype(dtype)
    return ops.convert_to_tensor(x)
