"""anyclip.train losses == open_clip 3.3.0 ``ClipLoss`` / ``SigLipLoss`` / ``DistillClipLoss``.

Values and gradients (w.r.t. features, logit scale and bias) are compared with torch autograd through
open_clip's own loss modules, on JAX in process and on torch / TensorFlow in subprocesses
(``backend_runner.py``). Multi-device cases run open_clip with ``world_size=2`` and its collectives
replaced by in-process fakes that hand back the other half of the batch.
"""

import importlib.util
import math
import types
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from backend_runner import start_in_backend

ATOL, RTOL = 1e-5, 1e-5  # |diff| <= 1e-5 * (1 + |open_clip|)
# Gradients w.r.t. the teacher features go through softmax(teacher logits) * (log p_student - mean),
# a difference of O(logit_scale) numbers: open_clip's own float32 result is 1.6e-5 away from float64
# there (scales ~90), so those two are compared at 5e-5. (open_clip's trainer runs the teacher under
# no_grad; the loss is differentiable w.r.t. it all the same.)
GRAD_ATOL = {"dist_image": 5e-5, "dist_text": 5e-5}
DISTILL_WEIGHT = 0.7     # gradients of distill cases: d(contrastive + 0.7 * distill)
WORLD = 2
OTHER_BACKENDS = ("torch", "tensorflow")


# ----------------------------------------------------------------------------- cases (numpy only)
def _features(rng, n, dim, normalized):
    x = rng.standard_normal((n, dim)).astype("float32")
    if normalized:
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return 0.5 * x  # unnormalised: norms around 0.5 * sqrt(dim)


def _make_cases():
    """``{case_id: (kind, arrays, params)}``; kept small: every case costs compile time on JAX."""
    rng = np.random.default_rng(20240601)
    cases = {}
    f32 = np.float32
    for n, normalized in ((1, False), (1, True), (5, False), (8, True)):
        tag = f"n{n}-{'norm' if normalized else 'raw'}"
        scale = f32(rng.uniform(10, 100) if normalized else rng.uniform(1, 10))
        img, txt = _features(rng, n, 16, normalized), _features(rng, n, 16, normalized)
        cases[f"clip-{tag}"] = ("clip", {"image": img, "text": txt, "scale": scale}, {})
        cases[f"clip-bias-{tag}"] = ("clip", {"image": img, "text": txt, "scale": scale,
                                              "bias": f32(rng.uniform(-3, 3))}, {})
        sig = {"image": img, "text": txt, "scale": scale, "bias": f32(-10 + rng.uniform(-2, 2))}
        cases[f"siglip-{tag}"] = ("siglip", sig, {"chunk_size": None})
        if n > 3:  # chunks of 3 rows: 5 = 3 + 2, 8 = 3 + 3 + 2
            cases[f"siglip-chunk3-{tag}"] = ("siglip", sig, {"chunk_size": 3})
        cases[f"distill-{tag}"] = ("distill", {
            "image": img, "text": txt, "scale": scale,
            "dist_image": _features(rng, n, 24, normalized), "dist_text": _features(rng, n, 24, normalized),
            "dist_scale": f32(rng.uniform(10, 100))}, {})
    # data parallel: a batch of 2 * 3 split over 2 ranks; local features are this rank's rows
    n = 3
    for rank, normalized in ((0, False), (1, True)):
        tag = f"r{rank}-{'norm' if normalized else 'raw'}"
        all_img, all_txt = _features(rng, WORLD * n, 16, normalized), _features(rng, WORLD * n, 16, normalized)
        scale = f32(rng.uniform(10, 100) if normalized else rng.uniform(1, 10))
        bias = f32(-10 + rng.uniform(-2, 2))
        local = {"image": all_img[rank * n:(rank + 1) * n], "text": all_txt[rank * n:(rank + 1) * n]}
        for local_loss in (False, True):
            for with_grad in (False, True):
                cases[f"clipdp-{tag}-local{int(local_loss)}-grad{int(with_grad)}"] = (
                    "clip_dp", {**local, "scale": scale, "all_image": all_img, "all_text": all_txt},
                    {"rank": rank, "local_loss": local_loss, "gather_with_grad": with_grad})
        for chunk in (None, 4):  # 6 gathered texts = 4 + 2
            cases[f"siglipdp-{tag}-chunk{chunk}"] = (
                "siglip_dp", {**local, "scale": scale, "bias": bias, "all_text": all_txt},
                {"rank": rank, "chunk_size": chunk})
    return cases


