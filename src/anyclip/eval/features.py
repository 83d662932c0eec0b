"""Image and text features for evaluation (the loops are :mod:`anyclip.encode`'s), over labelled sets.

Also the on-disk feature cache of the linear probe: ``.npy`` features and labels plus a ``.json``
record, written atomically and keyed by model identity, dataset fingerprint, split and preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.labelled import LabelledImages
from ..data.loader import SkippedImage
from ..encode import Features, encode_images, encode_texts


def encode_labelled(model, dataset: LabelledImages, preprocess: Callable | None = None, *, batch_size: int = 64,
                    workers: int = 4, progress: bool | None = None, desc: str = "images") -> Features:
    """:func:`encode_images` over a labelled set; ``labels`` holds the class ids of the kept images.

    Example:
        >>> feats = encode_labelled(model, read_image_folder("pets/val"))  # doctest: +SKIP
    """
    labels: list[int] = []

    def sources():
        for sample in dataset.samples():
            labels.append(sample.label)
            yield sample.source

    feats = encode_images(model, sources(), preprocess, batch_size=batch_size, workers=workers,
                          progress=progress, total=dataset.num_items, desc=desc)
    feats.labels = np.asarray(labels, dtype=np.int64)[feats.indices]
    return feats


def model_identity(model, model_id: str | None = None) -> str:
    """A string naming the weights of ``model`` for cache keys: ``model_id`` when given, else the
    model name, pretrained tag / checkpoint (with the file's size and time) and dtype policy.

    Raises when the model has no known weights (random or trained in memory): pass ``model_id`` then.

    Example:
        >>> model_identity(anyclip.create_model("ViT-B-32", "laion2b_s34b_b79k"))  # doctest: +SKIP
        'ViT-B-32|laion2b_s34b_b79k|/root/.cache/huggingface/.../open_clip_model.safetensors|605143884:...|float32'
    """
    if model_id:
        return model_id
    cfg = getattr(model, "pretrained_cfg", None) or {}
    checkpoint, pretrained = cfg.get("checkpoint"), cfg.get("pretrained")
    if not checkpoint and not pretrained:
        raise ValueError("the feature cache needs to know which weights the model has; this model has no "
                         "pretrained tag or checkpoint, so pass model_id=")
    stamp = ""
    if checkpoint and os.path.isfile(checkpoint):
        st = os.stat(checkpoint)
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    policy = getattr(getattr(model, "dtype_policy", None), "name", "")
    return f"{cfg.get('model')}|{pretrained}|{checkpoint}|{stamp}|{policy}"


class FeatureCache:
    """Features of one dataset split on disk: ``<dir>/<slug>-<split>-<hash>.{features,labels}.npy`` + ``.json``.

    The hash covers the model identity, the dataset fingerprint, the split and the preprocessing, so a
    changed dataset or model is never served stale features. Files are written atomically and the
    ``.json`` last, so a cut-off write is never read back.

    Example:
        >>> identity = model_identity(model)  # doctest: +SKIP
        >>> cache = FeatureCache("features/", identity, data, "train", model.preprocess_cfg)  # doctest: +SKIP
        >>> cache.load() is None  # first run  # doctest: +SKIP
        True
    """

    def __init__(self, directory: str | os.PathLike, identity: str, dataset, split: str, preprocess_cfg=None):
        cfg = preprocess_cfg.to_dict() if hasattr(preprocess_cfg, "to_dict") else preprocess_cfg
        key = json.dumps([identity, dataset.fingerprint(), split, cfg], sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{Path(identity.split('|')[0]).name}-{Path(dataset.name).name}")[:80]
        base = Path(directory) / f"{slug}-{split}-{digest}"
        self.features_path = base.with_name(base.name + ".features.npy")
        self.labels_path = base.with_name(base.name + ".labels.npy")
        self.meta_path = base.with_name(base.name + ".json")
        self.key = key

    def load(self) -> Features | None:
        """The cached features, or ``None`` when there are none (or they do not match the key)."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if meta.get("key") != self.key:
                return None
            features = np.load(self.features_path)
            labels = np.load(self.labels_path)
        except (OSError, ValueError):
            return None
        skipped = [SkippedImage(s["index"], s["file"], s["reason"]) for s in meta.get("skipped", [])]
        return Features(features, np.asarray(meta["indices"], np.int64), skipped, labels)

    def save(self, feats: Features) -> None:
        """Write ``feats`` (features, labels, then the record) atomically."""
        from ..atomic import atomic_write

        def saver(array):
            def write(tmp):
                with open(tmp, "wb") as f:
                    np.save(f, array)
            return write

        atomic_write(self.features_path, saver(np.asarray(feats.features, np.float32)))
        atomic_write(self.labels_path, saver(np.asarray(feats.labels, np.int64)))
        meta = {"key": self.key, "indices": feats.indices.tolist(), "skipped": [s.to_dict() for s in feats.skipped]}
        text = json.dumps(meta, ensure_ascii=False)
        atomic_write(self.meta_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


__all__ = ["FeatureCache", "Features", "encode_images", "encode_labelled", "encode_texts", "model_identity"]
