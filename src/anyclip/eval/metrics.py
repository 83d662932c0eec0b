"""Classification and retrieval metrics on plain numpy arrays (no model, no backend).

**Ranks and ties.** Every metric here comes from one ranking rule: candidates are ordered by score,
highest first, and candidates with *equal* scores by index, lowest first (a stable sort of ``-score``;
``np.argmax`` picks the same first candidate). The rank of a target is its 1-based position in that
order, ``1 + #(score > s) + #(score == s and index < target)``. So a tie is never counted in the model's
favour twice: with all scores equal, only the first candidate is ranked 1. For distinct scores this is
open_clip's and clip_benchmark's ranking exactly.

**Several positives** (an image with several captions): image-to-text retrieval uses the rank of the
best-ranked positive, so R@k is 1 when *any* of the image's captions is in the top ``k``
(clip_benchmark's convention). Text-to-image retrieval has one positive, the caption's own image.

**Top-k with fewer than k classes**: ``k`` is clipped to the number of classes (top-5 of a 3-class
problem is then 1.0; clip_benchmark reports NaN there instead).

**Mean per-class recall**: the mean, over classes that have at least one sample, of the fraction of
that class's samples predicted as it (scikit-learn's ``balanced_accuracy_score``). Classes without
samples are left out of the mean (they have no recall), but predicting them still costs the true class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_CHUNK_CELLS = 1 << 24  # score-matrix cells per chunk (64 MiB of float32)


def _check_scores(scores: np.ndarray, name: str) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"{name} must be 2-D [queries, candidates], got shape {scores.shape}")
    if scores.shape[1] == 0:
        raise ValueError(f"{name} has no candidates (shape {scores.shape})")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return scores


def target_ranks(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """1-based rank of each row's target among the row's candidates (ties: lower index first).

    Example:
        >>> target_ranks(np.array([[0.1, 0.9, 0.5], [0.5, 0.5, 0.0]]), [2, 1]).tolist()
        [2, 2]
    """
    scores = _check_scores(scores, "scores")
    targets = np.asarray(targets, dtype=np.int64)
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"{scores.shape[0]} rows of scores but targets of shape {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(f"targets must lie in [0, {scores.shape[1]}), got [{targets.min()}, {targets.max()}]")
    rows = np.arange(len(targets))
    own = scores[rows, targets][:, None]
    earlier = np.arange(scores.shape[1])[None, :] < targets[:, None]
    return 1 + np.sum(scores > own, axis=1) + np.sum((scores == own) & earlier, axis=1)


def best_positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """1-based rank of the best-ranked positive of each row; ``positives`` is a boolean mask like ``scores``.

    Example:
        >>> s = np.array([[0.9, 0.8, 0.7, 0.1]])
        >>> best_positive_ranks(s, np.array([[False, False, True, True]])).tolist()
        [3]
    """
    scores = _check_scores(scores, "scores")
    positives = np.asarray(positives, dtype=bool)
    if positives.shape != scores.shape:
        raise ValueError(f"positives mask of shape {positives.shape} for scores of shape {scores.shape}")
    has = positives.any(axis=1)
    if not has.all():
        raise ValueError(f"row {int(np.argmin(has))} has no positive candidate")
    best_score = np.where(positives, scores, -np.inf).max(axis=1)
    # first positive reaching the best score: the best-ranked one under the lower-index-first rule
    best = np.argmax(positives & (scores == best_score[:, None]), axis=1)
    return target_ranks(scores, best)


def topk_accuracy(scores: np.ndarray, targets: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose target ranks within the top ``k`` (``k`` clipped to the number of classes).

    Example:
        >>> topk_accuracy(np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]]), [1, 1], ks=(1, 2))
        {1: 0.5, 2: 1.0}
    """
    ranks = target_ranks(scores, targets)
    if not len(ranks):
        raise ValueError("no samples to score")
    n_classes = np.asarray(scores).shape[1]
    return {k: float(np.mean(ranks <= min(k, n_classes))) for k in ks}


