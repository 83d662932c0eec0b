"""An exported ONNX folder used like an anyclip model: ``encode_image`` / ``encode_text`` through onnxruntime.

It has what anyclip's evaluation code reads (``preprocess_cfg``, ``logit_scale``, ``config.embed_dim``), so
``shapes_zero_shot(OnnxCLIP("out/"), tokenizer)`` scores the exported (or quantized) files themselves.

Example:
    >>> model = OnnxCLIP("vit-b-32-onnx/")  # doctest: +SKIP
    >>> model.encode_image(pixels).shape  # NHWC float32 pixels, as anyclip's transforms give  # doctest: +SKIP
    (2, 512)
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .manifest import read_manifest


class OnnxCLIP:
    """The two ONNX encoders of an ``anyclip export`` folder, with the model's preprocessing and logit scale.

    Example:
        >>> OnnxCLIP("out/").encode_text(tokens, normalize=True).shape  # doctest: +SKIP
        (3, 128)
    """

    def __init__(self, folder: str | os.PathLike, threads: int | None = None):
        from ..models.preprocess import PreprocessConfig
        from .onnx import onnx_session
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        pre = self.manifest["preprocess"]
        self.preprocess_cfg = PreprocessConfig.from_dict({**pre, "size": tuple(pre["size"])})
        self.config = SimpleNamespace(embed_dim=self.manifest["embedding_width"])
        self.context_length = self.manifest["text_encoder"]["shape"][1]
        self.logit_scale = np.float32(np.log(self.manifest["logit_scale"]))
        self.logit_bias = self.manifest["logit_bias"]
        self._image = onnx_session(self.folder / self.manifest["image_encoder"]["file"], threads)
        self._text = onnx_session(self.folder / self.manifest["text_encoder"]["file"], threads)
        rows = self.manifest["image_encoder"]["shape"][0]
        self._rows = None if rows == "batch" else int(rows)

    def _run(self, session, inputs: np.ndarray) -> np.ndarray:
        from .deploy import in_batches
        from .onnx import run_onnx
        return in_batches(lambda x: run_onnx(session, np.ascontiguousarray(x)), inputs,
                          "dynamic" if self._rows is None else self._rows)

    def encode_image(self, images, normalize: bool = True) -> np.ndarray:
        """Unit-length image embeddings of preprocessed ``[n, h, w, 3]`` float32 pixels (anyclip's layout)."""
        images = np.asarray(images, dtype=np.float32)
        if self.manifest["image_encoder"]["layout"] == "NCHW":
            images = images.transpose(0, 3, 1, 2)
        return self._run(self._image, images)

    def encode_text(self, tokens, normalize: bool = True) -> np.ndarray:
        """Unit-length text embeddings of token ids ``[n, context_length]``."""
        return self._run(self._text, np.asarray(tokens, dtype=np.int64))
