"""Shared model helpers of ``anyclip.layers``: ``attention`` (float16 on JAX's CPU backend), ``call_layer``,
the dense / LayerNorm builders, a length known only at run time in the mT5 and M2M100 towers, and the factory's
error for a shipped config that fails to load.

References are independent: a numpy softmax attention, and transformers' own T5 bucket function.
"""

import json

import keras
import numpy as np
import pytest
from backend_runner import start_in_backend
from keras import ops

import anyclip
import anyclip.layers.transformer
from anyclip.layers.attention import attention
from anyclip.layers.dense import dense
from anyclip.layers.norm import layer_norm
from anyclip.layers.transformer import call_layer

JAX = keras.backend.backend() == "jax"
COCA_TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8,
                   "attentional_pool": True, "attn_pooler_heads": 2, "attn_pooler_queries": 5, "output_tokens": True},
    "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1,
                 "embed_cls": True, "output_tokens": True},
    "multimodal_cfg": {"context_length": 8, "width": 32, "heads": 2, "layers": 1, "vocab_size": 100},
}


def _numpy_attention(q, k, v, mask=None, bias=None, scale=None, causal=False):
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if bias is not None:
        logits = logits + bias
    allowed = np.ones(logits.shape, bool)
    if mask is not None:
        allowed &= np.broadcast_to(mask, logits.shape)
    if causal:
        allowed &= np.tril(np.ones(logits.shape[-2:], bool))
    logits = np.where(allowed, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", weights, v)


def _qkv(seed=0, batch=2, tokens=5, keys=7, heads=3, dim=8):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, tokens, heads, dim)).astype(np.float32),
            rng.standard_normal((batch, keys, heads, dim)).astype(np.float32),
            rng.standard_normal((batch, keys, heads, dim)).astype(np.float32))


