"""Caption generation for CoCa with open_clip's ``generate`` semantics, as one fixed-shape loop.

Token ids live in a static ``[rows, seq_len]`` buffer, and each step feeds the newest token through the
text tower and the decoder with key/value caches of the earlier ones (``coca_cache``), so the loop has
static shapes and compiles once per option set on JAX (``jax.jit`` around ``keras.ops.while_loop``); torch
runs the same loop eagerly. The image tokens are encoded and projected to keys/values once per call.

Beam search lives in ``coca_beam``; top-k / top-p sampling and greedy decoding here.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .coca_beam import beam_search
from .coca_cache import image_context, make_stepper, process_logits
from .layout import to_channels_last

GENERATION_TYPES = ("beam_search", "top_k", "top_p", "greedy")
SOT, EOT = 49406, 49407  # open_clip's defaults (the CLIP tokenizer's start / end of text)


def generate(model, images, text=None, seq_len: int = 30, max_seq_len: int = 77, temperature: float = 1.0,
             generation_type: str = "beam_search", top_p: float = 0.1, top_k: int = 1, pad_token_id: int | None = None,
             eos_token_id: int | None = None, sot_token_id: int | None = None, num_beams: int = 6,
             num_beam_groups: int = 3, min_seq_len: int = 5, repetition_penalty: float = 1.0,
             fixed_output_length: bool = False, seed: int = 0) -> np.ndarray:
    """Caption token ids ``[batch, length]`` (int32 numpy), as open_clip's ``CoCa.generate``.

    Rows start with ``sot_token_id`` and end with ``eos_token_id``, then ``pad_token_id`` up to the longest
    row (or up to ``seq_len`` with ``fixed_output_length``). ``generation_type``: ``"beam_search"``
    (``num_beams``, ``num_beam_groups``), ``"top_k"`` / ``"top_p"`` sampling (``temperature``; ``top_k=1``
    is greedy; ``seed`` fixes the draws for a backend) or ``"greedy"`` (``top_k`` with ``top_k=1``).
    ``min_seq_len`` forbids the end token before that many tokens; ``repetition_penalty`` divides the
    positive logits (and multiplies the negative ones) of tokens already present; sampling sees only the
    last ``max_seq_len`` tokens; ``text`` is an optional prompt for sampling. Greedy and beam search give
    open_clip's sequences; sampled ones follow each backend's random generator.

    Example:
        >>> ids = generate(model, images, num_beams=3, num_beam_groups=1)  # doctest: +SKIP
        >>> decode_captions(ids)  # doctest: +SKIP
        ['a cat sitting on a couch', ...]
    """
    images = _as_images(model, images)
    opts = _options(model, text, seq_len, max_seq_len, temperature, generation_type, top_p, top_k, pad_token_id,
                    eos_token_id, sot_token_id, num_beams, num_beam_groups, min_seq_len, repetition_penalty,
                    fixed_output_length)
    prompt = _prompt(text, images.shape[0], opts)
    run = _compiled(model, opts)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise ValueError(f"generate: seed must be an integer in [0, 2**31), got {seed!r}")
    tokens, length = run(images, prompt, np.asarray(seed, dtype="int32"))
    tokens = np.asarray(ops.convert_to_numpy(tokens))[:, :int(ops.convert_to_numpy(length))]
    if opts["beam"] and fixed_output_length and tokens.shape[1] < seq_len:
        tokens = np.pad(tokens, ((0, 0), (0, seq_len - tokens.shape[1])), constant_values=opts["pad"])
    return tokens.astype(np.int32)


# ----------------------------------------------------------------------------- checks
def _as_images(model, images):
    x = np.asarray(ops.convert_to_numpy(images), dtype="float32")
    return to_channels_last(x, model.image_size)  # [N, H, W, 3] or [N, 3, H, W]; other shapes raise


def _options(model, text, seq_len, max_seq_len, temperature, generation_type, top_p, top_k, pad, eos, sot,
             num_beams, num_beam_groups, min_seq_len, repetition_penalty, fixed_output_length) -> dict:
    def integer(name, value, low):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"generate: {name} must be an integer >= {low}, got {value!r}")
        return int(value)

    if generation_type not in GENERATION_TYPES:
        raise ValueError(f"generate: generation_type must be one of {', '.join(GENERATION_TYPES)}, "
                         f"got {generation_type!r}")
    seq_len, max_seq_len = integer("seq_len", seq_len, 2), integer("max_seq_len", max_seq_len, 1)
    min_seq_len = integer("min_seq_len", min_seq_len, 0)
    if seq_len <= min_seq_len:
        raise ValueError(f"generate: seq_len ({seq_len}) must be larger than min_seq_len ({min_seq_len})")
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"generate: temperature must be > 0, got {temperature!r}")
    if not (isinstance(repetition_penalty, (int, float)) and repetition_penalty > 0):
        raise ValueError(f"generate: repetition_penalty must be > 0, got {repetition_penalty!r}")
    beam = generation_type == "beam_search"
    if generation_type == "greedy":
        generation_type, top_k = "top_k", 1
    if generation_type == "top_k":
        top_k = integer("top_k", top_k, 1)
    if generation_type == "top_p" and not (isinstance(top_p, (int, float)) and 0 <= top_p <= 1):
        raise ValueError(f"generate: top_p must be in [0, 1], got {top_p!r}")
    group = 1
    if beam:
        num_beams, num_beam_groups = integer("num_beams", num_beams, 2), integer("num_beam_groups", num_beam_groups, 1)
        if num_beam_groups > num_beams or num_beams % num_beam_groups:
            raise ValueError(f"generate: num_beam_groups ({num_beam_groups}) must divide num_beams ({num_beams})")
        group = num_beams // num_beam_groups
        if text is not None:
            raise ValueError("generate: a text prompt works with top_k/top_p sampling, not beam_search")
    vocab = model.text_decoder.vocab_size
    ids = {"sot": SOT if sot is None else sot, "eos": EOT if eos is None else eos, "pad": 0 if pad is None else pad}
    for name, value in ids.items():
        if not isinstance(value, (int, np.integer)) or not 0 <= value < vocab:
            raise ValueError(f"generate: {name}_token_id must be a token id in [0, {vocab}), got {value!r}")
    # The longest text the towers see: beam search feeds the whole sequence, sampling the last max_seq_len.
    window = seq_len - 1 if beam else min(max_seq_len, seq_len - 1)
    text_cfg = model.config.text_cfg
    decoder_ctx = model.text_decoder.config.context_length
    for what, ctx in (("text tower", text_cfg.context_length), ("text decoder", decoder_ctx)):
        if window > ctx:
            hint = "seq_len" if beam else "seq_len or max_seq_len"
            raise ValueError(f"generate: seq_len={seq_len}, max_seq_len={max_seq_len} feed up to {window} tokens to "
                             f"the {what}, whose context_length is {ctx}; lower {hint}")
    if not getattr(text_cfg, "causal", True):
        raise ValueError("generate needs a causal text tower (text_cfg.no_causal_mask is set)")
    if getattr(text_cfg, "pooler", None) == "cls_pooler":  # its tokens leave out the first position
        raise ValueError("generate does not support a Hugging Face text tower with hf_pooler_type='cls_pooler'")
    return {"beam": beam, "type": generation_type, "seq_len": seq_len, "window": window, "min_len": min_seq_len,
            "temperature": float(temperature), "top_k": top_k, "top_p": float(top_p), "group": group,
            "penalty": float(repetition_penalty), "fixed": bool(fixed_output_length), **ids}


def _prompt(text, batch: int, opts) -> np.ndarray:
    if text is None:
        return np.full((batch, 1), opts["sot"], dtype="int32")
    ids = np.asarray(ops.convert_to_numpy(text))
    ids = ids[None] if ids.ndim == 1 else ids
    if ids.ndim != 2 or ids.shape[0] != batch or ids.shape[1] < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"generate: text must be integer ids [batch={batch}, length >= 1] or [length], "
                         f"got {ids.dtype} of shape {ids.shape}")
    if ids.shape[1] >= opts["seq_len"]:
        raise ValueError(f"generate: the prompt has {ids.shape[1]} tokens; seq_len ({opts['seq_len']}) must be longer")
    return ids.astype("int32")


# ----------------------------------------------------------------------------- compiled entry
_COMPILED_KEPT = 8  # compiled generate loops kept per model (one per distinct set of options)


def _compiled(model, opts):
    cache = model.__dict__.setdefault("_anyclip_generate", {})
    key = tuple(sorted(opts.items()))
    if key in cache:
        cache[key] = cache.pop(key)  # most recently used last
        return cache[key]
    while len(cache) >= _COMPILED_KEPT:
        cache.pop(next(iter(cache)))
    loop = beam_search if opts["beam"] else _sample

    def fn(images, prompt, seed):
        return loop(model, images, prompt, seed, opts)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        variables = list(model.variables)

        def pure(values, images, prompt, seed):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(images, prompt, seed)
        jitted = jax.jit(pure)
        run = lambda images, prompt, seed: jitted([v.value for v in variables], images, prompt, seed)  # noqa: E731
    elif backend == "torch":
        import torch

        def run(images, prompt, seed):
            with torch.no_grad():
                return fn(ops.convert_to_tensor(images), ops.convert_to_tensor(prompt), seed)
    else:
        def run(images, prompt, seed):
            return fn(ops.convert_to_tensor(images), ops.convert_to_tensor(prompt), seed)
    cache[key] = run
    return run


def _filter(logits, opts):
    """transformers' TopKLogitsWarper / TopPLogitsWarper (filtered logits are -inf)."""
    if opts["type"] == "top_k":
        k = min(opts["top_k"], logits.shape[-1])
        kth = ops.top_k(logits, k)[0][:, -1:]
        return ops.where(logits < kth, -np.inf, logits)
    order = ops.argsort(logits, axis=-1)  # ascending, as the warper sorts
    ascending = ops.take_along_axis(logits, order, axis=-1)
    cumulative = ops.cumsum(ops.softmax(ascending, axis=-1), axis=-1)
    drop = cumulative <= 1 - opts["top_p"]
    drop = ops.concatenate([drop[:, :-1], ops.zeros_like(drop[:, -1:])], axis=1)  # keep at least the best one
    drop = ops.take_along_axis(drop, ops.argsort(order, axis=-1), axis=-1)
    return ops.where(drop, -np.inf, logits)


