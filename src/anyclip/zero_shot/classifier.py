"""Build zero-shot classifiers and turn image features into class probabilities."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from keras import ops

from ..progress import progress_bar


def build_zero_shot_classifier(model, tokenizer, classnames: Sequence[str],
                               templates: Sequence[str | Callable[[str], str]],
                               num_classes_per_batch: int | None = 10, device="cpu",
                               use_tqdm: bool = False) -> np.ndarray:
    """Class embeddings ``[embed_dim, num_classes]``: the normalised mean of each class's prompt embeddings.

    ``templates`` are ``str.format`` strings (``"a photo of a {}."``) or callables. Classes are embedded
    ``num_classes_per_batch`` at a time. Same result as open_clip's function; ``device`` is accepted for its
    signature and has no effect (the result is a numpy array; the model runs where its variables live).

    Example:
        >>> weights = build_zero_shot_classifier(model, tokenizer, ["cat", "dog"], ["a photo of a {}."])  # doctest: +SKIP
        >>> weights.shape  # doctest: +SKIP
        (512, 2)
    """
    if isinstance(classnames, str) or not len(classnames):
        raise ValueError("classnames must be a non-empty sequence of strings")
    if isinstance(templates, str) or not len(templates):
        raise ValueError("templates must be a non-empty sequence of format strings or callables")
    for i, c in enumerate(classnames):
        if not isinstance(c, str):
            raise TypeError(f"classnames[{i}] is {type(c).__name__}, not str")
    per_batch = num_classes_per_batch or len(classnames)
    batches = [classnames[i:i + per_batch] for i in range(0, len(classnames), per_batch)]
    columns = []
    with progress_bar(len(batches), "class embeddings", "batch", progress=bool(use_tqdm)) as bar:
        for batch in batches:
            texts = [t.format(c) if isinstance(t, str) else t(c) for c in batch for t in templates]
            emb = np.asarray(ops.convert_to_numpy(model.encode_text(tokenizer(texts), normalize=True)))
            emb = emb.reshape(len(batch), len(templates), -1).mean(axis=1)
            emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
            columns.append(emb.T)
            bar.update(1)
    return np.concatenate(columns, axis=1).astype(np.float32)


def probabilities(logits: np.ndarray, activation: str = "softmax", bias: float = 0.0) -> np.ndarray:
    """Class probabilities from ``logits = scale * cos`` ``[n_images, n_classes]``.

    ``"softmax"`` (CLIP) normalises over the classes; ``"sigmoid"`` (SigLIP) is ``sigmoid(logits + bias)``
    for each class on its own (rows need not sum to 1).

    Example:
        >>> probabilities(np.array([[0.0, 0.0]])).tolist(), probabilities(np.array([[0.0]]), "sigmoid").tolist()
        ([[0.5, 0.5]], [[0.5]])
    """
    logits = np.asarray(logits, dtype=np.float64)
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-(logits + bias)))).astype(np.float32)
    if activation != "softmax":
        raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def default_activation(model) -> str:
    """``"sigmoid"`` for models trained with the sigmoid loss (they have a ``logit_bias``: SigLIP), else
    ``"softmax"``.

    Example:
        >>> default_activation(anyclip.create_model("ViT-B-16-SigLIP"))  # doctest: +SKIP
        'sigmoid'
    """
    return "sigmoid" if getattr(model, "logit_bias", None) is not None else "softmax"


def zero_shot_probs(model, images, texts_or_classifier, activation: str = "softmax") -> np.ndarray:
    """Probabilities ``[n_images, n_classes]`` from preprocessed images and token ids or class weights.

    ``activation="softmax"`` is CLIP's ``softmax(scale * cos)``; ``"sigmoid"`` is SigLIP's
    ``sigmoid(scale * cos + bias)``; ``"auto"`` picks :func:`default_activation`.

    Example:
        >>> probs = zero_shot_probs(model, images, tokenizer(["a cat", "a dog"]))  # doctest: +SKIP
    """
    image_features = np.asarray(ops.convert_to_numpy(model.encode_image(images, normalize=True)))
    weights = np.asarray(texts_or_classifier)
    if np.issubdtype(weights.dtype, np.integer):
        weights = np.asarray(ops.convert_to_numpy(model.encode_text(weights, normalize=True))).T
    return features_probs(model, image_features, weights, activation)


def features_probs(model, image_features, class_weights, activation: str = "softmax") -> np.ndarray:
    """Probabilities from normalised image features ``[n, d]`` and class weights ``[d, k]`` with the model's
    logit scale (and bias, for ``"sigmoid"``); ``activation`` as :func:`zero_shot_probs`.

    Example:
        >>> probs = features_probs(model, image_features, classifier, activation="auto")  # doctest: +SKIP
    """
    if activation == "auto":
        activation = default_activation(model)
    scale = float(np.exp(ops.convert_to_numpy(model.logit_scale)))
    bias = float(ops.convert_to_numpy(model.logit_bias)) if model.logit_bias is not None else 0.0
    return probabilities(scale * np.asarray(image_features) @ np.asarray(class_weights), activation, bias)
