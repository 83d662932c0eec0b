"""The training step: gradients equal open_clip's, accumulation equals one large batch, on JAX and torch."""

import functools
import math

import numpy as np
import pytest
from backend_runner import start_in_backend
from inputs import clip_batch
from reference import randomize

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 64, "heads": 2, "layers": 2},
}
BATCH = 8


def make_case(seed=0):
    """A random open_clip model and a batch, with open_clip's loss and parameter gradients."""
    import open_clip
    import torch
    model = open_clip.model.CLIP(**TINY, output_dict=True)
    model.load_state_dict(randomize(model.state_dict(), seed))
    images, tokens = clip_batch(TINY, BATCH, seed)
    model.train()
    out = model(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(tokens).long())
    loss = open_clip.loss.ClipLoss()(out["image_features"], out["text_features"], out["logit_scale"])
    loss.backward()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    return {"images": images, "tokens": tokens, "loss": np.float32(loss.item())}, state, grads


@pytest.fixture(scope="module")
def case():
    return make_case()


def anyclip_model(state):
    import anyclip
    from anyclip.weights.mapping import load_state_dict
    model = anyclip.create_model(_config_file(), load_weights=False)
    load_state_dict(model, state)
    return model


@functools.lru_cache(maxsize=1)
def _config_file():
    """TINY as a JSON file, written once per test process and removed when it exits."""
    import atexit
    import json
    import os
    import tempfile
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(TINY, f)
    atexit.register(os.unlink, path)
    return path


def grads_by_key(model, grads, variables):
    """Our gradients renamed and laid out as open_clip's parameters."""
    import keras

    from anyclip.weights.mapping import TRANSFORMS, model_entries
    by_id = {id(var): (key, transform) for key, (var, transform) in model_entries(model).items()}
    out = {}
    for var, grad in zip(variables, grads):
        key, transform = by_id[id(var)]
        out[key] = TRANSFORMS[transform][1](np.asarray(keras.ops.convert_to_numpy(grad)))
    return out


def step_outputs(arrays, params):
    """Gradients (accum 1 and 4) and SGD updates on the current backend; runs in-process or in a worker."""
    import keras

    from anyclip.train import TrainStep, clip_loss
    images, tokens = arrays["images"], arrays["tokens"]
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    out = {}
    for accum in (1, 4):
        model = anyclip_model(state)
        step = TrainStep(model, keras.optimizers.SGD(0.5), lambda o: clip_loss(**o), accum_freq=accum)
        metrics, grads = step.compute_gradients(images, tokens)
        out[f"loss/{accum}"] = np.float32(metrics["loss"])
        for key, grad in grads_by_key(model, grads, step.variables).items():
            out[f"grad{accum}/{key}"] = grad
        step(images, tokens)
        from anyclip.weights import export_state_dict
        for key, value in export_state_dict(model).items():
            out[f"after{accum}/{key}"] = value
    return out


def _check(out, case, grads):
    data, state, ref_grads = case
    for accum in (1, 4):
        assert abs(out[f"loss/{accum}"] - data["loss"]) <= 1e-5
        for key, ref in ref_grads.items():
            ours = out[f"grad{accum}/{key}"]
            err = np.abs(ours - ref).max()
            assert err <= 1e-5 * max(1.0, np.abs(ref).max()), f"accum {accum}: gradient of {key} off by {err:.2e}"
    for key in ref_grads:  # SGD(0.5): the update is half the gradient, so accumulation must not rescale it; the two
        # gradients each lie within 1e-5 * scale of open_clip's, so the updates within 0.5 * 2e-5 * scale of each other
        atol = 1e-5 * max(1.0, np.abs(ref_grads[key]).max())
        np.testing.assert_allclose(out[f"after4/{key}"], out[f"after1/{key}"], atol=atol, err_msg=key)
        expected = state[key] - 0.5 * ref_grads[key]
        if key == "logit_scale":
            expected = np.clip(expected, 0, math.log(100))
        np.testing.assert_allclose(out[f"after1/{key}"], expected, atol=2e-5, err_msg=key)


def _arrays(case):
    data, state, _ = case
    return {"images": data["images"], "tokens": data["tokens"], **{f"state/{k}": v for k, v in state.items()}}


def test_gradients_and_accumulation_match_open_clip(case):
    """JAX in process; torch and TensorFlow in workers that run meanwhile."""
    jobs = {b: start_in_backend(b, "test_train_step:step_outputs", _arrays(case)) for b in ("torch", "tensorflow")}
    _check(step_outputs(_arrays(case), None), case, case[2])
    for job in jobs.values():
        _check(job.result(timeout=900), case, case[2])


def test_logit_scale_is_clamped_and_bad_batches_are_refused(case):
    import keras

    from anyclip.train import TrainStep, clip_loss
    data, state, _ = case
    state = dict(state, logit_scale=np.float32(4.7))
    model = anyclip_model(state)
    step = TrainStep(model, keras.optimizers.SGD(100.0), lambda o: clip_loss(**o))
    step(data["images"], data["tokens"])
    assert 0.0 <= float(keras.ops.convert_to_numpy(model.logit_scale)) <= math.log(100) + 1e-6
    with pytest.raises(ValueError, match="same batch size"):
        step(data["images"], data["tokens"][:4])
    with pytest.raises(ValueError, match="accum_freq=3"):
        TrainStep(model, keras.optimizers.SGD(0.1), lambda o: clip_loss(**o), accum_freq=3)(
            data["images"], data["tokens"])
    with pytest.raises(ValueError, match="accum_freq must be a positive integer"):
        TrainStep(model, keras.optimizers.SGD(0.1), lambda o: clip_loss(**o), accum_freq=0)


def test_non_finite_loss_stops_before_the_update(case):
    import keras

    from anyclip.train import TrainStep
    data, state, _ = case
    model = anyclip_model(state)
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]
    step = TrainStep(model, keras.optimizers.SGD(0.1), lambda o: keras.ops.sum(o["image_features"]) * np.nan)
    with pytest.raises(FloatingPointError, match="not finite"):
        step(data["images"], data["tokens"])
    after = [np.array(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_locked_model_has_nothing_to_train(case):
    import keras

    from anyclip.train import TrainStep, clip_loss
    model = anyclip_model(case[1])
    model.trainable = False
    with pytest.raises(ValueError, match="no trainable variables"):
        TrainStep(model, keras.optimizers.SGD(0.1), lambda o: clip_loss(**o))


def test_the_gradient_program_is_ordered_for_memory_on_a_jax_cpu(case):
    """XLA:CPU's default operation order keeps more activations alive at once; the step compiles for less memory."""
    import keras
    if keras.backend.backend() != "jax":
        pytest.skip("an XLA:CPU compile option (the default test backend is JAX)")
    from anyclip.train import TrainStep, clip_loss
    data, state, _ = case
    step = TrainStep(anyclip_model(state), keras.optimizers.SGD(0.5), lambda o: clip_loss(**o))
    lowered = step._grad_single.lower(data["images"], data["tokens"], {"scale": None, "teacher": None})
    ours = lowered.compile().memory_analysis().temp_size_in_bytes
    default = lowered.compile({"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_DEFAULT"}).memory_analysis()
    assert ours < 0.95 * default.temp_size_in_bytes, (ours, default.temp_size_in_bytes)
