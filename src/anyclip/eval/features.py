"""Image and text features for evaluation: batched, parallel decoding, unreadable images counted.

Also the on-disk feature cache of the linear probe: ``.npy`` features and labels plus a ``.json``
record, written atomically and keyed by model identity, dataset fingerprint, split and preprocessing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..data.labelled import LabelledImages
from ..data.loader import SkippedImage, iter_image_batches, progress_bar


@dataclasses.dataclass
class Features:
    """``features [n, d]`` float32 of the images that loaded, the input ``indices`` they came from,
    ``labels`` (labelled sets only) and the inputs that were ``skipped``."""

    features: np.ndarray
    indices: np.ndarray
    skipped: list[SkippedImage]
    labels: np.ndarray | None = None


def _to_numpy(x) -> np.ndarray:
    from keras import ops
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float32)


def _pad_batches() -> bool:
    """JAX and TensorFlow compile once per input shape: pad short batches to one shape."""
    import keras
    return keras.backend.backend() in ("jax", "tensorflow")


def encode_images(model, sources: Iterable, preprocess: Callable | None = None, *, batch_size: int = 64,
                  workers: int = 4, progress: bool | None = None, total: int | None = None,
                  desc: str = "images") -> Features:
    """Normalised image features of ``sources`` (paths or ``(name, bytes)`` pairs), in input order.

    Unreadable images are skipped and listed in ``skipped``; ``indices`` maps each feature row to its
    input position. ``preprocess`` defaults to the model's eval transform.

    Example:
        >>> feats = encode_images(model, ["a.jpg", "broken.jpg"], batch_size=32)  # doctest: +SKIP
        >>> feats.features.shape, [s.name for s in feats.skipped]  # doctest: +SKIP
        ((1, 512), ['broken.jpg'])
    """
    if preprocess is None:
        from ..transforms import image_transform
        preprocess = image_transform(model.preprocess_cfg)
    pad = _pad_batches()
    out, indices, skipped = [], [], []
    for batch in iter_image_batches(sources, preprocess, batch_size=batch_size, workers=workers,
                                    progress=progress, total=total, desc=desc):
        skipped.extend(batch.skipped)
        n = len(batch.pixels)
        if not n:
            continue
        pixels = batch.pixels
        if pad and n < batch_size:
            pixels = np.concatenate([pixels, np.zeros((batch_size - n,) + pixels.shape[1:], pixels.dtype)])
        out.append(_to_numpy(model.encode_image(pixels, normalize=True))[:n])
        indices.append(batch.indices)
    dim = model.config.embed_dim
    return Features(np.concatenate(out) if out else np.zeros((0, dim), np.float32),
                    np.concatenate(indices) if indices else np.zeros(0, np.int64), skipped)


def encode_texts(model, tokenizer, texts: Sequence[str], *, batch_size: int = 256,
                 progress: bool | None = None, desc: str = "texts") -> np.ndarray:
    """Normalised text features ``[len(texts), d]`` float32, in order.

    Example:
        >>> encode_texts(model, tokenizer, ["a cat", "a dog"]).shape  # doctest: +SKIP
        (2, 512)
    """
    out = []
    with progress_bar(len(texts), desc, "txt", progress) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            out.append(_to_numpy(model.encode_text(tokenizer(chunk), normalize=True)))
            bar.update(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, model.config.embed_dim), np.float32)


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
