"""Where a training step's time goes on JAX: forward + backward of a whole model, each tower and each block piece,
against the same computation in torch (open_clip's model and torch's kernels), in one process, interleaved.

No data loading and no optimiser (``bench_train.py`` measures whole runs): random inputs already in memory.

* ``model``     the CLIP loss's gradient w.r.t. every weight (anyclip's ``value_and_grad``, XLA-compiled) vs
                open_clip's forward, ``ClipLoss`` and ``backward()``
* ``image``, ``text``   the gradient of ``sum(features ** 2)`` of one tower
* pieces of a block, forward + backward at the model's shapes: the MLP (two matmuls and exact GELU), GELU alone,
  layer norm (anyclip's Keras layer), image attention and causal text attention (anyclip's
  ``dot_product_attention`` vs torch SDPA)

Prints seconds (towers) or ms (pieces) per call and the ratio torch / JAX (above 1: JAX faster).

    python bench/bench_train_parts.py                     # ViT-B-32, batch 32 (README training row)
    python bench/bench_train_parts.py --batch 8 --repeats 3 --skip-model
"""

import argparse
import os

import numpy as np
from timing import interleaved, load_average

os.environ["KERAS_BACKEND"] = "jax"


def _pieces(batch, rng):
    """``{name: (jax_fn, torch_fn)}`` of ViT-B-32 block pieces, forward + backward."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    from anyclip.layers.backend import dot_product_attention
    from anyclip.layers.norm import layer_norm

    def pair(jax_loss, torch_loss, *arrays):
        jax_args = [jnp.asarray(a) for a in arrays]
        grad = jax.jit(jax.grad(jax_loss, argnums=tuple(range(len(arrays)))))
        torch_args = [torch.from_numpy(a).requires_grad_() for a in arrays]

        def torch_step():
            for t in torch_args:
                t.grad = None
            torch_loss(*torch_args).backward()
        return lambda: jax.block_until_ready(grad(*jax_args)), torch_step

    tokens, width = batch * 50, 768
    x = rng.standard_normal((tokens, width)).astype(np.float32)
    w1 = (rng.standard_normal((width, 4 * width)) * 0.03).astype(np.float32)
    w2 = (rng.standard_normal((4 * width, width)) * 0.03).astype(np.float32)
    hidden = rng.standard_normal((tokens, 4 * width)).astype(np.float32)
    norm = layer_norm("ln")
    norm.build((None, width))
    gamma, beta = np.ones(width, np.float32), np.zeros(width, np.float32)
    image_q = rng.standard_normal((batch, 50, 12, 64)).astype(np.float32)
    text_q = rng.standard_normal((batch, 77, 8, 64)).astype(np.float32)
    return {
        f"MLP ({tokens} x {width})": pair(
            lambda x, a, b: jnp.sum(jax.nn.gelu(x @ a, approximate=False) @ b),
            lambda x, a, b: (F.gelu(x @ a) @ b).sum(), x, w1, w2),
        f"GELU ({tokens} x {4 * width})": pair(
            lambda h: jnp.sum(jax.nn.gelu(h, approximate=False) ** 2), lambda h: (F.gelu(h) ** 2).sum(), hidden),
        f"layer norm ({tokens} x {width})": pair(
            lambda x, g, b: jnp.sum(norm.stateless_call([g, b], [], x)[0] ** 2),
            lambda x, g, b: (F.layer_norm(x, (width,), g, b, 1e-5) ** 2).sum(), x, gamma, beta),
        f"attention ({batch} x 50, 12 heads)": pair(
            lambda q: jnp.sum(dot_product_attention(q, q, q) ** 2),
            lambda q: (F.scaled_dot_product_attention(*(q.transpose(1, 2),) * 3) ** 2).sum(), image_q),
        f"causal attention ({batch} x 77, 8 heads)": pair(
            lambda q: jnp.sum(dot_product_attention(q, q, q, causal=True) ** 2),
            lambda q: (F.scaled_dot_product_attention(*(q.transpose(1, 2),) * 3, is_causal=True) ** 2).sum(),
            text_q),
    }


def _towers(batch, rng, whole_model):
    """``{name: (jax_fn, torch_fn)}`` of ViT-B-32 gradients: the model's CLIP loss, then each tower."""
    import jax
    import open_clip
    import torch
    from keras import ops

    import anyclip
    from anyclip.train import clip_loss
    from anyclip.train.step import value_and_grad

    images = rng.standard_normal((batch, 224, 224, 3)).astype(np.float32)
    texts = rng.integers(1, 49000, (batch, 77)).astype(np.int32)
    model = anyclip.create_model("ViT-B-32", seed=0)
    reference = open_clip.create_model("ViT-B-32")
    reference.train()
    loss = open_clip.ClipLoss()
    images_j, texts_j = jax.numpy.asarray(images), jax.numpy.asarray(texts)
    images_t, texts_t = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(texts.astype(np.int64))
    weights = model.trainable_variables

    def ours(fn, *args):
        grad = value_and_grad(fn, weights)
        return lambda: jax.block_until_ready(grad(*args)[2])

    def theirs(fn):
        def step():
            reference.zero_grad()
            fn().backward()
        return step

    cases = {}
    if whole_model:
        cases["model (CLIP loss)"] = (
            ours(lambda i, t: (clip_loss(**model({"images": i, "texts": t}, training=True)), None), images_j, texts_j),
            theirs(lambda: loss(*reference(images_t, texts_t))))
    cases["image tower"] = (ours(lambda i: (ops.sum(model.visual(i, training=True) ** 2), None), images_j),
                            theirs(lambda: (reference.encode_image(images_t) ** 2).sum()))
    cases["text tower"] = (ours(lambda t: (ops.sum(model.text(t, training=True) ** 2), None), texts_j),
                           theirs(lambda: (reference.encode_text(texts_t) ** 2).sum()))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=4, help="rounds for the towers (pieces: 4x as many)")
    parser.add_argument("--skip-model", action="store_true", help="only the towers and pieces")
    parser.add_argument("--skip-towers", action="store_true", help="only the pieces")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    if not args.skip_towers:
        towers = _towers(args.batch, rng, not args.skip_model)
        times = interleaved([fn for pair in towers.values() for fn in pair], args.repeats)
        rows += [(name, times[2 * i], times[2 * i + 1], "s", 1.0) for i, name in enumerate(towers)]
    pieces = _pieces(args.batch, rng)
    times = interleaved([fn for pair in pieces.values() for fn in pair], 4 * args.repeats)
    rows += [(name, times[2 * i], times[2 * i + 1], "ms", 1e3) for i, name in enumerate(pieces)]
    print(f"ViT-B-32 forward + backward, batch {args.batch}: JAX (anyclip) vs torch (open_clip / torch kernels)")
    for name, ours, theirs, unit, factor in rows:
        print(f"  {name:38s} JAX {ours * factor:8.2f} {unit:2s}  torch {theirs * factor:8.2f} {unit:2s}  "
              f"torch/JAX {theirs / ours:.2f}x")
    print(f"load average {load_average():.1f}")


if __name__ == "__main__":
    main()
