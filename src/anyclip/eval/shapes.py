"""Zero-shot accuracy on the synthetic shapes tasks: shape and colour (on ``test``) and every colour-shape
pair (on the held-out pairs of ``test_heldout``), with images rendered in memory.

The tasks, class names and prompt ensembles are those of :func:`anyclip.data.shapes.zero_shot_tasks`;
the images are samples ``0 .. num_samples-1`` of the task's split, so two models are always scored on
the same pictures.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.shapes import ShapesConfig, ShapesDataset, zero_shot_tasks
from .metrics import classification_metrics


def shapes_zero_shot(model, tokenizer, config: ShapesConfig | None = None, *, num_samples: int = 1000,
                     preprocess: Callable | None = None, tasks=("shape", "colour", "combination"),
                     batch_size: int = 128) -> dict:
    """``{task: {"acc1", "acc5", "mean_per_class_recall"}}`` for the shapes zero-shot tasks.

    ``config`` is the :class:`~anyclip.data.shapes.ShapesConfig` the model was trained on (its held-out
    pairs make up ``combination``); ``preprocess`` defaults to the model's eval transform.

    Example:
        >>> model, _, preprocess = anyclip.create_model_and_transforms("anyclip-shapes", "v1")  # doctest: +SKIP
        >>> shapes_zero_shot(model, anyclip.get_tokenizer("anyclip-shapes"))["shape"]["acc1"]  # doctest: +SKIP
        0.99
    """
    import keras

    from ..encode import encode_image_stream
    from ..transforms import image_transform, numpy_output
    from ..zero_shot import build_zero_shot_classifier
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    config = ShapesConfig() if config is None else config
    every = zero_shot_tasks(config)
    if unknown := [t for t in tasks if t not in every]:
        raise ValueError(f"unknown shapes task {unknown[0]!r}; choose from {', '.join(every)}")
    preprocess = numpy_output(image_transform(model.preprocess_cfg) if preprocess is None else preprocess)
    features = {}  # split -> (normalised image features, labels)
    results = {}
    scale = float(np.exp(np.asarray(keras.ops.convert_to_numpy(model.logit_scale), dtype=np.float64)))
    for name in tasks:
        task = every[name]
        if task.split not in features:
            data, labels = ShapesDataset(config, task.split, num_samples), []

            def rendered(data=data, labels=labels):
                for i in range(num_samples):
                    image, _, label = data[i]
                    labels.append(label)
                    yield str(i), preprocess(image), None
            feats = encode_image_stream(model, rendered(), batch_size=batch_size)
            features[task.split] = (feats.features, labels)
        feats, labels = features[task.split]
        classifier = np.asarray(build_zero_shot_classifier(model, tokenizer, task.classnames, task.templates,
                                                           use_tqdm=False), dtype=np.float32)
        targets = np.array([task.target(lab) for lab in labels])
        results[name] = classification_metrics(scale * (feats @ classifier), targets, ks=(1, 5))
    return results


__all__ = ["shapes_zero_shot"]