OPTIONS = {
    "plain": {},
    "mask": {"mask": np.array([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]},
    "bias_scale": {"bias": np.random.default_rng(1).standard_normal((1, 3, 5, 7)).astype(np.float32), "scale": 1.0},
    "causal": {"causal": True},
    "mask_causal": {"mask": np.array([[True] * 5, [True] * 2 + [False] + [True] * 2])[:, None, None, :],
                    "causal": True},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_attention_float32_and_float16_match_numpy(name):
    opts = OPTIONS[name]
    q, k, v = _qkv(keys=5 if "causal" in name else 7)
    ref = _numpy_attention(q, k, v, **opts)
    out32 = attention(q, k, v, **opts)
    assert out32.dtype == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(out32), ref, atol=1e-5)
    half = [ops.cast(t, "float16") for t in (q, k, v)]
    opts16 = {key: ops.cast(val, "float16") if key == "bias" else val for key, val in opts.items()}
    out16 = attention(*half, **opts16)
    assert keras.backend.standardize_dtype(out16.dtype) == "float16"
    np.testing.assert_allclose(ops.convert_to_numpy(out16).astype(np.float32), ops.convert_to_numpy(out32),
                               atol=1e-2)


def attention_worker(arrays, params):
    """Subprocess entry (``backend_runner``): each case's attention in float32 and float16 under this backend."""
    out = {}
    for name, opts in OPTIONS.items():
        q, k, v = _qkv(keys=5 if "causal" in name else 7)
        out[f"{name}/values"] = ops.convert_to_numpy(attention(q, k, v, **opts))
        half = [ops.cast(t, "float16") for t in (q, k, v)]
        opts16 = {key: ops.cast(val, "float16") if key == "bias" else val for key, val in opts.items()}
        out[f"{name}/float16"] = ops.convert_to_numpy(ops.cast(attention(*half, **opts16), "float32"))
    return out


def test_attention_on_torch_matches_numpy():
    # the torch backend runs keras.ops.dot_product_attention through torch's SDPA; mask + causal must keep both
    out = start_in_backend("torch", "test_layers_mends:attention_worker", {}).result(timeout=300)
    for name, opts in OPTIONS.items():
        ref = _numpy_attention(*_qkv(keys=5 if "causal" in name else 7), **opts)
        np.testing.assert_allclose(out[f"{name}/values"], ref, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(out[f"{name}/float16"], ref, atol=1e-2, err_msg=f"{name} float16")


@pytest.mark.skipif(not JAX, reason="the closed-form gradients are JAX's CPU forms")
@pytest.mark.parametrize("name", [*OPTIONS, "all_masked_row", "bias_3d"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_jax_cpu_attention_gradient_matches_jax_autodiff(name, dtype):
    # anyclip.layers.jax_cpu.attention has a hand-written gradient; the reference is JAX's own attention
    # (jax.nn.dot_product_attention) differentiated by JAX.
    import jax
    import jax.numpy as jnp

    from anyclip.layers import jax_cpu
    opts = {"all_masked_row": {"mask": np.array([[False] * 7, [True] * 7])[:, None, None, :]},
            "bias_3d": {"bias": np.random.default_rng(2).standard_normal((3, 5, 7)).astype(np.float32)}}.get(name)
    opts = dict(OPTIONS[name] if opts is None else opts)
    arrays = [jnp.asarray(t, dtype) for t in _qkv(keys=5 if "causal" in name else 7)]
    if "bias" in opts:
        arrays.append(jnp.asarray(opts.pop("bias"), dtype))
    weights = jnp.asarray(np.random.default_rng(3).standard_normal(arrays[0].shape), jnp.float32)
    mask, scale, causal = opts.get("mask"), opts.get("scale"), opts.get("causal", False)

    def ours(*a):
        out = jax_cpu.attention(*a[:3], mask, a[3] if len(a) > 3 else None, scale, causal)
        return jnp.sum(weights * out.astype(jnp.float32))

    def reference(*a):
        bias = None if len(a) < 4 else a[3] if a[3].ndim == 4 else a[3][None]
        out = jax.nn.dot_product_attention(*a[:3], bias=bias, mask=mask, scale=scale, is_causal=causal)
        return jnp.sum(weights * out.astype(jnp.float32))

    argnums = tuple(range(len(arrays)))
    got = jax.jit(jax.grad(ours, argnums))(*arrays)
    want = jax.jit(jax.grad(reference, argnums))(*arrays)
    tolerance = 1e-5 if dtype == "float32" else 3e-2  # of each gradient's scale
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
        np.testing.assert_allclose(g, w, atol=tolerance * np.abs(w).max(), rtol=0)


@pytest.mark.skipif(not JAX, reason="the closed-form gradients are JAX's CPU forms")
@pytest.mark.parametrize("policy, shape", [("float32", (4, 7, 16)), ("mixed_bfloat16", (3, 16))])
def test_layer_norm_values_and_gradient_match_keras(policy, shape):
    # anyclip's LayerNorm runs Keras' formula with a hand-written gradient on JAX's CPU backend: the forward is
    # Keras' LayerNormalization bit for bit, the gradient Keras' differentiated by JAX.
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(0)
    ours, keras_norm = layer_norm("ours", policy), keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy)
    ours.build(shape)
    keras_norm.build(shape)
    weights = [jnp.asarray(rng.standard_normal(16).astype(np.float32)) for _ in range(2)]
    x = jnp.asarray(rng.standard_normal(shape).astype(np.float32) * 3 + 1)

    def run(layer):
        def loss(w, x):
            return jnp.sum(jnp.sin(layer.stateless_call(w, [], x)[0].astype(jnp.float32)))
        return jax.jit(lambda w, x: (layer.stateless_call(w, [], x)[0], jax.grad(loss, argnums=(0, 1))(w, x)))(
            weights, x)

    (y, grads), (y_ref, grads_ref) = run(ours), run(keras_norm)
    assert y.dtype == y_ref.dtype and bool((y == y_ref).all())
    for g, w in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_ref)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-6 * float(jnp.abs(w).max()), rtol=0)


@pytest.mark.skipif(not JAX, reason="the float16 workaround is for JAX's CPU backend")
def test_attention_float16_compiles_and_differentiates_on_jax():
    # XLA:CPU refuses a float16 dot with float32 accumulation, which jax's attention asks for under jit
    # and in its gradient; ``attention`` runs that one op in float32 there.
    import jax
    q, k, v = (ops.cast(t, "float16") for t in _qkv())
    out = jax.jit(lambda a, b, c: attention(a, b, c, causal=False))(q, k, v)
    assert out.dtype == np.float16
    grad = jax.grad(lambda a: ops.sum(ops.cast(attention(a, k, v), "float32")))(q)
    assert grad.dtype == np.float16 and np.isfinite(np.asarray(grad, np.float32)).all()


@pytest.mark.skipif(not JAX, reason="the float16 workaround is for JAX's CPU backend")
def test_coca_float16_runs_compiled_with_gradients_on_jax():
    import jax
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    texts = np.random.default_rng(1).integers(1, 100, size=(2, 8)).astype(np.int32)
    models = {p: anyclip.create_model("coca_base", precision=p, seed=3, **COCA_TINY) for p in ("fp32", "fp16")}
    logits = {}
    for precision, model in models.items():
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def loss(weights, model=model, fixed=fixed):
            out, _ = model.stateless_call(weights, fixed, {"images": images, "texts": texts})
            return ops.mean(ops.cast(out["logits"], "float32")), out["logits"]

        (value, logits[precision]), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable)
        assert np.isfinite(float(value))
        assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)
    assert {str(v.dtype) for v in jax.tree_util.tree_leaves(grads)} == {"float32"}  # float32 master weights
    scale = np.abs(np.asarray(logits["fp32"])).max()
    np.testing.assert_allclose(np.asarray(logits["fp16"], np.float32), np.asarray(logits["fp32"]),
                               atol=2e-2 * scale)
    for beams in (1, 2):  # compiled greedy (cached key/value steps) and beam search
        captions = models["fp16"].generate(images, generation_type="beam_search" if beams > 1 else "top_k",
                                           num_beams=beams, num_beam_groups=1, seq_len=6, sot_token_id=98,
                                           eos_token_id=99, min_seq_len=1)
        assert captions.shape[0] == 2 and (captions[:, 0] == 98).all()