CASES = _make_cases()


# ----------------------------------------------------------------------------- open_clip reference
def _open_clip_loss_module():
    """open_clip's ``loss.py`` itself, loaded without importing the whole package (saves ~8 s)."""
    origin = Path(importlib.util.find_spec("open_clip").origin)
    spec = importlib.util.spec_from_file_location("_open_clip_loss_reference", origin.with_name("loss.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_collectives(pairs):
    """Patch torch.distributed's all_gather (plain and autograd) to gather from full-batch tensors.

    ``pairs`` maps each local leaf tensor to the ``[WORLD * n, dim]`` leaf that plays "all ranks";
    the autograd all_gather returns views of that leaf, so its ``.grad`` is what flows into the
    gathered copy (the part a real all_gather's backward would send to the other ranks).
    """
    import torch

    def full(tensor):
        return next(f for local, f in pairs if local is tensor)

    def all_gather(out_list, tensor, *args, **kwargs):
        for out, part in zip(out_list, full(tensor).detach().chunk(WORLD)):
            out.copy_(part)

    stack = ExitStack()
    stack.enter_context(mock.patch.object(torch.distributed, "all_gather", all_gather))
    stack.enter_context(mock.patch.object(torch.distributed.nn, "all_gather",
                                          lambda tensor, *a, **k: full(tensor).chunk(WORLD)))
    return stack


def _reference(oc, kind, arrays, params):
    """open_clip's values and torch-autograd gradients for one case."""
    import torch
    t = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    if kind == "clip":
        values = [oc.ClipLoss()(t["image"], t["text"], t["scale"], t.get("bias"))]
    elif kind == "siglip":
        values = [oc.SigLipLoss()(t["image"], t["text"], t["scale"], t["bias"])]
    elif kind == "distill":
        values = list(oc.DistillClipLoss()(t["image"], t["text"], t["scale"], t["dist_image"], t["dist_text"],
                                           t["dist_scale"]))
    elif kind == "clip_dp":
        loss = oc.ClipLoss(local_loss=params["local_loss"], gather_with_grad=params["gather_with_grad"],
                           rank=params["rank"], world_size=WORLD)
        with _fake_collectives([(t["image"], t["all_image"]), (t["text"], t["all_text"])]):
            values = [loss(t["image"], t["text"], t["scale"])]
    elif kind == "siglip_dp":
        loss = oc.SigLipLoss(rank=params["rank"], world_size=WORLD, dist_impl="gather")
        with _fake_collectives([(t["text"], t["all_text"])]):
            values = [loss(t["image"], t["text"], t["scale"], t["bias"])]
    objective = values[0] + DISTILL_WEIGHT * values[1] if kind == "distill" else values[0]
    objective.backward()
    grads = {k: np.zeros_like(v) if t[k].grad is None else t[k].grad.numpy() for k, v in arrays.items()}
    return np.array([v.item() for v in values]), grads


@pytest.fixture(scope="module")
def reference():
    oc = _open_clip_loss_module()
    cache = {}

    def get(case_id):
        if case_id not in cache:
            kind, arrays, params = CASES[case_id]
            cache[case_id] = _reference(oc, kind, arrays, params)
        return cache[case_id]
    return get


# ----------------------------------------------------------------------------- anyclip, any backend
def _anyclip_values(kind, a, params):
    """anyclip's loss values (list) for one case; ``a`` holds backend tensors."""
    from anyclip.train import clip_loss, distill_clip_loss, siglip_loss
    if kind == "clip":
        return [clip_loss(a["image"], a["text"], a["scale"], a.get("bias"))]
    if kind == "siglip":
        return [siglip_loss(a["image"], a["text"], a["scale"], a["bias"], chunk_size=params["chunk_size"])]
    if kind == "distill":
        return list(distill_clip_loss(a["image"], a["text"], a["scale"], a["dist_image"], a["dist_text"],
                                      a["dist_scale"]))
    if kind == "clip_dp":
        return [clip_loss(a["image"], a["text"], a["scale"], all_image_features=a["all_image"],
                          all_text_features=a["all_text"], **params)]
    if kind == "siglip_dp":
        return [siglip_loss(a["image"], a["text"], a["scale"], a["bias"], all_text_features=a["all_text"],
                            **params)]
    raise ValueError(kind)


def _objective(kind, values):
    return values[0] + DISTILL_WEIGHT * values[1] if kind == "distill" else values[0]


def value_and_grads(fn, arrays):
    """``fn(tensors) -> (objective, aux)`` differentiated with the current backend's own autodiff.

    ``arrays``: flat dict of numpy arrays; ``aux``: dict of lists of scalars. Returns
    ``({key: np.array(aux[key])}, {name: d objective / d arrays[name]})``. On JAX the whole step is
    jitted (one compile instead of one per primitive and shape, as in a training step).
    """
    import keras
    backend = keras.backend.backend()
    names = list(arrays)
    if backend == "jax":
        import jax
        step = jax.jit(jax.value_and_grad(fn, has_aux=True))
        (_, aux), grads = step({k: jax.numpy.asarray(v) for k, v in arrays.items()})
        grads = [grads[k] for k in names]
    elif backend == "torch":
        import torch
        t = {k: keras.ops.convert_to_tensor(v).detach().requires_grad_() for k, v in arrays.items()}
        objective, aux = fn(t)
        grads = torch.autograd.grad(objective, [t[k] for k in names], allow_unused=True)
        grads = [torch.zeros_like(t[k]) if g is None else g for k, g in zip(names, grads)]
    elif backend == "tensorflow":
        import tensorflow as tf
        t = {k: tf.constant(v) for k, v in arrays.items()}
        with tf.GradientTape() as tape:
            tape.watch(list(t.values()))
            objective, aux = fn(t)
        grads = tape.gradient(objective, [t[k] for k in names], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    else:
        raise ValueError(f"no autodiff wired for backend {backend}")
    to_np = keras.ops.convert_to_numpy
    aux = {k: np.array([float(to_np(v)) for v in vals]) for k, vals in aux.items()}
    return aux, {k: to_np(g) for k, g in zip(names, grads)}


def _flat_case_arrays(case_ids):
    return {f"{cid}/{k}": v for cid in case_ids for k, v in CASES[cid][1].items()}


def run_cases(case_ids, arrays=None):
    """Every case's loss values and gradients in one differentiated program (cases share no inputs,
    so the gradient of the summed objectives w.r.t. one case's inputs is that case's gradient).

    ``arrays``: the flat ``"case/name"`` inputs (default: built from ``CASES``)."""
    def fn(t):
        total, values = 0.0, {}
        for cid in case_ids:
            kind, arrays, params = CASES[cid]
            values[cid] = _anyclip_values(kind, {k: t[f"{cid}/{k}"] for k in arrays}, params)
            total = total + _objective(kind, values[cid])
        return total, values
    values, grads = value_and_grads(fn, _flat_case_arrays(case_ids) if arrays is None else arrays)
    out = {f"{cid}/values": v for cid, v in values.items()}
    out.update({f"{k.split('/')[0]}/grad/{k.split('/', 1)[1]}": g for k, g in grads.items()})
    return out


DYNAMIC_BATCH_CASES = ["clip-bias-n5-raw", "siglip-n8-norm", "distill-n5-raw"]


def _tf_dynamic_batch_values(arrays):
    """Loss values inside a ``tf.function`` whose feature inputs have batch ``None`` (Keras fit-style)."""
    import tensorflow as tf
    out = {}
    for cid in DYNAMIC_BATCH_CASES:
        kind, case_arrays, params = CASES[cid]
        names = list(case_arrays)
        specs = [tf.TensorSpec((None,) + v.shape[1:] if v.ndim == 2 else v.shape, tf.float32)
                 for v in case_arrays.values()]
        fn = tf.function(lambda *xs: tf.stack(_anyclip_values(kind, dict(zip(names, xs)), params)),
                         input_signature=specs, autograph=False)
        out[f"{cid}/values_dynamic_batch"] = fn(*[arrays[f"{cid}/{k}"] for k in names]).numpy()
    return out


def backend_worker(arrays, params):
    """Subprocess entry (``backend_runner``): every case's values and gradients under this backend."""
    import keras
    out = run_cases(params["cases"], arrays)
    if keras.backend.backend() == "tensorflow":
        out.update(_tf_dynamic_batch_values(arrays))
    return out


def _compare(case_id, out, reference):
    ref_values, ref_grads = reference(case_id)
    np.testing.assert_allclose(out[f"{case_id}/values"], ref_values, atol=ATOL, rtol=RTOL,
                               err_msg=f"{case_id}: loss values")
    for name, ref in ref_grads.items():
        np.testing.assert_allclose(out[f"{case_id}/grad/{name}"], ref, atol=GRAD_ATOL.get(name, ATOL), rtol=RTOL,
                                   err_msg=f"{case_id}: d/d{name}")


# ----------------------------------------------------------------------------- JAX (in process)
@pytest.fixture(scope="module")
def jax_results():
    return run_cases(list(CASES))


@pytest.mark.parametrize("case_id", list(CASES))
def test_jax_matches_open_clip(case_id, jax_results, reference):
    _compare(case_id, jax_results, reference)


def test_jax_data_parallel_total_equals_full_batch():
    """Averaging the per-rank losses (all_gather with gradient) gives open_clip's one-device loss."""
    import jax
    import torch

    from anyclip.train import clip_loss, siglip_loss
    oc = _open_clip_loss_module()
    rng = np.random.default_rng(7)
    n = 4
    img, txt = _features(rng, WORLD * n, 16, True), _features(rng, WORLD * n, 16, True)
    scale, bias = np.float32(30.0), np.float32(-8.0)

    def mean_over_ranks(loss):
        return sum(loss(r, slice(r * n, (r + 1) * n)) for r in range(WORLD)) / WORLD

    def totals(i, t, s, b):
        return jax.numpy.stack([mean_over_ranks(lambda r, rows: clip_loss(
            i[rows], t[rows], s, all_image_features=i, all_text_features=t, local_loss=local, rank=r,
            gather_with_grad=True)) for local in (False, True)] + [mean_over_ranks(lambda r, rows: siglip_loss(
                i[rows], t[rows], s, b, all_text_features=t, rank=r, chunk_size=3))])

    args = (img, txt, scale, bias)
    values, grads = jax.jit(lambda *a: (totals(*a), jax.jacrev(totals, argnums=(0, 1, 2, 3))(*a)))(*args)
    for k, module in enumerate((oc.ClipLoss(), oc.ClipLoss(), oc.SigLipLoss())):
        t = [torch.tensor(a, requires_grad=True) for a in args]
        ref = module(*t[:3]) if k < 2 else module(*t)
        ref.backward()
        np.testing.assert_allclose(float(values[k]), ref.item(), atol=ATOL, rtol=RTOL)
        for g, r in zip(grads, t):
            want = np.zeros(r.shape, "float32") if r.grad is None else r.grad.numpy()
            np.testing.assert_allclose(np.asarray(g[k]), want, atol=ATOL, rtol=RTOL)


def test_jax_traced_rank_under_jit(jax_results):
    """``rank`` may be a traced scalar (e.g. ``lax.axis_index``): same numbers as a static rank."""
    import jax
    ids = [cid for cid in CASES if CASES[cid][0].endswith("_dp") and "-r1-" in cid and "grad1" not in cid]

    def losses(t, rank):
        return [_anyclip_values(CASES[cid][0], {k: t[f"{cid}/{k}"] for k in CASES[cid][1]},
                                {**CASES[cid][2], "rank": rank})[0] for cid in ids]
    got = jax.jit(losses)(_flat_case_arrays(ids), np.int32(1))
    for cid, value in zip(ids, got):
        np.testing.assert_allclose(float(value), jax_results[f"{cid}/values"][0], rtol=1e-6, err_msg=cid)


# ----------------------------------------------------------------------------- SigLIP chunking
CHUNK_CASES = [(1, 1), (7, 3), (8, 4), (8, 100)]


def test_siglip_chunked_equals_unchunked():
    """Any chunk size, divisible or not, gives the unchunked value and gradients (with and without bias)."""
    import jax

    from anyclip.train import siglip_loss
    rng = np.random.default_rng(3)
    inputs = [(_features(rng, n, 12, True), _features(rng, n, 12, True)) for n, _ in CHUNK_CASES]
    grad = jax.value_and_grad(siglip_loss, argnums=(0, 1, 2, 3))

    @jax.jit
    def run(inputs, scale, bias):
        out = []
        for (img, txt), (_, chunk) in zip(inputs, CHUNK_CASES):
            out.append((grad(img, txt, scale, bias), grad(img, txt, scale, bias, chunk_size=chunk),
                        siglip_loss(img, txt, scale, None), siglip_loss(img, txt, scale, None, chunk_size=chunk)))
        return out

    for (n, chunk), (full, chunked, no_bias, no_bias_chunked) in zip(CHUNK_CASES, run(inputs, 10.0, -10.0)):
        msg = f"batch {n}, chunk {chunk}"
        np.testing.assert_allclose(float(chunked[0]), float(full[0]), rtol=1e-6, err_msg=msg)
        for g, f in zip(chunked[1], full[1]):
            np.testing.assert_allclose(np.asarray(g), np.asarray(f), rtol=1e-6, atol=1e-7, err_msg=msg)
        np.testing.assert_allclose(float(no_bias_chunked), float(no_bias), rtol=1e-6, err_msg=msg)


def _largest_intermediate(jaxpr):
    biggest = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            biggest = max(biggest, int(np.prod(getattr(var.aval, "shape", ()))))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    biggest = max(biggest, _largest_intermediate(inner))
    return biggest


def test_siglip_chunked_gradient_memory_is_batch_times_chunk():
    """No [batch, batch] array anywhere in the gradient program once chunked (remat per chunk)."""
    import jax

    from anyclip.train import siglip_loss
    n, chunk, dim = 64, 16, 8
    img, txt = np.ones((n, dim), "float32"), np.ones((n, dim), "float32")
    grad = jax.grad(siglip_loss, argnums=(0, 1, 2, 3))
    full = jax.make_jaxpr(lambda *a: grad(*a))(img, txt, 10.0, -10.0).jaxpr
    chunked = jax.make_jaxpr(lambda *a: grad(*a, chunk_size=chunk))(img, txt, 10.0, -10.0).jaxpr
    assert _largest_intermediate(full) == n * n
    assert _largest_intermediate(chunked) == n * chunk


# ----------------------------------------------------------------------------- dtypes, outputs, clamp
def test_low_precision_inputs_give_float32_losses():
    """float16 / bfloat16 features and scales are cast at entry: float32 losses, same as float32 inputs."""
    import jax
    import keras

    from anyclip.train import clip_loss, distill_clip_loss, siglip_loss
    a = CASES["distill-n8-norm"][1]

    def losses(d):
        return [clip_loss(d["image"], d["text"], d["scale"]),
                siglip_loss(d["image"], d["text"], d["scale"], -10.0, chunk_size=3),
                *distill_clip_loss(d["image"], d["text"], d["scale"], d["dist_image"], d["dist_text"],
                                   d["dist_scale"])]

    def compare(dtype):
        low = {k: keras.ops.cast(v, dtype) for k, v in a.items()}
        return losses(low), losses({k: keras.ops.cast(v, "float32") for k, v in low.items()})

    for dtype in ("float16", "bfloat16"):
        got, want = jax.jit(compare, static_argnums=0)(dtype)
        for g, w in zip(got, want):
            assert keras.backend.standardize_dtype(g.dtype) == "float32", dtype
            np.testing.assert_allclose(float(g), float(w), rtol=1e-6, err_msg=dtype)


def test_output_dict():
    import jax

    from anyclip.train import clip_loss, distill_clip_loss, siglip_loss
    a = CASES["distill-n5-raw"][1]
    out = jax.eval_shape(lambda a: (
        clip_loss(a["image"], a["text"], a["scale"], output_dict=True),
        siglip_loss(a["image"], a["text"], a["scale"], -10.0, output_dict=True),
        distill_clip_loss(a["image"], a["text"], a["scale"], a["dist_image"], a["dist_text"], a["dist_scale"],
                          output_dict=True)), a)
    assert [sorted(o) for o in out] == [["contrastive_loss"], ["contrastive_loss"],
                                        ["contrastive_loss", "distill_loss"]]
    assert all(v.shape == () and v.dtype == np.float32 for o in out for v in o.values())


def test_clamp_logit_scale():
    import keras

    from anyclip.train import LOGIT_SCALE_MAX, clamp_logit_scale
    assert LOGIT_SCALE_MAX == math.log(100)
    for start, want in ((7.0, math.log(100)), (-0.5, 0.0), (math.log(1 / 0.07), math.log(1 / 0.07))):
        var = keras.Variable(start, dtype="float32")
        assert clamp_logit_scale(var) is var
        np.testing.assert_allclose(float(keras.ops.convert_to_numpy(var.value)), want, rtol=1e-7)
    model = types.SimpleNamespace(logit_scale=keras.Variable(9.0, dtype="float32"))
    clamp_logit_scale(model)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(model.logit_scale.value)), math.log(100), rtol=1e-7)
    clamp_logit_scale(model, max_value=2.0)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(model.logit_scale.value)), 2.0, rtol=1e-7)
    value = clamp_logit_scale(keras.ops.convert_to_tensor(5.0))  # stateless: clipped copy
    np.testing.assert_allclose(float(value), math.log(100), rtol=1e-7)
    with pytest.raises(ValueError, match="no logit_scale"):
        clamp_logit_scale(types.SimpleNamespace(logit_scale=None))


