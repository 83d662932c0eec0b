"""Softmax attention alone, as the towers call it ([batch, tokens, heads, head_dim], float32): JAX forms vs torch SDPA.

Times, in one process and interleaved: ``jax.nn.dot_product_attention`` (what ``keras.ops.dot_product_attention``
runs on JAX), the same computed with one einsum per product on the token-major layout, with q, k, v first
transposed to head-major and plain matmuls, and anyclip's (``anyclip.layers.backend.dot_product_attention``:
head-major, softmax normalised after the product with v); against ``torch.nn.functional.scaled_dot_product_attention``.
Prints ms per call, each form's ratio to torch and its largest difference from torch's output.

    python bench/bench_attention.py                       # B/16 (197 tokens), B/32 (50) and text (77) shapes
    python bench/bench_attention.py --shapes 8x197 --heads 12 --head-dim 64
"""

import argparse
import os

import numpy as np
from timing import interleaved, load_average


def forms(d):
    import jax
    import jax.numpy as jnp

    def einsum(q):
        scores = jnp.einsum("btnh,bsnh->bnts", q, q) * d ** -0.5
        return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(scores, -1), q)

    def head_major(q):
        qh = q.transpose(0, 2, 1, 3)
        scores = (qh @ qh.swapaxes(-1, -2)) * d ** -0.5
        return (jax.nn.softmax(scores, -1) @ qh).transpose(0, 2, 1, 3)

    os.environ["KERAS_BACKEND"] = "jax"  # anyclip's JAX form, whatever the environment says
    from anyclip.layers.backend import dot_product_attention

    return {"jax.nn.dot_product_attention": jax.jit(lambda q: jax.nn.dot_product_attention(q, q, q)),
            "einsum, token-major": jax.jit(einsum), "transpose + matmul": jax.jit(head_major),
            "anyclip": jax.jit(lambda q: dot_product_attention(q, q, q))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="8x197,8x50,16x77", help="BATCHxTOKENS,... (default: %(default)s)")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    import jax.numpy as jnp
    import torch

    torch.set_grad_enabled(False)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for shape in args.shapes.split(","):
        batch, tokens = (int(v) for v in shape.split("x"))
        x = np.random.default_rng(0).standard_normal((batch, tokens, args.heads, args.head_dim)).astype(np.float32)
        xj, xt = jnp.asarray(x), torch.from_numpy(x)

        def ref():
            return sdpa(*(xt.transpose(1, 2),) * 3).transpose(1, 2)

        named = forms(args.head_dim)
        times = interleaved([ref] + [lambda f=f: f(xj).block_until_ready() for f in named.values()], args.repeats)
        expected = ref().numpy()
        print(f"batch {batch}, {tokens} tokens: torch SDPA {times[0] * 1e3:.1f} ms")
        for (name, fn), t in zip(named.items(), times[1:]):
            err = float(np.abs(np.asarray(fn(xj)) - expected).max())
            print(f"  {name:30s} {t * 1e3:7.1f} ms  torch/this {times[0] / t:.2f}x  max diff {err:.1e}")
    print(f"load average {load_average():.1f}")


if __name__ == "__main__":
    main()
