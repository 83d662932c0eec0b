"""The Hugging Face text tower (open_clip's ``HFTextEncoder``): an HF encoder, a pooler and a projection.

The attention mask is ``tokens != pad_token_id`` (the HF config's pad id). Poolers as open_clip's:
``mean_pooler`` (mean over real tokens), ``cls_pooler`` (RoBERTa's ``pooler_output`` when the encoder has
a pooler, else the first token), ``cls_last_hidden_state_pooler`` (first token) and ``max_pooler``.
Projection ``hf_proj_type``: ``linear`` (no bias), ``mlp`` (Linear, exact GELU, Linear; no biases) or null.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from ...layers.dense import LINEAR_TABLE, dense
from ...layers.init import child_seed
from ..base import Tower, round_up_length
from ..config import ConfigError
from ..registry import family
from .config import HFTextConfig

PROJ_TABLE = (
    ("proj.", "proj", LINEAR_TABLE),
    ("proj.0.", "proj_0", LINEAR_TABLE),
    ("proj.2.", "proj_2", LINEAR_TABLE),
)


@keras.saving.register_keras_serializable(package="anyclip")
class HFTextEncoder(Tower):
    """Text tower of open_clip's ``CustomTextCLIP`` for ``hf_model_name`` configs.

    Input: int token ids ``[batch, length]`` (``length <= context_length`` is not required: the encoder
    is not tied to it). Output: pooled, projected features ``[batch, embed_dim]``. Its weights are named
    ``text.transformer.*`` / ``text.proj*`` like open_clip's state dict (``WEIGHT_TABLE``).

    Example:
        >>> tower = HFTextEncoder(HFTextConfig(hf_model_name="/path/to/tiny-roberta"), embed_dim=8)  # doctest: +SKIP
        >>> tower(keras.ops.ones((2, 16), dtype="int32")).shape  # doctest: +SKIP
        (2, 8)
    """

    CONFIG = HFTextConfig
    MODALITY = "text"
    CUSTOM_TEXT = True  # open_clip builds HF towers as CustomTextCLIP: keys live under "text."

    def __init__(self, config: HFTextConfig | dict, embed_dim: int, quick_gelu: bool = False,
                 seed: int | None = 0, **kwargs):
        super().__init__(config, embed_dim, quick_gelu, seed, **kwargs)
        cfg, policy = self.config, self.dtype_policy
        arch = self.arch = cfg.arch
        if cfg.hf_model_pretrained and seed is not None:
            warnings.warn(f"text_cfg.hf_model_pretrained=true: open_clip would load the pretrained weights of "
                          f"{cfg.hf_model_name} into the text tower; anyclip initialises it at random (load a full "
                          "CLIP checkpoint for trained weights)", stacklevel=3)
        with_pooler = cfg.hf_pooler_type == "cls_pooler" and arch.family == "roberta"
        self.transformer = family(arch.family).encoder_class()(arch, with_pooler, child_seed(seed, "transformer"),
                                                 name="transformer", dtype=policy)
        d = arch.width
        self.proj = self.proj_0 = self.proj_2 = None
        if cfg.hf_proj_type == "linear":
            self.proj = dense(embed_dim, d ** -0.5, seed, "proj", policy, bias=False)
        elif cfg.hf_proj_type == "mlp":
            hidden = (d + embed_dim) // 2
            self.proj_0 = dense(hidden, d ** -0.5, seed, "proj_0", policy, bias=False)
            self.proj_2 = dense(embed_dim, hidden ** -0.5, seed, "proj_2", policy, bias=False)
        elif d != embed_dim:
            raise ConfigError(f"text_cfg.hf_proj_type=null needs the encoder width ({d}) to equal embed_dim "
                              f"({embed_dim}); use 'linear' or 'mlp'")

    @classmethod
    def config_from_dict(cls, values: dict) -> HFTextConfig:
        return HFTextConfig.from_dict(values)

    @property
    def WEIGHT_TABLE(self):  # noqa: N802 - the tower interface name (anyclip.weights.mapping)
        """open_clip key (under ``text.``) -> attribute path, transform: the encoder's rows and the projection's."""
        return self.transformer.WEIGHT_TABLE + PROJ_TABLE

    @property
    def vocab_size(self) -> int:
        """Number of token ids the encoder embeds (the HF config's ``vocab_size``)."""
        return self.arch.vocab_size

    def build(self, input_shape=None):
        self.transformer.build()
        d = self.arch.width
        if self.proj is not None:
            self.proj.build((None, d))
        if self.proj_0 is not None:
            self.proj_0.build((None, d))
            self.proj_2.build((None, self.proj_0.units))
        self.built = True

    def pool(self, hidden, mask):
        """open_clip's pooler over the last hidden state ``[batch, tokens, width]`` -> ``[batch, width]``."""
        pooler = self.config.pooler
        if pooler == "mean_pooler":
            m = ops.cast(mask, hidden.dtype)[:, :, None]
            return ops.sum(hidden * m, axis=1) / ops.sum(m, axis=1)
        if pooler == "max_pooler":
            # open_clip 3.3.0's MaxPooler fails at run time (masked_fill with an integer mask); anyclip takes
            # the evident intent, the maximum over the real (non-pad) tokens.
            return ops.max(ops.where(mask[:, :, None], hidden, float("-inf")), axis=1)
        if pooler == "cls_pooler" and getattr(self.transformer, "pooler", None) is not None:
            return self.transformer.pooled(hidden)
        return hidden[:, 0]

    @property
    def pad_token_id(self) -> int:
        """The id the attention mask leaves out (the HF config's ``pad_token_id``)."""
        return self.arch.pad_token_id

    def needed_length(self, tokens: np.ndarray, multiple: int = 8) -> int:
        """How many leading positions of ``tokens`` decide the output, rounded up to ``multiple``.

        Pad ids after the last real token of every row are masked out of attention and pooling (and the
        encoders' positions count from the start), so cutting them changes nothing; a row with no real token
        keeps the full length.

        Example:
            >>> ids = np.array([[0, 9, 2, 1, 1, 1, 1, 1, 1, 1]])  # RoBERTa: pad id 1
            >>> tower.needed_length(ids, multiple=4)  # doctest: +SKIP
            4
        """
        real = np.asarray(tokens) != self.arch.pad_token_id
        full = real.shape[1]
        if full == 0 or not real.any(axis=1).all():
            return full
        last = int((full - 1 - np.argmax(real[:, ::-1], axis=1)).max())
        return round_up_length(last, full, multiple)

    def project(self, pooled):
        """``hf_proj_type`` applied to pooled features ``[batch, width]`` -> ``[batch, embed_dim]``."""
        if self.proj is not None:
            return self.proj(pooled)
        if self.proj_0 is not None:
            return self.proj_2(keras.activations.gelu(self.proj_0(pooled), approximate=False))
        return pooled

    def forward_tokens(self, tokens, training: bool = False, with_cls: bool = True):
        """``(features [batch, embed_dim], tokens [batch, length, width])``: open_clip's ``output_tokens`` result.

        The tokens are the encoder's last hidden state; with ``cls_pooler`` the first position (the one pooled)
        is left out, as open_clip does. ``with_cls=False`` skips pooling (features are ``None``).

        Example:
            >>> feats, hidden = tower.forward_tokens(ids)  # doctest: +SKIP
        """
        tokens = ops.cast(tokens, "int32")
        mask = ops.not_equal(tokens, self.arch.pad_token_id)
        hidden = self.transformer(tokens, mask)
        out_tokens = hidden[:, 1:] if self.config.pooler == "cls_pooler" else hidden
        if not with_cls:
            return None, out_tokens
        return self.project(self.pool(hidden, mask)), out_tokens

    def call(self, tokens, training: bool = False):
        return self.forward_tokens(tokens, training=training)[0]

    def lock(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """open_clip's ``HFTextEncoder.lock``: freeze the HF encoder, or all but its last ``unlocked_layers`` groups.

        ``unlocked_layers=0`` freezes every encoder weight; otherwise the groups [embeddings, layer 0, ...,
        layer n-1] are frozen except the last ``unlocked_layers`` (weights outside them, e.g. the final norm,
        stay as they are). Weights whose open_clip name has a ``LayerNorm`` part stay trainable when
        ``freeze_layer_norm=False``. The projection is never frozen. M2M100/NLLB encoders can only be
        locked whole (open_clip has no layer list for them).

        Example:
            >>> model.text.lock(unlocked_layers=2)  # doctest: +SKIP
        """
        if isinstance(unlocked_layers, bool) or not isinstance(unlocked_layers, int) or unlocked_layers < 0:
            raise ValueError(f"text tower: unlocked_layers must be an integer >= 0, got {unlocked_layers!r}")
        entries = {k: v for k, (v, _) in self.weight_entries().items()
                   if k.startswith("transformer.")}

        def freeze(keys):
            for key in keys:
                entries[key].trainable = (not freeze_layer_norm) if "LayerNorm" in key.split(".") else False

        if not unlocked_layers:
            freeze(list(entries))
            return
        enc = self.transformer
        if enc.LAYER_PREFIX is None:
            raise ValueError(f"text tower: partial unlocking (unlocked_layers={unlocked_layers}) is not defined for "
                             f"{self.arch.model_type} encoders (open_clip has no layer list for them); use 0")
        groups = [[k for k in entries if k.startswith(enc.EMBEDDINGS_PREFIX)]]
        groups += [[k for k in entries if k.startswith(enc.LAYER_PREFIX.format(i=i))] for i in range(self.arch.layers)]
        for group in groups[:-unlocked_layers]:
            freeze(group)
