"""Zero-shot classification of a labelled image set: top-1, top-5, mean per-class recall, confusion.

Same computation as open_clip's ``zero_shot_eval`` / clip_benchmark: class embeddings from prompt
templates (:func:`anyclip.build_zero_shot_classifier`), normalised image features, logits
``exp(logit_scale) * cos`` (open_clip uses a fixed 100; a positive scale never changes a ranking), and
the ranking rules of :mod:`anyclip.eval.metrics`. Images that cannot be read are skipped and listed in
the result; the metrics cover the images that were scored.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..cli_args import prompt_template
from ..data.common import DatasetError, read_text_list
from ..data.labelled import LabelledImages
from .features import encode_labelled
from .metrics import classification_metrics, confusion_matrix
from .report import EvalResult

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def read_templates(spec: str | os.PathLike | Sequence[str] | None, classnames: Sequence[str] | None = None,
                   dataset_folder: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Prompt templates: ``"imagenet"`` (OpenAI's 80), ``"simple"`` (their 7), ``"default"``
    (``"a photo of a {}."``), a file (one per line, or a JSON list), or a list of strings.

    Templates use ``{}`` or clip_benchmark's ``{c}`` for the class name. With ``spec=None``: a
    ``zeroshot_classification_templates.txt`` in ``dataset_folder`` if there is one, else the 80
    ImageNet templates for the ImageNet classnames, else ``"default"``.

    Example:
        >>> read_templates(["itap of a {c}."])
        ('itap of a {}.',)
        >>> len(read_templates("imagenet"))
        80
    """
    from ..data.labelled import TEMPLATES_FILE
    from ..zero_shot import (
        IMAGENET_CLASSNAMES,
        OPENAI_IMAGENET_TEMPLATES,
        SIMPLE_IMAGENET_TEMPLATES,
    )
    named = {"imagenet": OPENAI_IMAGENET_TEMPLATES, "openai": OPENAI_IMAGENET_TEMPLATES,
             "simple": SIMPLE_IMAGENET_TEMPLATES, "default": DEFAULT_TEMPLATES}
    if spec is None:
        candidate = Path(dataset_folder) / TEMPLATES_FILE if dataset_folder is not None else None
        if candidate is not None and candidate.is_file():
            spec = candidate
        elif classnames is not None and tuple(classnames) == tuple(IMAGENET_CLASSNAMES):
            spec = "imagenet"
        else:
            spec = "default"
    if isinstance(spec, str) and spec in named and not os.path.exists(spec):
        return tuple(named[spec])
    if isinstance(spec, (str, os.PathLike)):
        entries = [(f"{spec} line {line}", t) for line, t in read_text_list(spec, "templates")]
    else:
        if not len(spec):
            raise DatasetError("templates: the list is empty")
        entries = [(f"templates[{i}]", t) for i, t in enumerate(spec)]
    out = []
    for where, template in entries:
        if not isinstance(template, str):
            raise DatasetError(f"{where}: template is {type(template).__name__}, not a string")
        try:
            out.append(prompt_template(template))
        except argparse.ArgumentTypeError as e:
            raise DatasetError(f"{where}: {e}") from None
    return tuple(out)


def zero_shot_classification(model, tokenizer, dataset: LabelledImages, *, classnames: Sequence[str] | None = None,
                             templates: str | Sequence[str] | None = None, classifier: np.ndarray | None = None,
                             preprocess: Callable | None = None, batch_size: int = 64, workers: int = 4,
                             progress: bool | None = None) -> EvalResult:
    """Zero-shot accuracy of ``model`` on ``dataset``; ``result.metrics`` is
    ``{"acc1", "acc5", "mean_per_class_recall"}``.

    ``classnames`` default to the dataset's; ``templates`` as :func:`read_templates`. Pass a
    ``classifier [embed_dim, classes]`` (from :func:`anyclip.build_zero_shot_classifier`) to reuse one,
    e.g. during training. Top-5 is clipped to the number of classes when there are fewer than 5.

    Example:
        >>> from anyclip.data.labelled import read_image_folder
        >>> result = zero_shot_classification(model, tokenizer, read_image_folder("pets/val"))  # doctest: +SKIP
        >>> result.metrics  # doctest: +SKIP
        {'acc1': 0.82, 'acc5': 0.99, 'mean_per_class_recall': 0.81}
    """
    from keras import ops

    from ..zero_shot import build_zero_shot_classifier
    classnames = tuple(classnames) if classnames is not None else dataset.classnames
    if classnames is None:
        raise DatasetError(f"{dataset.name}: zero-shot classification needs class names (the labels are only "
                           f"ids); give classnames")
    if classifier is None:
        folder = None
        if dataset.kind != "items":  # a dataset read from disk may ship its templates file
            folder = Path(dataset.name) if os.path.isdir(dataset.name) else Path(dataset.name).parent
        prompts = read_templates(templates, classnames, folder)
        classifier = build_zero_shot_classifier(model, tokenizer, classnames, prompts, use_tqdm=bool(progress))
    classifier = np.asarray(classifier, dtype=np.float32)
    if classifier.ndim != 2 or classifier.shape[1] != len(classnames):
        raise ValueError(f"classifier must be [embed_dim, {len(classnames)}], got shape {classifier.shape}")
    feats = encode_labelled(model, dataset, preprocess, batch_size=batch_size, workers=workers, progress=progress)
    if not len(feats.features):
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in feats.skipped[:3])
        raise DatasetError(f"{dataset.name}: no image could be scored ({len(feats.skipped)} unreadable"
                           f"{': ' + reasons if reasons else ''})")
    if feats.labels.max() >= len(classnames):
        bad = int(np.argmax(feats.labels >= len(classnames)))
        raise DatasetError(f"{dataset.name}: class id {int(feats.labels[bad])} has no class name (only "
                           f"{len(classnames)} classnames)")
    scale = float(np.exp(np.asarray(ops.convert_to_numpy(model.logit_scale), dtype=np.float64)))
    logits = scale * (feats.features @ classifier)
    metrics = classification_metrics(logits, feats.labels, ks=(1, 5))
    confusion = confusion_matrix(feats.labels, logits.argmax(axis=1), len(classnames))
    details = {"num_classes": len(classnames), "top5_k": min(5, len(classnames)),
               "classes_without_samples": int(np.sum(confusion.sum(axis=1) == 0))}
    return EvalResult("zeroshot_classification", metrics, len(feats.features), feats.skipped, confusion,
                      classnames, details)


__all__ = ["DEFAULT_TEMPLATES", "read_templates", "zero_shot_classification"]
