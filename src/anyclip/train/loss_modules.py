"""open_clip's loss classes (``ClipLoss``, ``CoCaLoss``, ``DistillClipLoss``) and ``create_loss``, as callable
objects over anyclip's ``keras.ops`` losses (:mod:`anyclip.train.losses`).

The constructors take open_clip's arguments. With ``world_size > 1`` the call also needs this step's
all-gathered features (``all_image_features=``, ``all_text_features=``): anyclip leaves the gather to the
training loop (:mod:`anyclip.train.distributed`). Horovod is not supported.
"""

from __future__ import annotations

from .losses import clip_loss, coca_loss, distill_clip_loss, siglip_loss

__all__ = ["ClipLoss", "CoCaLoss", "DistillClipLoss", "SigLipLoss", "create_loss"]


class ClipLoss:
    """Symmetric InfoNCE as ``open_clip.ClipLoss``: ``loss(image_features, text_features, logit_scale)``.

    ``cache_labels`` is accepted and has no effect (labels are built inside the compiled step).

    Example:
        >>> import numpy as np
        >>> f = np.eye(4, dtype="float32")
        >>> float(ClipLoss()(f, f, 100.0)) < 1e-4
        True
    """

    def __init__(self, local_loss=False, gather_with_grad=False, cache_labels=False, rank=0, world_size=1,
                 use_horovod=False):
        if use_horovod:
            raise ValueError("use_horovod=True: anyclip does not support Horovod; gather the features with "
                             "your framework and pass all_image_features=/all_text_features= to the loss")
        self.local_loss, self.gather_with_grad, self.cache_labels = local_loss, gather_with_grad, cache_labels
        self.rank, self.world_size = rank, world_size

    def _dist(self, kwargs: dict) -> dict:
        if self.world_size > 1 and kwargs.get("all_image_features") is None:
            raise ValueError(f"{type(self).__name__}(world_size={self.world_size}) needs this step's all-gathered "
                             "features: pass all_image_features= and all_text_features= (every rank's rows, in "
                             "rank order)")
        if self.world_size > 1:
            kwargs = {**kwargs, "local_loss": self.local_loss, "rank": self.rank,
                      "gather_with_grad": self.gather_with_grad}
        return kwargs

    def __call__(self, image_features, text_features, logit_scale, logit_bias=None, output_dict=False, **kwargs):
        return clip_loss(image_features, text_features, logit_scale, logit_bias, output_dict, **self._dist(kwargs))


class CoCaLoss(ClipLoss):
    """open_clip's ``CoCaLoss``: weighted contrastive + captioning loss, ``(contrastive, caption)``.

    Example:
        >>> loss = CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0)
        >>> parts = loss(**model({"images": images, "texts": tokens}), output_dict=True)  # doctest: +SKIP
    """

    def __init__(self, caption_loss_weight, clip_loss_weight, pad_id=0, local_loss=False, gather_with_grad=False,
                 cache_labels=False, rank=0, world_size=1, use_horovod=False):
        super().__init__(local_loss, gather_with_grad, cache_labels, rank, world_size, use_horovod)
        self.caption_loss_weight, self.clip_loss_weight, self.pad_id = caption_loss_weight, clip_loss_weight, pad_id

    def __call__(self, image_features, text_features, logits, labels, logit_scale, output_dict=False, **kwargs):
        kwargs.pop("logit_bias", None)
        return coca_loss(image_features, text_features, logits, labels, logit_scale, self.caption_loss_weight,
                         self.clip_loss_weight, self.pad_id, output_dict, **self._dist(kwargs))


class DistillClipLoss(ClipLoss):
    """open_clip's ``DistillClipLoss``: ``(contrastive_loss, distill_loss)`` against a teacher (one device).

    Example:
        >>> contrastive, distill = DistillClipLoss()(s["image_features"], s["text_features"],  # doctest: +SKIP
        ...     s["logit_scale"], t["image_features"], t["text_features"], t["logit_scale"])
    """

    def __call__(self, image_features, text_features, logit_scale, dist_image_features, dist_text_features,
                 dist_logit_scale, output_dict=False):
        if self.world_size > 1:
            raise ValueError(f"DistillClipLoss(world_size={self.world_size}): anyclip computes distillation on one "
                             "device's batch; use world_size=1 (anyclip train --distill-model gathers for you)")
        return distill_clip_loss(image_features, text_features, logit_scale, dist_image_features,
                                 dist_text_features, dist_logit_scale, output_dict)


class SigLipLoss:
    """open_clip's ``SigLipLoss`` (what ``create_loss`` returns for ``args.siglip``), one device.

    Example:
        >>> loss = SigLipLoss()
        >>> value = loss(out["image_features"], out["text_features"], out["logit_scale"], out["logit_bias"])  # doctest: +SKIP
    """

    def __init__(self, cache_labels=False, rank=0, world_size=1, dist_impl=None):
        if world_size > 1:
            raise ValueError(f"SigLipLoss(world_size={world_size}): use anyclip train for multi-device SigLIP")
        self.rank, self.world_size, self.dist_impl = rank, world_size, dist_impl

    def __call__(self, image_features, text_features, logit_scale, logit_bias, output_dict=False):
        return siglip_loss(image_features, text_features, logit_scale, logit_bias, output_dict)


def create_loss(args):
    """The loss open_clip_train would build from its parsed ``args`` (distill, CoCa, SigLIP or CLIP).

    Example:
        >>> import argparse
        >>> args = argparse.Namespace(distill=False, model="ViT-B-32", siglip=False, local_loss=False,
        ...     gather_with_grad=False, rank=0, world_size=1, horovod=False)
        >>> type(create_loss(args)).__name__
        'ClipLoss'
    """
    common = dict(local_loss=args.local_loss, gather_with_grad=args.gather_with_grad, cache_labels=True,
                  rank=args.rank, world_size=args.world_size, use_horovod=args.horovod)
    if args.distill:
        return DistillClipLoss(**common)
    if "coca" in args.model.lower():
        return CoCaLoss(caption_loss_weight=args.coca_caption_loss_weight,
                        clip_loss_weight=args.coca_contrastive_loss_weight, **common)
    if args.siglip:
        if args.horovod:
            raise ValueError("args.horovod: Horovod is not supported for SigLIP")
        return SigLipLoss(rank=args.rank, world_size=args.world_size,
                          dist_impl=getattr(args, "loss_dist_impl", None))
    return ClipLoss(**common)
