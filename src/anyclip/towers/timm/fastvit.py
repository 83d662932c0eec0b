"""MobileCLIP image towers: timm's MCi FastViT (``fastvit_mci0`` .. ``fastvit_mci4``), natively in Keras.

open_clip wraps ``timm.create_model(name, num_classes=embed_dim, global_pool="avg")`` as ``visual.trunk`` (for
``timm_proj: null``). The trunk: a stem of three MobileOne blocks (stride 4); RepMixer stages, then attention
stages (every stage after the first opens with a stride-2 large-kernel patch embedding, attention stages with a
conditional positional encoding); a MobileOne final conv with squeeze-excite; average pool; ``head.fc``.

The train-time form has parallel conv + BatchNorm branches; :func:`reparameterize` fuses them into single
convolutions exactly as timm's ``reparameterize_model`` (the form built from
``timm_model_kwargs: {"inference_mode": true}``). BatchNorm follows ``torch.nn.BatchNorm2d``
(:class:`anyclip.layers.norm.BatchNorm`): running statistics in inference, batch statistics in
training. Input: float images ``[batch, H, W, 3]`` (channels last), output ``[batch, embed_dim]``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ...layers.init import child_seed, constant_init, normal_init
from ...layers.norm import BatchNorm
from ..base import Tower, lock_groups
from ..config import ConfigError
from .fastvit_blocks import MOBILEONE_TABLE, STAGE_TABLE, MobileOne, Stage
from .fastvit_config import TimmFastViTConfig

_STATS = ("moving_mean", "moving_var", "num_batches_tracked")  # BatchNorm buffers: never trainable
# open_clip key (relative to ``visual.``) -> attribute path on this tower, transform (anyclip.weights.mapping).
WEIGHT_TABLE = (
    ("trunk.stem.{i}.", "stem", MOBILEONE_TABLE),
    ("trunk.stages.{i}.", "stages", STAGE_TABLE),
    ("trunk.final_conv.", "final_conv", MOBILEONE_TABLE),
    ("trunk.head.fc.weight", "fc_kernel", "linear"),  # timm_proj null: timm's classifier is the projection
    ("trunk.head.fc.bias", "fc_bias", None),
    ("head.proj.weight", "proj_kernel", "linear"),  # timm_proj "linear": open_clip's extra projection
    ("head.proj.bias", "proj_bias", None),
)


@keras.saving.register_keras_serializable(package="anyclip")
class TimmFastViT(Tower):
    """An MCi FastViT tower (MobileCLIP): stem, stages, final conv, average pool, projection.

    ``quick_gelu`` is accepted for the tower signature and unused (timm towers use their own GELU).

    Example:
        >>> cfg = TimmFastViTConfig("fastvit_mci0", 64, timm_proj=None, timm_model_kwargs={"layers": [1, 1, 1, 1]})
        >>> TimmFastViT(cfg, embed_dim=512)(keras.ops.zeros((1, 64, 64, 3))).shape
        (1, 512)
    """

    WEIGHT_TABLE = WEIGHT_TABLE  # how open_clip names this tower's weights (anyclip.weights.mapping)
    CONFIG = TimmFastViTConfig

    def __init__(self, config: TimmFastViTConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, arch, policy = self.config, self.config.arch, self.dtype_policy
        if cfg.head == "none" and arch.num_features != embed_dim:
            raise ConfigError(f"vision_cfg.timm_proj: 'none' needs the timm model's width ({arch.num_features}) "
                              f"equal to embed_dim ({embed_dim})")
        inf, dims, d0 = cfg.inference_mode, arch.embed_dims, arch.embed_dims[0]
        scale = arch.stem_scale_branch

        def sub(cls, name, *args, **kw):
            return cls(*args, seed=child_seed(seed, name), name=name, dtype=policy, inference=inf, **kw)

        self.stem = [sub(MobileOne, "stem_0", 3, d0, 3, 2, scale_branch=scale),
                     sub(MobileOne, "stem_1", d0, d0, 3, 2, depthwise=True, scale_branch=scale),
                     sub(MobileOne, "stem_2", d0, d0, 1, scale_branch=scale)]
        self.stages = []
        for i, (depth, dim) in enumerate(zip(arch.layers, dims)):
            prev = dims[max(i - 1, 0)]
            mixer = arch.token_mixer(i)
            self.stages.append(sub(Stage, f"stage_{i}", prev, dim, depth, mixer, arch.mlp_ratio, i > 0,
                                   arch.se_downsamples[i], mixer == "attention", arch.layer_norm))
        self.final_conv = sub(MobileOne, "final_conv", dims[-1], arch.num_features, 3, depthwise=True, se=True)
        self.fc_kernel = self.fc_bias = self.proj_kernel = self.proj_bias = None
        self.width = arch.num_features

    def build(self, input_shape=None):
        w, e, std = self.width, self.embed_dim, self.width ** -0.5
        if self.config.head == "fc":
            self.fc_kernel = self.add_weight(name="fc_kernel", shape=(w, e),
                                             initializer=normal_init(std, self.seed, "fc"))
            self.fc_bias = self.add_weight(name="fc_bias", shape=(e,), initializer=constant_init(0.0))
        elif self.config.head == "linear":
            self.proj_kernel = self.add_weight(name="proj_kernel", shape=(w, e),
                                               initializer=normal_init(std, self.seed, "proj"))
            if self.config.timm_proj_bias:
                self.proj_bias = self.add_weight(name="proj_bias", shape=(e,), initializer=constant_init(0.0))
        self.built = True

    def forward_features(self, images, training: bool = False):
        """The final conv's feature map ``[batch, h, w, 2 * last stage width]`` (timm's ``forward_features``)."""
        x = images
        for block in self.stem:
            x = block(x, training=training)
        for stage in self.stages:
            x = stage(x, training=training)
        return self.final_conv(x, training=training)

    def call(self, images, training: bool = False):
        x = ops.mean(self.forward_features(images, training=training), axis=(1, 2))
        for kernel, bias in ((self.fc_kernel, self.fc_bias), (self.proj_kernel, self.proj_bias)):
            if kernel is not None:
                x = ops.matmul(x, ops.cast(kernel, x.dtype))
                x = x + ops.cast(bias, x.dtype) if bias is not None else x
        return x

    def reparameterized_state_dict(self, state: dict, prefix: str = "visual.") -> dict:
        """An open_clip state dict of this (train-time) tower, re-parameterised as timm's ``reparameterize_model``.

        Keys and layouts stay open_clip's (``...reparam_conv.weight``); other towers' keys pass through.

        Example:
            >>> fused = model.visual.reparameterized_state_dict(export_state_dict(model))  # doctest: +SKIP
        """
        if self.config.inference_mode:
            raise ValueError("this FastViT tower is already re-parameterised (timm_model_kwargs.inference_mode)")
        state, trunk = dict(state), prefix + "trunk."
        for i, block in enumerate(self.stem):
            block.fuse(state, f"{trunk}stem.{i}.")
        for i, stage in enumerate(self.stages):
            stage.fuse(state, f"{trunk}stages.{i}.")
        self.final_conv.fuse(state, trunk + "final_conv.")
        return {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
                for k, v in state.items()}

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk except its last ``unlocked_groups`` layer groups (open_clip ``TimmModel.lock``).

        timm's groups, first to last: the stem; each block (a stage's first block with its patch embedding
        and positional encoding); the final conv with ``head.fc``. ``freeze_bn_stats`` keeps the BatchNorms
        of the frozen groups (all of them if none is frozen, as open_clip) on their running statistics in
        training, affine weights frozen (open_clip's ``FrozenBatchNorm2d``).
        open_clip's ``head.proj`` (``timm_proj: "linear"``) stays trainable.

        Example:
            >>> model.visual.lock(unlocked_groups=1, freeze_bn_stats=True)  # doctest: +SKIP
        """
        groups = [list(self.stem)]
        for stage in self.stages:
            extras = [layer for layer in (stage.down_conv, stage.down_mix, stage.pos_enc, stage.pos_reparam) if layer]
            groups += [(extras if i == 0 else []) + [block] for i, block in enumerate(stage.blocks)]
        groups.append([self.final_conv])
        head = [v for v in (self.fc_kernel, self.fc_bias) if v is not None]
        weights = [[v for layer in group for v in layer.weights if v.name not in _STATS] for group in groups]
        weights[-1] += head
        lock_groups(self, weights, unlocked_groups, "image tower")
        for var in self.weights:
            if var.name in _STATS:
                var.trainable = False
        for var in [v for v in (self.proj_kernel, self.proj_bias) if v is not None]:
            var.trainable = True  # open_clip's head.proj is outside the trunk
        if freeze_bn_stats:  # open_clip freezes every BatchNorm when no group is frozen (an empty match: all)
            frozen = groups[:max(len(groups) - int(unlocked_groups), 0)] if unlocked_groups else groups
            for layer in [sub for group in frozen or groups for top in group
                          for sub in top._flatten_layers(include_self=True, recursive=True)]:
                if isinstance(layer, BatchNorm):  # FrozenBatchNorm2d: running statistics, no trainable affine
                    layer.frozen = True
                    layer.gamma.trainable = layer.beta.trainable = False


