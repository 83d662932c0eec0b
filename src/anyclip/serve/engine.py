"""What the service computes: tokens and pixels in, batched embeddings, zero-shot probabilities and search out.

:class:`Engine` holds the model, its preprocess and tokenizer, an optional :class:`~anyclip.embed.index.SearchIndex`
and one :class:`~anyclip.serve.batcher.Batcher` per encoder. Every model call goes through a batcher, and both
batchers share one worker thread, so the model runs one batch at a time.

Example:
    >>> engine = Engine(model, preprocess, tokenizer, index=None, max_batch_size=32)  # doctest: +SKIP
    >>> await engine.start()  # doctest: +SKIP
    >>> (await engine.embed_texts(["a red square"])).shape  # doctest: +SKIP
    (1, 128)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Sequence

import numpy as np

from ..encode import encode_batch
from ..transforms.host import load_image, numpy_output
from ..transforms.limits import DEFAULT_MAX_PIXELS
from .batcher import Batcher

DEFAULT_TEMPLATES = ("a photo of a {}.",)  # anyclip classify's default prompt
WARM_TEXT_WIDTHS = (8, 16, 24, 32)  # token positions the text encoder is compiled for at start


class Engine:
    """The model behind the routes (see the module docstring); :meth:`report_to` connects metrics."""

    def __init__(self, model, preprocess, tokenizer, index=None, *, model_name: str = "model",
                 max_batch_size: int = 32, max_wait_ms: float = 5.0, max_queue: int = 1024,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.model, self.tokenizer, self.index, self.model_name = model, tokenizer, index, model_name
        self.preprocess = numpy_output(preprocess)
        self.max_pixels = max_pixels
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="anyclip-model")
        common = dict(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                      executor=self._thread)
        self.text = Batcher(lambda b: encode_batch(model.encode_text, b, len(b)), name="text", **common)
        self.image = Batcher(lambda b: encode_batch(model.encode_image, b, len(b)), name="image", **common)
        # SearchIndex.search returns the row records themselves: their identity gives the row number back
        self._row_of = {id(row): i for i, row in enumerate(index.rows)} if index is not None else {}

    def report_to(self, metrics) -> None:
        """Send both batchers' batch sizes, queue depths and drops to ``metrics`` (a ServeMetrics)."""
        for batcher in (self.text, self.image):
            batcher.on_batch, batcher.on_queue = metrics.observe_batch, metrics.set_queue_depth
            batcher.on_drop = metrics.count_drop

    def warm_up(self, text_widths=WARM_TEXT_WIDTHS) -> None:
        """Compile every batch bucket of both encoders (blocking; call before serving).

        The text encoder runs only the token positions a batch needs (rounded up to 8), so texts are
        compiled at each of ``text_widths`` too (queries up to about 30 tokens); longer ones compile when
        they first come.
        """
        for width in text_widths:
            tokens = self.tokens([" ".join(["a"] * max(width - 2, 1))])[0]
            if width <= len(tokens):
                self.text.warm_up(tokens)
        from PIL import Image
        self.image.warm_up(self.preprocess(Image.new("RGB", (64, 64))))

    async def start(self) -> None:
        """Start both batchers on the running loop."""
        await self.text.start()
        await self.image.start()

    async def stop(self) -> None:
        """Stop both batchers (:meth:`start` may run them again)."""
        await self.text.stop()
        await self.image.stop()

    def close(self) -> None:
        """Let the model thread go once the current batch ends."""
        self._thread.shutdown(wait=False, cancel_futures=True)

    def tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids ``[n, context_length]`` of ``texts``."""
        return np.asarray(self.tokenizer(list(texts)))

    def pixels(self, data: bytes) -> np.ndarray:
        """The preprocessed image of encoded bytes (``ImageLoadError`` for bad or oversized images)."""
        return self.preprocess(load_image(data, self.max_pixels).convert("RGB"))

    async def embed_texts(self, texts: Sequence[str]):
        """Normalised embeddings ``[n, d]`` of ``texts``, each a batcher item."""
        rows = await asyncio.gather(*(self.text.submit(t) for t in self.tokens(texts)))
        return np.stack(rows)

    async def embed_images(self, images: Sequence[np.ndarray]):
        """Normalised embeddings ``[n, d]`` of preprocessed images, each a batcher item."""
        rows = await asyncio.gather(*(self.image.submit(p) for p in images))
        return np.stack(rows)

    async def classify(self, images: Sequence[np.ndarray], labels: Sequence[str],
                       templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
        """Zero-shot probabilities ``[n_images, n_labels]``, as ``anyclip classify`` computes them."""
        from ..zero_shot import default_activation, features_probs
        prompts = [t.format(label) for label in labels for t in templates]
        text, image = await asyncio.gather(self.embed_texts(prompts), self.embed_images(images))
        weights = text.reshape(len(labels), len(templates), -1).mean(axis=1)
        weights = weights / np.linalg.norm(weights, axis=1, keepdims=True)
        return features_probs(self.model, image, weights.T.astype(np.float32), default_activation(self.model))

    def search(self, query: np.ndarray, k: int) -> list[dict]:
        """The index's top ``k`` for one query embedding: ``[{"row", "score", **record}]``."""
        scores, hits = self.index.search(query[None], k)
        return [{"row": self._row_of[id(hit)], "score": float(score), **hit} for score, hit in zip(scores[0], hits[0])]

    def thumbnail(self, row: int, size: int = 160) -> bytes | None:
        """A JPEG (longest side ``size``) of the index's image at ``row``; None when that row has no image."""
        import io
        if self.index is None or not 0 <= row < len(self.index.rows) or not self.index.rows[row].get("path"):
            return None
        image = load_image(self.index.rows[row]["path"], self.max_pixels).convert("RGB")
        image.thumbnail((size, size))
        if max(image.size) < size:  # small pictures (the shapes are 64 px) are shown larger, crisp
            scale = size // max(image.size)
            if scale > 1:
                from PIL import Image
                image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        return out.getvalue()


__all__ = ["DEFAULT_TEMPLATES", "Engine"]
