"""Random model inputs shared by the tests (numpy only: safe to import in any backend's worker)."""

import numpy as np


def images_like(h, w=None, n=2, seed=0):
    """``n`` standard-normal channels-last images of ``h`` x ``w`` (square when ``w`` is None)."""
    return np.random.default_rng(seed).standard_normal((n, h, w or h, 3)).astype(np.float32)


def clip_batch(cfg, n, seed=0, first_eot=3):
    """``(images, tokens)`` for the native CLIP config ``cfg``: ``n`` standard-normal images and token ids with
    one end-of-text token per row (the largest id, pooled by argmax) at a random position from ``first_eot``."""
    rng = np.random.default_rng(seed)
    size, ctx, vocab = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], cfg["text_cfg"]["vocab_size"]
    images = rng.standard_normal((n, size, size, 3)).astype(np.float32)
    tokens = rng.integers(1, vocab - 1, size=(n, ctx)).astype(np.int32)
    tokens[np.arange(n), rng.integers(first_eot, ctx, size=n)] = vocab - 1
    return images, tokens
