"""How caption generation gets next-token logits: one token at a time with key/value caches, or a window;
and open_clip's logit processors (minimum length, repetition penalty) applied to them.

Both steppers are pure functions of tensors (for ``keras.ops.while_loop``): ``init()`` makes the state,
``step(state, buf, n)`` returns float32 logits ``[rows, vocab]`` for the token after ``buf[:, n - 1]`` and
the new state, ``reorder(state, rows)`` follows beam search's choice of rows.

:class:`CachedStepper` runs only the newest token through the text tower and the decoder, attending to
cached keys and values of the earlier ones: the same sums as a full forward pass, over one position
instead of all of them. :class:`WindowStepper` reruns the whole window each step; generation uses it when
open_clip's ``max_seq_len`` window slides (the positions of every token then change).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from ..layers.attention import attention


def make_stepper(model, context, rows: int, opts, slide: bool):
    """Cached one-token steps for the native text tower; a rerun window when the window slides, and for HF
    towers (bidirectional: each new token changes the earlier ones' states, as in open_clip's full reruns)."""
    from ..towers.openai.text_transformer import TextTransformer
    if isinstance(model.text, TextTransformer) and not slide:
        return CachedStepper(model, context, rows, opts["seq_len"])
    return WindowStepper(model, context, opts["window"], slide)


def image_context(model, images, repeats: int):
    """The decoder's per-layer keys/values of the image tokens, each image's repeated ``repeats`` times."""
    _, image_embs = model.visual.forward_tokens(images)
    kv = model.text_decoder.context_kv(image_embs)
    if repeats > 1:  # beam b of image i is row i * repeats + b
        kv = [tuple(ops.repeat(t, repeats, axis=0) for t in pair) for pair in kv]
    return kv


def process_logits(logits, window, length, opts):
    """open_clip's logit processors: no end token before ``min_len`` tokens, then the repetition penalty.

    ``window[:, :length]`` are the tokens generated so far (the model's input).
    """
    vocab = logits.shape[-1]
    is_eos = ops.arange(vocab, dtype="int32") == opts["eos"]
    logits = ops.where(ops.logical_and(length < opts["min_len"], is_eos)[None], -np.inf, logits)
    if opts["penalty"] != 1.0:
        rows, width = window.shape
        used = ops.where(ops.arange(width, dtype="int32")[None] < length, window, vocab)  # unused -> column vocab
        index = ops.stack([ops.repeat(ops.arange(rows, dtype="int32"), width), ops.reshape(used, (-1,))], axis=1)
        seen = ops.scatter(index, ops.ones((rows * width,), "int32"), (rows, vocab + 1))[:, :vocab] > 0
        p = opts["penalty"]
        logits = ops.where(seen, ops.where(logits < 0, logits * p, logits / p), logits)
    return logits


class WindowStepper:
    """Logits from the text tower and decoder over ``buf[:, first:first + window]`` (no state)."""

    def __init__(self, model, context, window: int, slide: bool):
        self.model, self.context, self.window, self.slide = model, context, window, slide

    def init(self):
        return ()

    def step(self, state, buf, n):
        first = ops.maximum(n - self.window, 0) if self.slide else 0
        x = ops.slice(buf, (0, first), (ops.shape(buf)[0], self.window))
        pad = getattr(self.model.text, "pad_token_id", None)
        if pad is not None:  # a bidirectional (HF) tower: the positions not generated yet are masked as padding
            x = ops.where(ops.arange(self.window, dtype="int32")[None] < n - first, x, pad)
        _, tokens = self.model.text.forward_tokens(x, with_cls=False)
        hidden = ops.take(self.model.text_decoder.hidden(tokens, self.context), n - 1 - first, axis=1)
        return ops.cast(self.model.text_decoder.project(hidden), "float32"), state

    def reorder(self, state, rows):
        return state


class CachedStepper:
    """Logits for one new token per step; the text tower's and the decoder's self-attention keys and values
    of the earlier tokens are kept in ``[rows, size, heads, head_dim]`` caches.

    Needs the native causal text tower (``TextTransformer``).
    """

    def __init__(self, model, context, rows: int, size: int):
        self.model, self.context, self.rows, self.size = model, context, rows, size
        self.text, self.decoder = model.text, model.text_decoder
        self.dtype = self.text.token_embedding.compute_dtype

    def _empty(self, blocks):
        return tuple((ops.zeros((self.rows, self.size, b.attn.heads, b.attn.head_dim), self.dtype),) * 2
                     for b in blocks)

    def init(self):
        return self._empty(self.text.transformer.resblocks), self._empty(self.decoder.transformer.resblocks)

    def step(self, state, buf, n):
        text_cache, decoder_cache = state
        pos = n - 1
        cfg = self.text.config
        token = ops.take(buf, pos, axis=1)[:, None]
        x = self.text.token_embedding(token)
        x = x + ops.cast(ops.take(self.text.positional_embedding, pos, axis=0), x.dtype)
        slots = ops.arange(self.size, dtype="int32")
        seen = slots <= pos  # causal: the new token sees the cached ones and itself
        valid = ops.broadcast_to(seen[None], (self.rows, self.size))
        if cfg.embed_cls:  # open_clip's CoCa mask: key j > 0 hidden where token j - 1 is padding
            previous = ops.concatenate([ops.ones_like(buf[:, :1]) * (cfg.pad_id + 1), buf[:, :-1]], axis=1)
            valid = ops.logical_and(valid, ops.logical_or(slots[None] == 0, previous != cfg.pad_id))
        x, text_cache = _blocks(self.text.transformer.resblocks, x, text_cache, pos, valid[:, None, None, :])
        if not cfg.embed_cls:
            x = self.text.ln_final(x)
        mask = ops.broadcast_to(seen[None, None, None, :], (self.rows, 1, 1, self.size))
        new_cache = []
        for block, cross, kv, cache in zip(self.decoder.transformer.resblocks, self.decoder.cross_attn,
                                           self.context, decoder_cache):
            x, cache = _block(block, x, cache, pos, mask)
            x = cross(x, kv=kv)
            new_cache.append(cache)
        logits = self.decoder.project(x[:, 0])
        return ops.cast(logits, "float32"), (text_cache, tuple(new_cache))

    def reorder(self, state, rows):
        return tuple(tuple(tuple(ops.take(t, rows, axis=0) for t in kv) for kv in part) for part in state)


def _blocks(blocks, x, caches, pos, mask):
    out = []
    for block, cache in zip(blocks, caches):
        x, cache = _block(block, x, cache, pos, mask)
        out.append(cache)
    return x, tuple(out)


def _block(block, x, cache, pos, mask):
    """One ``ResidualBlock`` on the newest token ``x [rows, 1, width]``, its key/value written at ``pos``."""
    attn = block.attn
    rows = ops.shape(x)[0]
    qkv = ops.reshape(attn.in_proj(block.ln_1(x)), (rows, 1, 3, attn.heads, attn.head_dim))
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    keys = ops.slice_update(cache[0], (0, pos, 0, 0), ops.cast(k, cache[0].dtype))
    values = ops.slice_update(cache[1], (0, pos, 0, 0), ops.cast(v, cache[1].dtype))
    h = attention(q, keys, values, mask=mask)
    h = attn.out_proj(ops.reshape(h, (rows, 1, attn.width)))
    x = x + (block.ls_1(h) if block.ls_1 is not None else h)
    h = block.mlp(block.ln_2(x))
    return x + (block.ls_2(h) if block.ls_2 is not None else h), (keys, values)