def _draw(logits, seed, step, generator):
    """One token per row from ``softmax(logits)``; reproducible for a seed on each backend."""
    if keras.backend.backend() == "jax":
        import jax
        key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
        return ops.cast(jax.random.categorical(key, logits, axis=-1), "int32")
    return ops.cast(keras.random.categorical(logits, 1, seed=generator)[:, 0], "int32")


# ----------------------------------------------------------------------------- top-k / top-p / greedy
def _sample(model, images, prompt, seed, opts):
    batch, start_len = ops.shape(prompt)[0], ops.shape(prompt)[1]
    size, window, eos, pad = opts["seq_len"], opts["window"], opts["eos"], opts["pad"]
    slide = window < size - 1  # open_clip feeds only the last max_seq_len tokens
    stepper = make_stepper(model, image_context(model, images, 1), batch, opts, slide)
    buf = ops.concatenate([ops.cast(prompt, "int32"), ops.full((batch, size - start_len), pad, "int32")], axis=1)
    greedy = opts["top_k"] == 1 and opts["type"] == "top_k"
    generator = None if greedy or keras.backend.backend() == "jax" else keras.random.SeedGenerator(int(seed))
    state = stepper.init()
    if start_len > 1 and state:  # the prompt's tokens but the last go into the caches
        state = ops.fori_loop(1, start_len, lambda i, s: stepper.step(s, buf, i)[1], state)

    def body(buf, n, state, stop):
        last = ops.take(buf, n - 1, axis=1)
        finished = ops.logical_or(last == eos, last == pad)
        all_finished = ops.all(finished)
        first = ops.maximum(n - window, 0) if slide else 0
        x = ops.slice(buf, (0, first), (batch, window))
        cur_len = n - first

        def step():
            logits, new_state = stepper.step(state, buf, n)
            logits = _filter(process_logits(logits, x, cur_len, opts), opts)
            if greedy:
                token = ops.cast(ops.argmax(logits, axis=-1), "int32")
            else:
                token = _draw(logits / opts["temperature"], seed, n, generator)
            return ops.where(cur_len + 1 == size, eos, token), new_state

        token, state = ops.cond(all_finished, lambda: (ops.full((batch,), pad, "int32"), state), step)
        token = ops.where(finished, pad, token)
        grow = ops.logical_or(ops.logical_not(all_finished), opts["fixed"])
        buf = ops.where(grow, ops.slice_update(buf, (0, n), token[:, None]), buf)
        n = n + ops.cast(grow, "int32")
        return buf, n, state, ops.logical_or(ops.logical_not(grow), n >= size)

    n0 = ops.convert_to_tensor(start_len, "int32")
    buf, n, _, _ = ops.while_loop(lambda *s: ops.logical_not(s[-1]), body,
                                  (buf, n0, state, ops.convert_to_tensor(False)))
    return buf, n