def confusion_matrix(targets: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` counts; row = true class, column = predicted class.

    Example:
        >>> confusion_matrix([0, 0, 1], [0, 1, 1], 3).tolist()
        [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    """
    targets, preds = np.asarray(targets, np.int64), np.asarray(preds, np.int64)
    if targets.shape != preds.shape:
        raise ValueError(f"targets {targets.shape} and predictions {preds.shape} differ in shape")
    for name, arr in (("targets", targets), ("predictions", preds)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes})")
    return np.bincount(targets * num_classes + preds, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def mean_per_class_recall(targets: Sequence[int], preds: Sequence[int], num_classes: int | None = None) -> float:
    """Mean recall over the classes that have samples (classes without samples are left out).

    Example:
        >>> mean_per_class_recall([0, 0, 0, 1], [0, 0, 1, 1], num_classes=3)  # (2/3 + 1) / 2; class 2 left out
        0.8333333333333333
    """
    targets, preds = np.asarray(targets, np.int64), np.asarray(preds, np.int64)
    if not targets.size:
        raise ValueError("no samples to score")
    if num_classes is None:
        num_classes = int(max(targets.max(), preds.max())) + 1
    cm = confusion_matrix(targets, preds, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def classification_metrics(scores: np.ndarray, targets: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict:
    """``{"acc1", "acc5", "mean_per_class_recall"}`` (clip_benchmark's names) from ``scores [n, classes]``.

    Predictions are the top-ranked class (``np.argmax``: lowest index among equal scores).

    Example:
        >>> classification_metrics(np.eye(3), [0, 1, 1], ks=(1,))
        {'acc1': 0.6666666666666666, 'mean_per_class_recall': 0.75}
    """
    scores = _check_scores(scores, "scores")
    acc = topk_accuracy(scores, targets, ks)
    out = {f"acc{k}": v for k, v in acc.items()}
    out["mean_per_class_recall"] = mean_per_class_recall(targets, scores.argmax(axis=1), scores.shape[1])
    return out


def retrieval_ranks(image_features: np.ndarray, text_features: np.ndarray,
                    text_to_image: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(image_to_text ranks [n_images], text_to_image ranks [n_texts])`` of cosine-similarity retrieval.

    Features are used as given (normalise them for cosine similarity). ``text_to_image[t]`` is the
    image of caption ``t``; every image needs at least one caption. Image-to-text ranks are those of the
    best-ranked caption of the image. Scores are computed in row chunks, so large sets fit in memory.

    Example:
        >>> img = np.eye(2, dtype="float32"); txt = np.array([[1, 0], [0.6, 0.8], [0, 1]], "float32")
        >>> [r.tolist() for r in retrieval_ranks(img, txt, [0, 0, 1])]
        [[1, 1], [1, 2, 1]]
    """
    img = np.asarray(image_features, dtype=np.float32)
    txt = np.asarray(text_features, dtype=np.float32)
    t2i = np.asarray(text_to_image, dtype=np.int64)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"features must be [n, d] with the same d, got {img.shape} and {txt.shape}")
    if t2i.shape != (len(txt),):
        raise ValueError(f"text_to_image needs one entry per text ({len(txt)}), got shape {t2i.shape}")
    if not len(img) or not len(txt):
        raise ValueError("retrieval needs at least one image and one text")
    if t2i.min() < 0 or t2i.max() >= len(img):
        raise ValueError(f"text_to_image must lie in [0, {len(img)})")
    counts = np.bincount(t2i, minlength=len(img))
    if not counts.all():
        raise ValueError(f"image {int(np.argmin(counts))} has no caption")
    i2t = np.empty(len(img), np.int64)
    step = max(1, _CHUNK_CELLS // len(txt))
    for start in range(0, len(img), step):
        rows = np.arange(start, min(start + step, len(img)))
        i2t[rows] = best_positive_ranks(img[rows] @ txt.T, t2i[None, :] == rows[:, None])
    t2i_ranks = np.empty(len(txt), np.int64)
    step = max(1, _CHUNK_CELLS // len(img))
    for start in range(0, len(txt), step):
        stop = min(start + step, len(txt))
        t2i_ranks[start:stop] = target_ranks(txt[start:stop] @ img.T, t2i[start:stop])
    return i2t, t2i_ranks


def rank_summary(ranks: np.ndarray, prefix: str, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """``{prefix}_recall@k`` (fraction of ranks <= k), ``{prefix}_mean_rank`` and ``{prefix}_median_rank``.

    The median rank is rounded down, as open_clip's ``get_clip_metrics`` does.

    Example:
        >>> rank_summary(np.array([1, 2, 3, 10]), "r", ks=(1, 5))
        {'r_recall@1': 0.25, 'r_recall@5': 0.75, 'r_mean_rank': 4.0, 'r_median_rank': 2.0}
    """
    ranks = np.asarray(ranks)
    out = {f"{prefix}_recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    out[f"{prefix}_mean_rank"] = float(np.mean(ranks))
    out[f"{prefix}_median_rank"] = float(np.floor(np.median(ranks)))
    return out


def retrieval_metrics(image_features: np.ndarray, text_features: np.ndarray, text_to_image: Sequence[int],
                      ks: Sequence[int] = (1, 5, 10)) -> dict:
    """clip_benchmark's retrieval metrics plus mean/median ranks.

    ``image_retrieval_*`` is text-to-image (a caption retrieves its image; open_clip's
    ``text_to_image_R@k``); ``text_retrieval_*`` is image-to-text (open_clip's ``image_to_text_R@k``).

    Example:
        >>> m = retrieval_metrics(np.eye(2), np.eye(2), [0, 1], ks=(1,))
        >>> m["image_retrieval_recall@1"], m["text_retrieval_recall@1"]
        (1.0, 1.0)
    """
    i2t, t2i = retrieval_ranks(image_features, text_features, text_to_image)
    return {**rank_summary(t2i, "image_retrieval", ks), **rank_summary(i2t, "text_retrieval", ks)}


__all__ = ["best_positive_ranks", "classification_metrics", "confusion_matrix", "mean_per_class_recall",
           "rank_summary", "retrieval_metrics", "retrieval_ranks", "target_ranks", "topk_accuracy"]