# ----------------------------------------------------------------------------- bad input
def test_mismatched_shapes_raise_clear_errors():
    import jax

    from anyclip.train import clip_loss, distill_clip_loss, siglip_loss
    a, b = np.zeros((4, 16), "float32"), np.zeros((5, 16), "float32")
    c = np.zeros((4, 8), "float32")
    for fn in (lambda x, y: clip_loss(x, y, 10.0), lambda x, y: siglip_loss(x, y, 10.0, -10.0),
               lambda x, y: distill_clip_loss(x, y, 10.0, x, x, 10.0)):
        with pytest.raises(ValueError, match=r"image_features has shape \(4, 16\) and text_features has shape "
                                             r"\(5, 16\)"):
            fn(a, b)
        with pytest.raises(ValueError, match=r"\(4, 16\).*\(4, 8\)"):
            fn(a, c)
        with pytest.raises(ValueError, match=r"\(16,\)"):
            fn(a[0], a[0])
    with pytest.raises(ValueError, match=r"image_features has shape \(4, 16\) and dist_image_features has shape "
                                         r"\(5, 16\)"):
        distill_clip_loss(a, a, 10.0, b, b, 10.0)
    jax.eval_shape(lambda: distill_clip_loss(a, a, 10.0, c, c, 10.0))  # teacher may have another dim
    with pytest.raises(ValueError, match="both all_image_features and all_text_features"):
        clip_loss(a, a, 10.0, all_image_features=np.zeros((8, 16), "float32"))
    with pytest.raises(ValueError, match=r"all_image_features has shape \(6, 16\).*local features of shape "
                                         r"\(4, 16\)"):
        clip_loss(a, a, 10.0, all_image_features=np.zeros((6, 16), "float32"),
                  all_text_features=np.zeros((6, 16), "float32"))
    with pytest.raises(ValueError, match=r"all_text_features has shape \(8, 8\)"):
        siglip_loss(a, a, 10.0, -10.0, all_text_features=np.zeros((8, 8), "float32"))
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        siglip_loss(a, a, 10.0, -10.0, chunk_size=0)


