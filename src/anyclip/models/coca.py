"""CoCa: a CLIP model with a caption decoder (open_clip ``CoCa``), for contrastive features and captions."""

from __future__ import annotations

import keras
from keras import ops

from ..layers.init import child_seed
from ..towers.openai.coca_decoder import MultimodalTransformer
from .clip import CLIP, _inputs, _training, l2_normalize
from .config import CLIPConfig, CoCaConfig
from .placement import model_device_scope


@keras.saving.register_keras_serializable(package="anyclip")
class CoCa(CLIP):
    """Image tower ``visual`` and text tower ``text`` (both also giving tokens) + caption decoder ``text_decoder``.

    Same entry points as :class:`~anyclip.models.clip.CLIP`; ``encode_image`` / ``encode_text`` normalise by
    default, as open_clip's ``CoCa`` does. Called on ``{"images", "texts"}`` the model also returns the
    teacher-forced caption ``logits`` ``[batch, length - 1, vocab]`` for the next tokens and their
    ``labels`` (``texts[:, 1:]``), which :func:`anyclip.train.losses.coca_loss` takes.
    :meth:`generate` writes captions.

    Example:
        >>> import anyclip
        >>> model = anyclip.create_model("coca_ViT-B-32")  # doctest: +SKIP
        >>> ids = model.generate(images)  # doctest: +SKIP
        >>> anyclip.decode_captions(ids)  # doctest: +SKIP
    """

    def __init__(self, config: CoCaConfig | dict, seed: int | None = 0, **kwargs):
        config = config if isinstance(config, CLIPConfig) else CLIPConfig.from_dict(config)
        if not isinstance(config, CoCaConfig):
            raise TypeError("CoCa needs a config with multimodal_cfg (a CoCaConfig); use CLIP for this one")
        super().__init__(config, seed, **kwargs)

    def build(self, input_shape=None):
        if self.built:
            return
        cfg = self.config
        # open_clip sizes the decoder's output by text_cfg.vocab_size, whose default (49,408, CLIP's) also
        # holds for Hugging Face text towers: their own vocabulary does not enter.
        vocab = cfg.text_cfg.vocab_size or 49408
        self.text_decoder = MultimodalTransformer(cfg.multimodal_cfg, vocab, cfg.quick_gelu,
                                                  child_seed(self.seed, "text_decoder"), name="text_decoder",
                                                  dtype=self.dtype_policy)
        self.text_decoder.build()
        super().build(input_shape)

    def call(self, image=None, text=None, training: bool | None = None):
        """``{"images", "texts"}`` or open_clip's ``(image, text)`` -> a dict of normalised features and
        ``logit_scale``; with both, ``logits`` and ``labels``; open_clip's form with an image only adds its
        ``image_embs`` (as open_clip's ``CoCa.forward``)."""
        inputs, open_clip_form = _inputs(image, text)
        training = _training(self, training, open_clip_form)
        with model_device_scope(self):
            out = self._coca_features(inputs, training, image_embs=open_clip_form)
        if open_clip_form and inputs.get("texts") is None:
            return out  # open_clip's image-only answer: image_features and image_embs
        out["logit_scale"] = ops.exp(self.logit_scale)
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        return out

    def _coca_features(self, inputs: dict, training: bool, image_embs: bool) -> dict:
        images, texts = inputs.get("images"), inputs.get("texts")
        out = {}
        if images is not None:
            images = ops.convert_to_tensor(self._images(images))
            image_latent, embs = self.visual.forward_tokens(images, training=training)
            out["image_features"] = l2_normalize(image_latent)
            if image_embs and texts is None:
                out["image_embs"] = embs
        if texts is not None:
            texts = ops.convert_to_tensor(texts)
            text_latent, token_embs = self.text.forward_tokens(texts, training=training)
            out["text_features"] = l2_normalize(text_latent)
            if images is not None:  # teacher forcing: tokens up to position i predict token i + 1
                out["logits"] = self.text_decoder(token_embs[:, :-1], embs)
                out["labels"] = texts[:, 1:]
        return out

    def encode_image(self, images, normalize: bool = True):
        """Image features ``[batch, embed_dim]``, L2-normalised unless ``normalize=False`` (as open_clip's CoCa)."""
        return super().encode_image(images, normalize)

    def encode_text(self, texts, normalize: bool = True):
        """Text features ``[batch, embed_dim]``, L2-normalised unless ``normalize=False`` (as open_clip's CoCa)."""
        return super().encode_text(texts, normalize)

    def generate(self, images, text=None, **options):
        """Caption token ids ``[batch, length]`` for images, exactly as open_clip's ``CoCa.generate``.

        See :func:`anyclip.models.coca_generate.generate` for the options (``generation_type``
        ``"beam_search"`` / ``"top_k"`` / ``"top_p"`` / ``"greedy"``, ``seq_len``, ``num_beams``, ...).

        Example:
            >>> ids = model.generate(images, generation_type="greedy", seq_len=20)  # doctest: +SKIP
        """
        from .coca_generate import generate
        return generate(self, images, text, **options)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Rematerialise the blocks of both towers and of the caption decoder in the backward pass."""
        super().set_grad_checkpointing(enable)
        self.text_decoder.grad_checkpointing = bool(enable)
