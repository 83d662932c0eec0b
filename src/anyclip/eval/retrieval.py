"""Zero-shot image-text retrieval: R@k both ways, mean and median rank.

Image-to-text (``text_retrieval_*``) counts a hit when any caption of the image ranks within ``k``;
text-to-image (``image_retrieval_*``) ranks the caption's own image. Ties and ranks follow
:mod:`anyclip.eval.metrics`. An image that cannot be read is skipped together with its captions and
listed in the result.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..data.common import DatasetError
from ..data.retrieval import RetrievalSet
from .features import encode_images, encode_texts
from .metrics import retrieval_metrics
from .report import EvalResult


def zero_shot_retrieval(model, tokenizer, dataset: RetrievalSet, *, preprocess: Callable | None = None,
                        batch_size: int = 64, text_batch_size: int = 256, workers: int = 4,
                        recall_k: Sequence[int] = (1, 5, 10), progress: bool | None = None) -> EvalResult:
    """Retrieval metrics of ``model`` on ``dataset``; ``result.metrics`` holds
    ``image_retrieval_recall@k``, ``text_retrieval_recall@k`` and their ``_mean_rank`` / ``_median_rank``.

    Example:
        >>> from anyclip.data.retrieval import read_retrieval_json
        >>> result = zero_shot_retrieval(model, tokenizer, read_retrieval_json("coco/val.json"))  # doctest: +SKIP
        >>> result.metrics["text_retrieval_recall@5"]  # doctest: +SKIP
        0.74
    """
    ks = tuple(int(k) for k in recall_k)
    if not ks or min(ks) < 1:
        raise ValueError(f"recall_k must be positive integers, got {recall_k!r}")
    feats = encode_images(model, list(dataset.images), preprocess, batch_size=batch_size, workers=workers,
                          progress=progress, desc="images")
    if not len(feats.features):
        raise DatasetError(f"{dataset.name}: no image could be read ({len(feats.skipped)} unreadable)")
    kept = np.zeros(len(dataset.images), bool)
    kept[feats.indices] = True
    new_index = np.cumsum(kept) - 1  # position among kept images
    t2i = dataset.text_to_image
    keep_text = kept[t2i]
    texts = [t for t, k in zip(dataset.texts, keep_text) if k]
    text_features = encode_texts(model, tokenizer, texts, batch_size=text_batch_size, progress=progress,
                                 desc="captions")
    metrics = retrieval_metrics(feats.features, text_features, new_index[t2i[keep_text]], ks)
    details = {"num_texts": len(texts), "recall_k": list(ks),
               "captions_per_image": {"min": int(np.bincount(t2i).min()), "max": int(np.bincount(t2i).max())}}
    return EvalResult("zeroshot_retrieval", metrics, len(feats.features), feats.skipped, details=details)


__all__ = ["zero_shot_retrieval"]
