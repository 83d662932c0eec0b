"""Training losses with open_clip 3.3.0 semantics, in ``keras.ops`` (JAX, PyTorch, TensorFlow).

* :func:`clip_loss` -- symmetric InfoNCE, as ``open_clip.ClipLoss``.
* :func:`siglip_loss` -- pairwise sigmoid loss with logit bias, as ``open_clip.SigLipLoss``, optionally
  computed over text chunks so that memory is ``batch x chunk`` instead of ``batch x batch``.
* :func:`distill_clip_loss` -- contrastive + soft-label distillation, as ``open_clip.DistillClipLoss``.
* :func:`coca_loss` / :class:`CoCaLoss` -- weighted contrastive + captioning cross-entropy, as
  ``open_clip.CoCaLoss``.
* :func:`clamp_logit_scale` -- keeps the learned log-temperature in ``[0, ln 100]`` after each step.

Conventions shared by every loss (they mirror open_clip's training loop):

* ``logit_scale`` is the *exponentiated* temperature, i.e. ``model(...)["logit_scale"]`` ==
  ``exp(model.logit_scale)``; ``logit_bias`` is used as stored.
* Features are ``[batch, dim]``; they are *not* normalised here (the model already does it).
* Everything is computed in float32: bf16/fp16 features and scales are cast at entry, so the loss
  is float32 whatever the compute dtype of the towers (gradients flow back through the cast).
* Distributed data parallelism is left to the caller: pass this device's features plus the
  all-gathered ones (``all_*_features``, every device's rows in rank order) and ``rank``. With
  ``gather_with_grad=False`` (open_clip's default) the gathered tensors are treated as constants
  and this device's own rows are put back in place so that they still get gradients.
"""

import math
import numbers

import keras
from keras import ops

LOGIT_SCALE_MAX = math.log(100.0)

__all__ = ["CoCaLoss", "LOGIT_SCALE_MAX", "caption_loss", "clamp_logit_scale", "clip_loss", "coca_loss",
           "distill_clip_loss", "siglip_loss"]


# ----------------------------------------------------------------------------- helpers
def _f32(x):
    return None if x is None else ops.cast(x, "float32")


def _shape(x):
    return tuple(None if d is None else int(d) for d in x.shape)


def _check_pair(fn, a, b, names=("image_features", "text_features"), same_dim=True):
    """Both rank 2, same batch size (and same embedding dim unless ``same_dim=False``)."""
    sa, sb = _shape(a), _shape(b)
    bad = len(sa) != 2 or len(sb) != 2
    if not bad:
        pairs = zip(sa, sb) if same_dim else [(sa[0], sb[0])]
        bad = any(x is not None and y is not None and x != y for x, y in pairs)
    if bad:
        what = "[batch, dim] with equal batch and dim" if same_dim else "[batch, dim] with equal batch"
        raise ValueError(f"{fn}: {names[0]} has shape {sa} and {names[1]} has shape {sb}; "
                         f"both must be {what}")


def _rows(x):
    """Batch size: a Python int when static, else a scalar tensor (e.g. TF graphs with batch None)."""
    return x.shape[0] if x.shape[0] is not None else ops.shape(x)[0]


def _check_gathered(fn, local, gathered, name):
    """``gathered`` holds every device's rows: same dim as ``local``, batch a multiple of it."""
    sl, sg = _shape(local), _shape(gathered)
    if sl[0] is None or (len(sg) == 2 and sg[0] is None):
        raise ValueError(f"{fn}: gathered features need static batch sizes, got {name} of shape {sg} "
                         f"for local features of shape {sl}")
    ok = len(sg) == 2 and (sl[1] is None or sg[1] is None or sl[1] == sg[1])
    if ok and sl[0]:
        ok = sg[0] % sl[0] == 0
    if not ok:
        raise ValueError(f"{fn}: {name} has shape {sg}, which cannot hold the gathered rows of "
                         f"local features of shape {sl} (need [world_size * batch, dim])")


def _offset(rank, batch):
    """First row of this device in the gathered tensors (static when ``rank`` is a Python int)."""
    return int(rank) * batch if isinstance(rank, numbers.Integral) else ops.cast(rank, "int32") * batch


