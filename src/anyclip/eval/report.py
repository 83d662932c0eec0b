"""Evaluation results: the result object, clip_benchmark-style JSON and the confusion-matrix PNG.

The JSON file has clip_benchmark's layout, ``{"dataset", "model", "pretrained", "task", "metrics",
"language"}``, so its tools (``clip_benchmark build``) read it, plus what clip_benchmark does not
record: ``num_samples`` (images scored), ``num_skipped`` and ``skipped`` (each unreadable image with
its file and reason) and task details under ``details``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.loader import SkippedImage

TASKS = ("zeroshot_classification", "zeroshot_retrieval", "linear_probe")


@dataclasses.dataclass
class EvalResult:
    """What an evaluation measured.

    ``metrics``: the numbers (clip_benchmark's key names); ``num_samples``: images scored;
    ``skipped``: images left out because they could not be read; ``confusion``: ``[true, predicted]``
    counts (classification); ``classnames``; ``details``: task specifics (e.g. the chosen C).

    Example:
        >>> result = zero_shot_classification(model, tokenizer, data)  # doctest: +SKIP
        >>> result.metrics["acc1"]  # doctest: +SKIP
        0.6175
    """

    task: str
    metrics: dict
    num_samples: int
    skipped: list[SkippedImage] = dataclasses.field(default_factory=list)
    confusion: np.ndarray | None = None
    classnames: Sequence[str] | None = None
    details: dict = dataclasses.field(default_factory=dict)

    def to_json_dict(self, *, dataset: str, model: str | None, pretrained: str | None,
                     language: str = "en") -> dict:
        """The JSON record: clip_benchmark's keys first, then ``num_samples``, ``skipped``, ``details``."""
        return {
            "dataset": dataset, "model": model, "pretrained": pretrained, "task": self.task,
            "metrics": _plain(self.metrics), "language": language,
            "num_samples": self.num_samples, "num_skipped": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped], "details": _plain(self.details),
        }


def _plain(value):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results_json(path: str | os.PathLike, result: EvalResult, *, dataset: str, model: str | None,
                       pretrained: str | None, language: str = "en") -> Path:
    """Write ``result`` as clip_benchmark-style JSON, atomically (a reader never sees half a file).

    Example:
        >>> write_results_json("results.json", result, dataset="pets/val", model="ViT-B-32",
        ...                    pretrained="laion2b_s34b_b79k")  # doctest: +SKIP
    """
    from ..atomic import atomic_write
    path = Path(path)
    record = result.to_json_dict(dataset=dataset, model=model, pretrained=pretrained, language=language)
    text = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def save_confusion_png(path: str | os.PathLike, confusion: np.ndarray, classnames: Sequence[str] | None = None,
                       *, title: str = "", max_labels: int = 40) -> Path:
    """Draw ``confusion [true, predicted]`` as a PNG: colour = row-normalised rate, counts when it fits.

    Class names label the axes up to ``max_labels`` classes (beyond that the ticks are left off).
    Uses matplotlib's Agg canvas directly (no pyplot, no global state); written atomically.

    Example:
        >>> save_confusion_png("confusion.png", result.confusion, result.classnames)  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..atomic import atomic_write
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or not cm.shape[0]:
        raise ValueError(f"confusion matrix must be square and non-empty, got shape {cm.shape}")
    n = cm.shape[0]
    support = cm.sum(axis=1, keepdims=True)
    rates = np.divide(cm, support, out=np.zeros(cm.shape, float), where=support > 0)
    side = float(min(max(4.0, 0.45 * n + 2.5), 24.0))
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if n <= max_labels:
        names = list(classnames) if classnames is not None else [str(i) for i in range(n)]
        names = [s if len(s) <= 24 else s[:23] + "…" for s in names]
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


def format_summary(result: EvalResult, dataset: str) -> str:
    """A few readable lines: task, dataset, sample counts and each metric.

    Example:
        >>> print(format_summary(result, "pets/val"))  # doctest: +SKIP
        zeroshot_classification on pets/val: 200 images
          acc1                     0.8150
    """
    unit = "images" if result.task != "zeroshot_retrieval" else (
        f"images, {result.details.get('num_texts', '?')} captions")
    lines = [f"{result.task} on {dataset}: {result.num_samples} {unit}"]
    width = max([len(k) for k in result.metrics] + [10])
    for key, value in result.metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {shown}")
    if "C" in result.details:
        val = result.details.get("val_acc1")
        note = f", validation top-1 {val:.4f}" if val is not None else ", given (no sweep)"
        lines.append(f"  (logistic regression C = {result.details['C']:.4g}{note})")
    if result.skipped:
        lines.append(f"  skipped {len(result.skipped)} unreadable image(s), e.g. {result.skipped[0].name}: "
                     f"{result.skipped[0].reason}")
    return "\n".join(lines)


__all__ = ["EvalResult", "TASKS", "format_summary", "save_confusion_png", "write_results_json"]