@pytest.mark.skipif(not JAX, reason="inspects the JAX program")
def test_coca_grad_checkpointing_gives_the_same_gradients():
    import jax
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    texts = np.random.default_rng(1).integers(1, 100, size=(2, 8)).astype(np.int32)
    model = anyclip.create_model("coca_base", seed=3, **COCA_TINY)
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]
    grads = {}
    for remat in (False, True):
        model.set_grad_checkpointing(remat)

        def loss(weights):  # a new function each time: jax caches traces per function object
            out, _ = model.stateless_call(weights, fixed, {"images": images, "texts": texts})
            return ops.mean(ops.square(out["logits"]))

        program = str(jax.make_jaxpr(loss)(trainable))
        assert ("checkpoint" in program or "remat" in program) == remat
        grads[remat] = jax.jit(jax.grad(loss))(trainable)  # compiled, as training runs it (op by op: ~3x slower)
    # Recomputed in float32 by a differently fused program: rounding, to the array's scale (seen: 1.7e-6 of it;
    # a wrong gradient is off by the scale itself).
    for plain, rematted in zip(grads[False], grads[True]):
        plain = np.asarray(plain)
        np.testing.assert_allclose(np.asarray(rematted), plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())


def test_call_layer_remat_gives_the_same_values():
    block = anyclip.layers.transformer.ResidualBlock(16, 2, 32, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32)
    plain = ops.convert_to_numpy(call_layer(block, x, causal=True))
    rematted = ops.convert_to_numpy(call_layer(block, x, causal=True, remat=True))
    np.testing.assert_array_equal(plain, rematted)


@pytest.mark.skipif(not JAX, reason="inspects the JAX program")
def test_block_gradients_are_stored_once_and_unchanged_on_jax():
    # XLA's CPU fusion recomputed the residual stream's gradient in every consumer (a ViT-B-32 step 1.4x slower);
    # store_gradient writes it once through a conditional. Gradients must equal plain autodiff's, NaN stays NaN.
    import jax

    from anyclip.layers.backend import store_gradient
    blocks = [anyclip.layers.transformer.ResidualBlock(16, 2, 32, seed=i) for i in range(3)]
    x = np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32)
    for block in blocks:
        block.build((None, 5, 16))
    values = [[v.value for v in b.trainable_variables] for b in blocks]

    def loss(values, x, stored):
        for block, vals in zip(blocks, values):
            with keras.StatelessScope(state_mapping=list(zip(block.trainable_variables, vals))):
                x = block(x, causal=True)
            x = store_gradient(x) if stored else x
        return ops.sum(ops.tanh(x) * 1.5)

    grads = {stored: jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(values, x, stored)
             for stored in (True, False)}
    for ours, plain in zip(jax.tree_util.tree_leaves(grads[True]), jax.tree_util.tree_leaves(grads[False])):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(plain), rtol=1e-5, atol=1e-6)
    hlo = jax.jit(jax.grad(loss), static_argnums=2).lower(values, x, True).compile().as_text()
    assert hlo.count("conditional(") >= 3, "one stored gradient per block"
    nan = jax.grad(lambda x: ops.sum(store_gradient(x) * 2.0))(np.array([np.nan, 1.0], np.float32))
    assert np.isnan(np.asarray(nan)).all()


def test_dense_bias_flag_and_layer_norm_eps():
    assert dense(4, 0.02, 0, "q").use_bias and not dense(4, 0.02, 0, "q", bias=False).use_bias
    assert layer_norm("ln").epsilon == 1e-5 and layer_norm("ln", eps=1e-6).epsilon == 1e-6