def put_local_rows(gathered, local, rank, keep_grad):
    """``gathered`` with rows ``rank*batch ...`` replaced by ``local`` (so they carry gradient).

    A select against ``local`` tiled over the ranks: differentiable on every backend (TF has no
    gradient for dynamic slice updates) and fine with a traced ``rank``.
    """
    if not keep_grad:
        gathered = ops.stop_gradient(gathered)
    n, m = local.shape[0], gathered.shape[0]
    mine = ops.equal(ops.arange(m, dtype="int32") // n, ops.cast(rank, "int32"))
    return ops.where(mine[:, None], ops.tile(local, (m // n, 1)), gathered)


def _scaled_logits(a, b, logit_scale, logit_bias=None):
    # Same association as open_clip: (scale * a) @ b.T (+ bias).
    logits = ops.matmul(logit_scale * a, ops.transpose(b))
    return logits if logit_bias is None else logits + logit_bias


def _cross_entropy(logits, labels):
    """Mean negative log-likelihood of integer ``labels`` (``F.cross_entropy``)."""
    logp = ops.log_softmax(logits, axis=-1)
    return -ops.mean(ops.take_along_axis(logp, labels[:, None], axis=1))


def _soft_cross_entropy(teacher_logits, student_logits):
    """``-(softmax(teacher) * log_softmax(student)).sum(1).mean(0)`` (open_clip ``dist_loss``)."""
    p = ops.exp(ops.log_softmax(teacher_logits, axis=-1))  # softmax (keras warns on 1 column)
    return -ops.mean(ops.sum(p * ops.log_softmax(student_logits, axis=-1), axis=-1))


def _clip_logits(fn, image_features, text_features, logit_scale, logit_bias=None, *,
                 all_image_features=None, all_text_features=None, local_loss=False, rank=0,
                 gather_with_grad=False):
    """``(logits_per_image, logits_per_text, labels)`` exactly as ``ClipLoss.get_logits`` builds them."""
    image_features, text_features = _f32(image_features), _f32(text_features)
    logit_scale, logit_bias = _f32(logit_scale), _f32(logit_bias)
    _check_pair(fn, image_features, text_features)
    n = _rows(image_features)
    if (all_image_features is None) != (all_text_features is None):
        raise ValueError(f"{fn}: pass both all_image_features and all_text_features, or neither")
    if all_image_features is None:
        logits_per_image = _scaled_logits(image_features, text_features, logit_scale, logit_bias)
        logits_per_text = _scaled_logits(text_features, image_features, logit_scale, logit_bias)
        return logits_per_image, logits_per_text, ops.arange(n, dtype="int32")

    all_image, all_text = _f32(all_image_features), _f32(all_text_features)
    _check_pair(fn, all_image, all_text, ("all_image_features", "all_text_features"))
    _check_gathered(fn, image_features, all_image, "all_image_features")
    if local_loss:
        if not gather_with_grad:
            all_image, all_text = ops.stop_gradient(all_image), ops.stop_gradient(all_text)
        logits_per_image = _scaled_logits(image_features, all_text, logit_scale, logit_bias)
        logits_per_text = _scaled_logits(text_features, all_image, logit_scale, logit_bias)
        labels = ops.arange(n, dtype="int32") + _offset(rank, n)
        return logits_per_image, logits_per_text, labels
    if not gather_with_grad:
        all_image = put_local_rows(all_image, image_features, rank, keep_grad=False)
        all_text = put_local_rows(all_text, text_features, rank, keep_grad=False)
    logits_per_image = _scaled_logits(all_image, all_text, logit_scale)
    logits_per_text = ops.transpose(logits_per_image)
    if logit_bias is not None:
        logits_per_image, logits_per_text = logits_per_image + logit_bias, logits_per_text + logit_bias
    return logits_per_image, logits_per_text, ops.arange(all_image.shape[0], dtype="int32")


# ----------------------------------------------------------------------------- losses
def clip_loss(image_features, text_features, logit_scale, logit_bias=None, output_dict=False, *,
              all_image_features=None, all_text_features=None, local_loss=False, rank=0,
              gather_with_grad=False):
    """CLIP contrastive loss: mean of image->text and text->image cross-entropies (``ClipLoss``).

    Args:
        image_features, text_features: ``[batch, dim]`` features of this device (row i of each
            is a matching pair).
        logit_scale: exponentiated temperature, scalar. logit_bias: optional scalar added to logits.
        all_image_features, all_text_features: ``[world_size * batch, dim]`` all-gathered features
            (rank order), for data parallelism; leave ``None`` on a single device.
        local_loss: score only this device's rows against all gathered columns; labels are then
            ``arange(batch) + rank * batch`` (open_clip ``local_loss=True``). Otherwise the full
            global ``[N, N]`` loss is computed on every device.
        rank: this device's index (Python int or traced scalar).
        gather_with_grad: ``False`` treats the gathered tensors as constants (this device's rows
            put back in non-local mode); ``True`` lets gradients flow into them.

    Returns:
        float32 scalar, or ``{"contrastive_loss": loss}`` when ``output_dict``.

    Example:
        >>> out = model({"images": images, "texts": tokens}, training=True)  # doctest: +SKIP
        >>> loss = clip_loss(out["image_features"], out["text_features"], out["logit_scale"])  # doctest: +SKIP
    """
    logits_per_image, logits_per_text, labels = _clip_logits(
        "clip_loss", image_features, text_features, logit_scale, logit_bias,
        all_image_features=all_image_features, all_text_features=all_text_features,
        local_loss=local_loss, rank=rank, gather_with_grad=gather_with_grad)
    loss = (_cross_entropy(logits_per_image, labels) + _cross_entropy(logits_per_text, labels)) / 2
    return {"contrastive_loss": loss} if output_dict else loss


def _sigmoid_block(image_features, text_features, logit_scale, logit_bias, shift):
    """Sum over the block of ``-log_sigmoid(label * logit)``; label +1 where ``col == row + shift``."""
    logits = _scaled_logits(image_features, text_features, logit_scale, logit_bias)
    rows = ops.arange(_rows(image_features), dtype="int32")[:, None] + shift
    cols = ops.arange(_rows(text_features), dtype="int32")[None, :]
    labels = ops.where(ops.equal(rows, cols), 1.0, -1.0)
    return -ops.sum(ops.log_sigmoid(labels * logits))


def _remat_block(shift, with_bias):
    # Only float tensors go through keras.remat (TF's recompute_grad differentiates every argument).
    def block(image_features, text_features, logit_scale, *bias):
        return _sigmoid_block(image_features, text_features, logit_scale,
                              bias[0] if with_bias else None, shift)
    return keras.remat(block)


def siglip_loss(image_features, text_features, logit_scale, logit_bias, output_dict=False, *,
                chunk_size=None, all_text_features=None, rank=0):
    """SigLIP sigmoid loss (``SigLipLoss``): ``sum(-log_sigmoid(labels * logits)) / batch``.

    ``labels`` is ``+1`` for matching pairs and ``-1`` elsewhere (``2 * eye - 1``).

    Args:
        image_features, text_features: ``[batch, dim]`` features of this device.
        logit_scale: exponentiated temperature, scalar. logit_bias: scalar (or ``None``).
        chunk_size: when set, text rows are scored ``chunk_size`` at a time (any batch size, the
            last chunk may be shorter) and each chunk is rematerialised in the backward pass
            (``keras.remat``), so peak loss memory is ``batch x chunk_size`` for the forward *and*
            the gradient, at the price of recomputing each chunk's logits once. Same value.
            Needs a static number of text rows.
        all_text_features: ``[world_size * batch, dim]`` all-gathered text features (rank order)
            for data parallelism: this device's images are scored against every text, positives at
            ``rank * batch + i``; the result equals open_clip's per-rank loss (any ``dist_impl``).
            Gradients flow into ``all_text_features`` (open_clip exchanges texts with gradient),
            except for this device's own rows, which are taken from ``text_features``.
        rank: this device's index (Python int or traced scalar).

    Returns:
        float32 scalar, or ``{"contrastive_loss": loss}`` when ``output_dict``.

    Example:
        >>> out = model({"images": images, "texts": tokens}, training=True)  # doctest: +SKIP
        >>> loss = siglip_loss(out["image_features"], out["text_features"],  # doctest: +SKIP
        ...                    out["logit_scale"], out["logit_bias"], chunk_size=1024)
    """
    image_features, text_features = _f32(image_features), _f32(text_features)
    logit_scale, logit_bias = _f32(logit_scale), _f32(logit_bias)
    _check_pair("siglip_loss", image_features, text_features)
    n = _rows(image_features)
    texts, offset = text_features, 0
    if all_text_features is not None:
        all_text = _f32(all_text_features)
        _check_gathered("siglip_loss", text_features, all_text, "all_text_features")
        texts = put_local_rows(all_text, text_features, rank, keep_grad=True)
        offset = _offset(rank, n)
    m = texts.shape[0]
    if chunk_size is not None:
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"siglip_loss: chunk_size must be a positive int, got {chunk_size!r}")
        if m is None:
            raise ValueError("siglip_loss: chunk_size needs a static number of text rows, got text "
                             f"features of shape {_shape(texts)}")
    if chunk_size is None or chunk_size >= m:
        total = _sigmoid_block(image_features, texts, logit_scale, logit_bias, offset)
    else:
        bias = () if logit_bias is None else (logit_bias,)
        total = 0.0
        for start in range(0, m, int(chunk_size)):
            block = _remat_block(offset - start, logit_bias is not None)
            total = total + block(image_features, texts[start:start + int(chunk_size)], logit_scale, *bias)
    loss = total / ops.cast(n, "float32")
    return {"contrastive_loss": loss} if output_dict else loss


def distill_clip_loss(image_features, text_features, logit_scale, dist_image_features,
                      dist_text_features, dist_logit_scale, output_dict=False):
    """CLIP loss plus distillation from a teacher's logits (``DistillClipLoss``, one device).

    ``distill_loss`` is the mean over both directions of the soft cross-entropy
    ``-sum(softmax(teacher_logits) * log_softmax(student_logits), axis=1)``, averaged over rows.
    Gradients reach the teacher inputs too, as in open_clip; stop them upstream for a frozen teacher.

    Args:
        image_features, text_features: student ``[batch, dim]``; logit_scale: its exp'd temperature.
        dist_image_features, dist_text_features: teacher ``[batch, teacher_dim]``;
            dist_logit_scale: the teacher's exp'd temperature.

    Returns:
        ``(contrastive_loss, distill_loss)`` float32 scalars (open_clip's order), or
        ``{"contrastive_loss": ..., "distill_loss": ...}`` when ``output_dict``.

    Example:
        >>> contrastive, distill = distill_clip_loss(s["image_features"], s["text_features"],  # doctest: +SKIP
        ...     s["logit_scale"], t["image_features"], t["text_features"], t["logit_scale"])
        >>> total = contrastive + distill  # doctest: +SKIP
    """
    fn = "distill_clip_loss"
    _check_pair(fn, image_features, dist_image_features, ("image_features", "dist_image_features"),
                same_dim=False)
    logits_per_image, logits_per_text, labels = _clip_logits(
        fn, image_features, text_features, logit_scale)
    dist_per_image, dist_per_text, _ = _clip_logits(
        fn, dist_image_features, dist_text_features, dist_logit_scale)
    contrastive = (_cross_entropy(logits_per_image, labels) + _cross_entropy(logits_per_text, labels)) / 2
    distill = (_soft_cross_entropy(dist_per_image, logits_per_image)
               + _soft_cross_entropy(dist_per_text, logits_per_text)) / 2
    if output_dict:
        return {"contrastive_loss": contrastive, "distill_loss": distill}
    return contrastive, distill


def caption_loss(logits, labels, pad_id=0, all_labels=None):
    """Mean next-token cross-entropy over the label positions that are not ``pad_id``.

    ``torch.nn.CrossEntropyLoss(ignore_index=pad_id)`` on ``logits [batch, length, vocab]`` and
    ``labels [batch, length]`` (NaN when every label is padding, as in torch). ``all_labels``: when
    ``logits``/``labels`` are one micro-batch of a larger batch (gradient accumulation), that batch's labels;
    the sum is then divided by its count of real tokens, so the micro-batches' losses add up to the batch's.

    Example:
        >>> caption_loss(out["logits"], out["labels"])  # doctest: +SKIP
    """
    logits, labels = _f32(logits), ops.cast(labels, "int32")
    if len(_shape(logits)) != 3 or _shape(logits)[:2] != _shape(labels):
        raise ValueError(f"caption_loss: logits have shape {_shape(logits)} and labels {_shape(labels)}; "
                         "need [batch, length, vocab] and [batch, length]")
    keep = ops.not_equal(labels, pad_id)
    safe = ops.where(keep, labels, 0)
    nll = -ops.take_along_axis(ops.log_softmax(logits, axis=-1), safe[..., None], axis=-1)[..., 0]
    counted = keep if all_labels is None else ops.not_equal(ops.cast(all_labels, "int32"), pad_id)
    count = ops.sum(ops.cast(counted, "float32"))
    return ops.sum(ops.where(keep, nll, 0.0)) / count


def coca_loss(image_features, text_features, logits, labels, logit_scale, caption_loss_weight=2.0,
              clip_loss_weight=1.0, pad_id=0, output_dict=False, all_labels=None, **clip_kwargs):
    """CoCa's loss: ``clip_loss_weight * clip_loss + caption_loss_weight * caption_loss`` (``CoCaLoss``).

    Args:
        image_features, text_features, logit_scale: as :func:`clip_loss` (``clip_kwargs`` too: gathered
            features, ``local_loss``, ``rank``...). A ``clip_loss_weight`` of 0 skips the contrastive part.
        logits, labels: the model's teacher-forced ``[batch, length, vocab]`` logits and ``[batch, length]``
            next tokens; ``pad_id`` labels are ignored. ``all_labels``: see :func:`caption_loss`.
        caption_loss_weight, clip_loss_weight: open_clip_train's ``--coca-caption-loss-weight`` (2.0) and
            ``--coca-contrastive-loss-weight`` (1.0) defaults.

    Returns:
        ``(contrastive_loss, caption_loss)`` float32 scalars (open_clip's order), or
        ``{"contrastive_loss": ..., "caption_loss": ...}`` when ``output_dict``.

    Example:
        >>> out = model({"images": images, "texts": tokens}, training=True)  # doctest: +SKIP
        >>> parts = coca_loss(**out, output_dict=True)  # doctest: +SKIP
    """
    clip_kwargs.pop("logit_bias", None)  # open_clip's CoCaLoss uses no bias either
    if clip_loss_weight:
        contrastive = clip_loss_weight * clip_loss(image_features, text_features, logit_scale, **clip_kwargs)
    else:
        contrastive = ops.zeros((), "float32")
    caption = caption_loss_weight * caption_loss(logits, labels, pad_id, all_labels)
    if output_dict:
        return {"contrastive_loss": contrastive, "caption_loss": caption}
    return contrastive, caption


class CoCaLoss:
    """:func:`coca_loss` with open_clip's ``CoCaLoss`` constructor: ``CoCaLoss(caption_loss_weight, clip_loss_weight)``.

    Example:
        >>> loss = CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0)
        >>> parts = loss(**model({"images": images, "texts": tokens}), output_dict=True)  # doctest: +SKIP
    """

    def __init__(self, caption_loss_weight, clip_loss_weight, pad_id=0, local_loss=False, gather_with_grad=False):
        self.caption_loss_weight, self.clip_loss_weight, self.pad_id = caption_loss_weight, clip_loss_weight, pad_id
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad

    def __call__(self, image_features, text_features, logits, labels, logit_scale, output_dict=False, **kwargs):
        return coca_loss(image_features, text_features, logits, labels, logit_scale, self.caption_loss_weight,
                         self.clip_loss_weight, self.pad_id, output_dict, local_loss=self.local_loss,
                         gather_with_grad=self.gather_with_grad, **kwargs)


# ----------------------------------------------------------------------------- temperature
def clamp_logit_scale(model_or_variable, min_value=0.0, max_value=LOGIT_SCALE_MAX):
    """Clamp the *log* temperature to ``[min_value, max_value]`` (default ``[0, ln 100]``).

    open_clip does ``model.logit_scale.clamp_(0, math.log(100))`` after every optimizer step; call
    this at the same point. Accepts a model with a ``logit_scale`` variable, a ``keras.Variable``
    (assigned in place and returned), or a plain tensor (clipped copy returned, for stateless
    training loops, e.g. JAX ``stateless_apply``).

    Example:
        >>> optimizer.apply(grads, model.trainable_variables)  # doctest: +SKIP
        >>> clamp_logit_scale(model)  # doctest: +SKIP
    """
    target = getattr(model_or_variable, "logit_scale", model_or_variable)
    if target is None:
        raise ValueError("clamp_logit_scale: the model has no logit_scale")
    if isinstance(target, keras.Variable):
        target.assign(ops.clip(target, min_value, max_value))
        return target
    return ops.clip(target, min_value, max_value)