# ----------------------------------------------------------------------------- torch / TF (subprocesses)
@pytest.fixture(scope="module")
def backend_jobs(request):
    """One worker per other backend, started before the JAX tests when this session selects any of
    its tests, so that they run alongside."""
    jobs = {}

    def start(backend):
        if backend not in jobs:
            jobs[backend] = start_in_backend(backend, "test_losses:backend_worker", _flat_case_arrays(CASES),
                                             {"cases": list(CASES)})
        return jobs[backend]

    for backend in OTHER_BACKENDS:
        if any(getattr(item, "callspec", None) and item.callspec.params.get("backend") == backend
               for item in request.session.items):
            start(backend)
    yield lambda backend: start(backend).result(timeout=300)
    for job in jobs.values():
        job.kill()


@pytest.fixture(scope="module", autouse=True)
def _start_backend_jobs_early(backend_jobs):
    yield


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("case_id", list(CASES))
def test_other_backend_matches_open_clip(backend, case_id, backend_jobs, reference):
    _compare(case_id, backend_jobs(backend), reference)


@pytest.mark.parametrize("backend", ["tensorflow"])
@pytest.mark.parametrize("case_id", DYNAMIC_BATCH_CASES)
def test_tensorflow_dynamic_batch_values(backend, case_id, backend_jobs, reference):
    """Inside a ``tf.function`` with batch ``None`` (as ``fit`` traces) the losses still match."""
    np.testing.assert_allclose(backend_jobs(backend)[f"{case_id}/values_dynamic_batch"], reference(case_id)[0],
                               atol=ATOL, rtol=RTOL)