def test_t5_bucket_table_matches_transformers():
    import torch
    from transformers.models.t5.modeling_t5 import T5Attention

    from anyclip.towers.hf.config import hf_arch
    from anyclip.towers.hf.t5 import T5Block
    for buckets, distance in ((32, 128), (8, 12)):
        arch = hf_arch({"model_type": "mt5", "vocab_size": 50, "d_model": 16, "d_kv": 4, "d_ff": 24, "num_layers": 1,
                        "num_heads": 2, "relative_attention_num_buckets": buckets,
                        "relative_attention_max_distance": distance})
        block = T5Block(arch, has_bias_table=True, seed=0)
        block.build()
        table = ops.convert_to_numpy(block.relative_attention_bias.embeddings)
        for length in (1, 7, 3 * distance + 5):
            pos = torch.arange(length)
            ref = T5Attention._relative_position_bucket(pos[None, :] - pos[:, None], bidirectional=True,
                                                        num_buckets=buckets, max_distance=distance).numpy()
            expected = table[ref].transpose(2, 0, 1)[None]
            np.testing.assert_array_equal(ops.convert_to_numpy(block.position_bias(length)), expected)


# -- a sequence length unknown until run time (tf.function with a [None, None] signature) --------------------

MT5 = dict(model_type="mt5", vocab_size=120, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
           relative_attention_num_buckets=8, relative_attention_max_distance=12, feed_forward_proj="gated-gelu")
M2M = dict(model_type="m2m_100", vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=1,
           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
           max_position_embeddings=40)


def _write_model(folder, hf_values):
    from transformers import AutoConfig
    values = dict(hf_values)
    AutoConfig.for_model(values.pop("model_type"), **values).save_pretrained(str(folder / "hf"))
    cfg = {"embed_dim": 24, "vision_cfg": {"layers": 1, "width": 64, "head_width": 32, "patch_size": 16,
                                           "image_size": 32},
           "text_cfg": {"hf_model_name": str(folder / "hf"), "hf_model_pretrained": False}}
    path = folder / "cfg.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def dynamic_length_worker(arrays, params):
    """Subprocess entry (TensorFlow): each tower traced once with an unknown length, then run on two lengths."""
    import tensorflow as tf
    out = {}
    for i, path in enumerate(params["configs"]):
        model = anyclip.create_model(path, seed=0)
        encode = tf.function(model.encode_text, input_signature=[tf.TensorSpec([None, None], tf.int32)])
        for length in (9, 20):
            tokens = arrays[f"tokens{length}"]
            out[f"{i}_traced_{length}"] = encode(tf.constant(tokens)).numpy()
            out[f"{i}_eager_{length}"] = keras.ops.convert_to_numpy(model.encode_text(tokens))
        out[f"{i}_traces"] = np.int64(encode.experimental_get_tracing_count())
    return out


def test_hf_towers_take_a_length_unknown_until_run_time(tmp_path):
    configs = []
    for name, values in (("mt5", MT5), ("m2m", M2M)):
        (tmp_path / name).mkdir()
        configs.append(_write_model(tmp_path / name, values))
    rng = np.random.default_rng(0)
    arrays = {f"tokens{n}": rng.integers(4, 120, size=(2, n)).astype(np.int32) for n in (9, 20)}
    for tokens in arrays.values():
        tokens[0, 5:] = 1  # padding (M2M100's pad id; an ordinary token for mT5)
    out = start_in_backend("tensorflow", "test_layers_mends:dynamic_length_worker", arrays,
                           {"configs": configs}).result(timeout=600)
    for i in range(len(configs)):
        assert int(out[f"{i}_traces"]) == 1
        for n in (9, 20):
            np.testing.assert_allclose(out[f"{i}_traced_{n}"], out[f"{i}_eager_{n}"], atol=1e-5)


# -- factory errors ------------------------------------------------------------------------------------------

def test_unknown_model_name_says_unknown_with_close_matches():
    with pytest.raises(anyclip.ConfigError, match="unknown model 'ViT-B-3'.*Did you mean"):
        anyclip.create_model("ViT-B-3", load_weights=False)
    with pytest.raises(anyclip.ConfigError, match="unknown model 'ViT-B-3'.*Did you mean"):
        anyclip.get_tokenizer("ViT-B-3")


def test_shipped_config_that_fails_to_load_is_not_called_unknown(monkeypatch):
    from anyclip.models import config

    def broken(data):
        raise config.ConfigError("text_cfg.width: must be a positive integer, got 0")

    monkeypatch.setattr(config.CLIPConfig, "from_dict", staticmethod(broken))
    for call in (lambda: anyclip.get_tokenizer("ViT-B-32"), lambda: anyclip.create_model("ViT-B-32")):
        with pytest.raises(anyclip.ConfigError) as info:
            call()
        assert "unknown model" not in str(info.value)
        assert "ViT-B-32.json: text_cfg.width" in str(info.value)
