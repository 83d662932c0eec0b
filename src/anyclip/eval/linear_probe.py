"""Linear probe: scikit-learn logistic regression on frozen, normalised image features.

OpenAI CLIP's recipe (README: ``LogisticRegression(C=0.316, max_iter=1000)`` on image features; paper
A.3: the regularisation chosen on a validation split). The C sweep:

1. ``C_GRID`` = 97 values log-spaced from 1e-6 to 1e6 (8 per decade);
2. coarse pass on every 16th value (1e-6, 1e-4, ..., 1e6), scored by validation top-1;
3. refine around the best with steps of 8, 4, 2, 1 grid points (clip_benchmark's search); equal
   top-1 is decided by the lower validation log-loss, then by the smaller C;
4. refit with the chosen C on train + validation and score the test split.

Without a validation split, a stratified (when every class has two or more samples) ``val_fraction`` of
train is held out, seeded. Passing one ``c_values`` entry skips the sweep. Features of each split are
extracted once and, with ``feature_cache``, kept on disk (see :class:`~anyclip.eval.features.FeatureCache`).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Sequence

import numpy as np

from ..data.common import DatasetError
from ..data.labelled import LabelledImages
from .features import FeatureCache, Features, encode_labelled, model_identity
from .metrics import classification_metrics, confusion_matrix
from .report import EvalResult

C_GRID = np.logspace(-6, 6, 97)


def _fit(x, y, c, max_iter, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(C=float(c), max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _scores(clf, x, num_classes: int) -> np.ndarray:
    """Decision scores for all ``num_classes`` (classes unseen in training get -inf)."""
    raw = clf.decision_function(x)
    if raw.ndim == 1:  # binary: one logit for classes_[1]
        raw = np.stack([np.zeros_like(raw), raw], axis=1)
    out = np.full((len(x), num_classes), -np.inf)
    out[:, clf.classes_] = raw
    return out


def _val_scores(clf, x, y) -> tuple[float, float]:
    """``(top-1 accuracy, mean log-loss)`` on a validation split."""
    proba = clf.predict_proba(x)
    column = {int(c): i for i, c in enumerate(clf.classes_)}
    p_true = np.array([proba[i, column[int(t)]] if int(t) in column else 0.0 for i, t in enumerate(y)])
    top1 = float(np.mean(clf.classes_[proba.argmax(axis=1)] == y))
    return top1, float(np.mean(-np.log(np.maximum(p_true, 1e-15))))


def sweep_c(train_x, train_y, val_x, val_y, *, c_values: Sequence[float] | None = None, max_iter: int = 1000,
            seed: int = 0) -> tuple[float, list[tuple[float, float, float]]]:
    """``(best C, [(C, validation top-1, validation log-loss), ...] in the order tried)``.

    ``c_values=None`` runs the coarse-then-refine search over :data:`C_GRID`; a list is tried in full.

    Example:
        >>> best_c, tried = sweep_c(train_x, train_y, val_x, val_y)  # doctest: +SKIP
    """
    tried: dict[int, tuple[float, float]] = {}
    grid = C_GRID if c_values is None else np.asarray(c_values, dtype=float)

    def score(i):
        if i not in tried:
            tried[i] = _val_scores(_fit(train_x, train_y, grid[i], max_iter, seed), val_x, val_y)
        acc, loss = tried[i]
        return acc, -loss, -i  # best top-1; then lowest log-loss; then the smaller C

    def best_of(indices):
        return max(set(indices), key=score)

    if c_values is not None:
        peak = best_of(range(len(grid)))
    else:
        peak = best_of(range(0, len(grid), 16))
        for span in (8, 4, 2, 1):
            peak = best_of([max(peak - span, 0), peak, min(peak + span, len(grid) - 1)])
    return float(grid[peak]), [(float(grid[i]), acc, loss) for i, (acc, loss) in tried.items()]


def _split_val(x, y, fraction: float, seed: int):
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    n_val = max(1, int(round(fraction * len(y))))
    if n_val >= len(y):
        raise DatasetError(f"the train split has {len(y)} sample(s): too few to hold out a validation split")
    counts = np.bincount(y)
    counts = counts[counts > 0]
    stratify = y if counts.min() >= 2 and len(counts) <= n_val <= len(y) - len(counts) else None
    from sklearn.model_selection import train_test_split
    idx_train, idx_val = train_test_split(np.arange(len(y)), test_size=n_val, random_state=seed, shuffle=True,
                                          stratify=stratify)
    return np.sort(idx_train), np.sort(idx_val)


def fit_linear_probe(train_x, train_y, test_x, test_y, *, val_x=None, val_y=None, val_fraction: float = 0.2,
                     c_values: Sequence[float] | None = None, max_iter: int = 1000, seed: int = 0,
                     num_classes: int | None = None) -> tuple[dict, dict, np.ndarray]:
    """``(metrics, details, confusion)`` of a logistic-regression probe on given features.

    ``metrics``: ``{"lp_acc1", "lp_acc5", "lp_mean_per_class_recall"}`` (clip_benchmark's names) on the
    test features; ``details``: the chosen ``C``, its validation top-1, every C tried, split sizes.

    Example:
        >>> metrics, details, _ = fit_linear_probe(xtr, ytr, xte, yte, c_values=[0.316])  # doctest: +SKIP
    """
    train_x, test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
    train_y, test_y = np.asarray(train_y, np.int64), np.asarray(test_y, np.int64)
    if len(np.unique(train_y)) < 2:
        raise DatasetError("the linear probe needs training samples of at least two classes")
    if not len(test_y):
        raise DatasetError("the test split has no samples")
    all_y = [train_y, test_y] + ([np.asarray(val_y, np.int64)] if val_y is not None else [])
    num_classes = num_classes or int(max(int(y.max()) for y in all_y if len(y))) + 1
    single = c_values is not None and len(c_values) == 1
    if single:
        best_c, tried, fit_x, fit_y, n_val = float(c_values[0]), [], train_x, train_y, 0
        if val_x is not None:
            fit_x, fit_y = np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y])
            n_val = len(val_y)
    else:
        if val_x is None:
            idx_train, idx_val = _split_val(train_x, train_y, val_fraction, seed)
            tx, ty, vx, vy = train_x[idx_train], train_y[idx_train], train_x[idx_val], train_y[idx_val]
            fit_x, fit_y = train_x, train_y
        else:
            tx, ty = train_x, train_y
            vx, vy = np.asarray(val_x, np.float32), np.asarray(val_y, np.int64)
            fit_x, fit_y = np.concatenate([tx, vx]), np.concatenate([ty, vy])
        if len(np.unique(ty)) < 2:
            raise DatasetError("after holding out the validation split, training has fewer than two classes")
        best_c, tried = sweep_c(tx, ty, vx, vy, c_values=c_values, max_iter=max_iter, seed=seed)
        n_val = len(vy)
    clf = _fit(fit_x, fit_y, best_c, max_iter, seed)
    scores = _scores(clf, test_x, num_classes)
    m = classification_metrics(np.where(np.isfinite(scores), scores, np.finfo(np.float64).min), test_y, (1, 5))
    metrics = {f"lp_{k}": v for k, v in m.items()}
    chosen = [t for t in tried if t[0] == best_c]
    details = {"C": best_c, "val_acc1": chosen[0][1] if chosen else None,
               "sweep": [{"C": c, "val_acc1": a, "val_log_loss": loss} for c, a, loss in tried],
               "num_train": int(len(fit_y) - n_val), "num_val": int(n_val), "num_test": int(len(test_y)),
               "num_classes": num_classes, "max_iter": max_iter, "seed": seed,
               "converged": bool(np.max(clf.n_iter_) < max_iter)}
    return metrics, details, confusion_matrix(test_y, scores.argmax(axis=1), num_classes)


def split_features(model, dataset: LabelledImages, split: str, *, feature_cache: str | os.PathLike | None = None,
                   model_id: str | None = None, preprocess: Callable | None = None, batch_size: int = 64,
                   workers: int = 4, progress: bool | None = None) -> tuple[Features, bool]:
    """``(features, from_cache)`` of one split, read from ``feature_cache`` when present, else extracted
    (and then cached).

    Example:
        >>> feats, cached = split_features(model, train_set, "train", feature_cache="features/")  # doctest: +SKIP
    """
    cache = None
    if feature_cache is not None:
        from ..transforms import image_transform
        cfg = preprocess.cfg if hasattr(preprocess, "cfg") else image_transform(model.preprocess_cfg).cfg
        cache = FeatureCache(feature_cache, model_identity(model, model_id), dataset, split, cfg)
        hit = cache.load()
        if hit is not None:
            return hit, True
    feats = encode_labelled(model, dataset, preprocess, batch_size=batch_size, workers=workers,
                            progress=progress, desc=f"{split} images")
    if cache is not None:
        cache.save(feats)
    return feats, False


def linear_probe(model, train: LabelledImages, test: LabelledImages, *, val: LabelledImages | None = None,
                 feature_cache: str | os.PathLike | None = None, model_id: str | None = None,
                 val_fraction: float = 0.2, c_values: Sequence[float] | None = None, max_iter: int = 1000,
                 seed: int = 0, preprocess: Callable | None = None, batch_size: int = 64, workers: int = 4,
                 progress: bool | None = None) -> EvalResult:
    """Linear-probe top-1/top-5/mean per-class recall of ``model``'s frozen features (see module doc).

    ``feature_cache``: a folder where split features are kept (``model_id`` names the weights when
    the model has no pretrained tag or checkpoint). ``result.details["cached_splits"]`` lists the
    splits read from the cache.

    Example:
        >>> from anyclip.data.labelled import read_image_folder
        >>> result = linear_probe(model, read_image_folder("pets/train"), read_image_folder("pets/test"),
        ...                       feature_cache="features/")  # doctest: +SKIP
        >>> result.metrics["lp_acc1"]  # doctest: +SKIP
        0.91
    """
    opts = dict(feature_cache=feature_cache, model_id=model_id, preprocess=preprocess, batch_size=batch_size,
                workers=workers, progress=progress)
    splits = {"train": train, "test": test, **({"val": val} if val is not None else {})}
    feats, cached = {}, []
    for name, data in splits.items():
        feats[name], hit = split_features(model, data, name, **opts)
        if hit:
            cached.append(name)
        if not len(feats[name].features):
            raise DatasetError(f"{data.name}: no image of the {name} split could be read")
    classnames = train.classnames
    for name, data in splits.items():
        if classnames is not None and data.classnames is not None and tuple(data.classnames) != tuple(classnames):
            raise DatasetError(f"the {name} split ({data.name}) has other classes than the train split "
                               f"({len(data.classnames)} vs {len(classnames)}); read it with the train "
                               f"split's classnames so that class ids agree")
    classnames = classnames or test.classnames
    num_classes = max([len(classnames) if classnames else 0] + [int(f.labels.max()) + 1 for f in feats.values()])
    v = feats.get("val")
    metrics, details, confusion = fit_linear_probe(
        feats["train"].features, feats["train"].labels, feats["test"].features, feats["test"].labels,
        val_x=None if v is None else v.features, val_y=None if v is None else v.labels, val_fraction=val_fraction,
        c_values=c_values, max_iter=max_iter, seed=seed, num_classes=num_classes)
    details.update({"cached_splits": cached, "normalized": True,
                    "skipped_train": len(feats["train"].skipped) + (len(v.skipped) if v is not None else 0)})
    return EvalResult("linear_probe", metrics, len(feats["test"].features), feats["test"].skipped, confusion,
                      classnames, details)


__all__ = ["C_GRID", "fit_linear_probe", "linear_probe", "split_features", "sweep_c"]
