"""Training options on JAX, torch and TensorFlow: partial locking, gradient checkpointing, EMA, mixed precision.

One worker function, :func:`feature_outputs`, runs every scenario on a tiny model and returns plain arrays;
it runs in this process (JAX) and in torch and TensorFlow subprocesses started at module setup, and each
test checks the three results the same way.
"""

import json
import tempfile

import numpy as np
import pytest
from backend_runner import start_in_backend
from inputs import clip_batch

TINY = {  # one block per tower keeps JAX's compile short; the lock-group test below uses deeper towers
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
BATCH = 4
EMA = {"decay": 0.9, "warmup": True}  # warmup decays 0, 0.37, 0.52 stay under 0.9: the warmup path is used
EMA_STEPS = 3


def _config_file(cfg=TINY):
    path = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(cfg, path)
    path.close()
    return path.name


def _batch(seed=0):
    return clip_batch(TINY, BATCH, seed, first_eot=2)


def _numpy(variables):
    import keras
    return [np.array(keras.ops.convert_to_numpy(v.value), dtype=np.float32) for v in variables]


def _model(precision="fp32"):
    import anyclip
    return anyclip.create_model(_config_file(), load_weights=False, precision=precision, seed=0)


def _loss(outputs):
    from anyclip.train import clip_loss
    return clip_loss(**outputs)


def _lock_bf16(out, images, tokens):
    """Partial locking under bf16 autocast: frozen weights bit-identical after an AdamW step, unlocked ones
    moved, the loss near fp32's (one compiled step serves both checks)."""
    from anyclip.train import TrainStep, create_optimizer
    from anyclip.weights.mapping import model_entries
    model = _model("amp_bf16")
    model.lock_image_tower(unlocked_groups=1)  # only visual.proj
    model.lock_text_tower(unlocked_layers=2)  # [last block, ln_final], [text_projection]
    entries = model_entries(model)
    trainable = {id(v) for v in model.trainable_variables}
    before = dict(zip(entries, _numpy([v for v, _ in entries.values()])))
    step = TrainStep(model, create_optimizer(model, lr=1e-2), _loss)
    out["bf16/loss"] = np.float32(step(images, tokens)["loss"])
    after = dict(zip(entries, _numpy([v for v, _ in entries.values()])))
    out["bf16/finite"] = np.bool_(all(np.isfinite(v).all() for v in after.values()))
    out["lock/trainable_keys"] = np.array(sorted(k for k, (v, _) in entries.items() if id(v) in trainable))
    out["lock/frozen_changed"] = np.array(
        [k for k, (v, _) in entries.items() if id(v) not in trainable and not np.array_equal(before[k], after[k])],
        dtype=str).reshape(-1)
    out["lock/trainable_unchanged"] = np.array(
        [k for k, (v, _) in entries.items() if id(v) in trainable and np.array_equal(before[k], after[k])],
        dtype=str).reshape(-1)
    out["lock/optimizer_sees"] = np.int64(len(step.optimizer._trainable_variables))


def _remat_ema(out, images, tokens):
    """Gradient checkpointing: same loss and gradients as the plain model; then EMA over SGD steps on it."""
    import keras

    from anyclip.train import ModelEMA, TrainStep
    grads = {}
    for remat in (False, True):
        model = _model()
        model.set_grad_checkpointing(remat)
        ema = ModelEMA(model, **EMA) if not remat else None
        step = TrainStep(model, keras.optimizers.SGD(0.5), _loss, ema=ema)
        metrics, g = step.compute_gradients(images, tokens)
        out[f"remat{int(remat)}/loss"] = np.float32(metrics["loss"])
        grads[remat] = [np.asarray(keras.ops.convert_to_numpy(x)) for x in g]
        if remat and keras.backend.backend() == "jax":
            out["remat1/in_jaxpr"] = np.bool_(_jaxpr_has_remat(step, images, tokens))
        if not remat:
            out["fp32/loss"] = np.float32(metrics["loss"])
            for k in range(EMA_STEPS):
                step(images, tokens)
                for i, value in enumerate(_numpy(step.variables)):
                    out[f"ema/weights{k}/{i:03d}"] = value
            for i, value in enumerate(_numpy(ema.averages)):
                out[f"ema/average/{i:03d}"] = value
    out["remat/max_rel_err"] = np.float32(max(np.abs(a - b).max() / max(1.0, np.abs(a).max())
                                              for a, b in zip(grads[False], grads[True])))


def _fp16(out, images, tokens):
    """float16 with dynamic loss scaling: an overflowing scale skips the step and halves; 2 good steps double it."""
    import keras

    from anyclip.train import ModelEMA, TrainStep, create_optimizer
    model = _model("amp_fp16")
    optimizer = keras.optimizers.LossScaleOptimizer(create_optimizer(model, lr=1e-3), initial_scale=2.0 ** 100,
                                                    dynamic_growth_steps=2)
    ema = ModelEMA(model, decay=0.5)
    step = TrainStep(model, optimizer, _loss, ema=ema)
    weights0, ema0 = _numpy(step.variables), _numpy(ema.averages)
    record = [step(images, tokens)]
    out["fp16/unchanged_after_skip"] = np.bool_(all(np.array_equal(a, b) for a, b in zip(weights0, _numpy(
        step.variables))) and all(np.array_equal(a, b) for a, b in zip(ema0, _numpy(ema.averages))))
    optimizer.dynamic_scale.assign(8.0)
    record += [step(images, tokens) for _ in range(3)]
    out["fp16/scales"] = np.array([m["loss_scale"] for m in record] + [float(keras.ops.convert_to_numpy(
        optimizer.dynamic_scale))], np.float32)
    out["fp16/skipped"] = np.array([m["step_skipped"] for m in record], np.float32)
    out["fp16/iterations"] = np.int64(keras.ops.convert_to_numpy(optimizer.iterations))
    out["fp16/loss"] = np.array([m["loss"] for m in record], np.float32)


def _distill(out, images, tokens):
    """Distillation with accumulation equals one whole batch (run on the eager backends)."""
    import keras

    from anyclip.train import TrainStep, distill_clip_loss
    teacher = _model()
    for accum in (1, 2):
        model = _model()
        step = TrainStep(model, keras.optimizers.SGD(0.1), lambda o: distill_clip_loss(**o, output_dict=True),
                         accum_freq=accum, teacher=teacher)
        metrics, g = step.compute_gradients(images, tokens)
        out[f"distill{accum}/loss"] = np.array([metrics["loss"], metrics["contrastive_loss"],
                                                metrics["distill_loss"]], np.float32)
        for i, x in enumerate(g):
            out[f"distill{accum}/grad{i:03d}"] = np.asarray(keras.ops.convert_to_numpy(x))


PARTS = {"lock_bf16": _lock_bf16, "remat_ema": _remat_ema, "fp16": _fp16, "distill": _distill}


def feature_outputs(arrays, params):
    """The scenarios ``params["parts"]`` (names in :data:`PARTS`) on the current backend, as arrays.

    Runs in-process (JAX) or in a backend_runner worker.
    """
    images, tokens = _batch()
    out = {}
    for part in params["parts"]:
        PARTS[part](out, images, tokens)
    return out


def _jaxpr_has_remat(step, images, tokens):
    import jax

    from anyclip.train.step import _pure
    pure = _pure(step._single, step.variables, [])
    values = [v.value for v in step.variables]
    jaxpr = jax.make_jaxpr(lambda v: pure(v, [], images, tokens, {"scale": None, "teacher": None})[0][0])(values)
    return "checkpoint" in str(jaxpr) or "remat" in str(jaxpr)


@pytest.fixture(scope="module")
def results():
    """``{backend: outputs}``; torch and TensorFlow run in workers while JAX runs here."""
    eager = {"parts": list(PARTS)}
    jobs = {b: start_in_backend(b, "test_train_features:feature_outputs", {}, eager) for b in ("torch", "tensorflow")}
    # JAX compiles each step (the slow part): half of the scenarios in a second JAX process
    jax_job = start_in_backend("jax", "test_train_features:feature_outputs", {}, {"parts": ["lock_bf16", "fp16"]})
    out = {"jax": feature_outputs({}, {"parts": ["remat_ema"]})}
    out["jax"].update(jax_job.result(timeout=900))
    for backend, job in jobs.items():
        out[backend] = job.result(timeout=900)
    return out


BACKENDS = ("jax", "torch", "tensorflow")


def open_clip_frozen_keys(cfg, unlocked_image, unlocked_text):
    from open_clip.model import CLIP, CustomTextCLIP
    kwargs = {k: v for k, v in cfg.items() if k != "custom_text"}
    ref = (CustomTextCLIP if cfg.get("custom_text") else CLIP)(**kwargs)
    ref.lock_image_tower(unlocked_groups=unlocked_image)
    ref.lock_text_tower(unlocked_layers=unlocked_text)
    return {k for k, p in ref.named_parameters() if not p.requires_grad}


DEEPER = {**TINY, "vision_cfg": {**TINY["vision_cfg"], "layers": 2}, "text_cfg": {**TINY["text_cfg"], "layers": 2}}
CUSTOM_TEXT = {**TINY, "custom_text": True, "text_cfg": {**TINY["text_cfg"], "proj_bias": True, "layers": 3},
               "vision_cfg": {**TINY["vision_cfg"], "no_ln_pre": True, "layers": 3}}


@pytest.mark.parametrize("cfg", [DEEPER, CUSTOM_TEXT], ids=["clip", "custom-text"])
def test_locked_groups_equal_open_clip(cfg):
    """Every (image groups, text groups) pair freezes exactly open_clip's parameters, mapped by key."""
    import anyclip
    from anyclip.weights.mapping import model_entries
    model = anyclip.create_model(_config_file(cfg), load_weights=False)
    for unlocked_image in (0, 1, 2, 3, 4, 5, 9):
        for unlocked_text in (0, 1, 2, 3, 4, 9):  # each lock call starts from a fully trainable tower
            model.lock_image_tower(unlocked_image)
            model.lock_text_tower(unlocked_text)
            trainable = {id(v) for v in model.trainable_variables}
            ours = {k for k, (v, _) in model_entries(model).items() if id(v) not in trainable}
            assert ours == open_clip_frozen_keys(cfg, unlocked_image, unlocked_text), (unlocked_image, unlocked_text)
    with pytest.raises(ValueError, match="image tower: the number of unlocked groups must be an integer >= 0"):
        model.lock_image_tower(-1)
    with pytest.raises(ValueError, match="freeze_layer_norm=False"):
        model.lock_text_tower(1, freeze_layer_norm=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_locked_step_leaves_frozen_weights_bit_identical(results, backend):
    out = results[backend]
    expected = sorted(["visual.proj", "ln_final.weight", "ln_final.bias", "text_projection", "logit_scale"]
                      + [k for k in out["lock/trainable_keys"] if k.startswith("transformer.resblocks.0.")])
    assert list(out["lock/trainable_keys"]) == expected
    assert out["lock/frozen_changed"].size == 0, out["lock/frozen_changed"]
    assert out["lock/trainable_unchanged"].size == 0, out["lock/trainable_unchanged"]
    assert int(out["lock/optimizer_sees"]) == len(expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_checkpointing_gives_the_same_loss_and_gradients(results, backend):
    out = results[backend]
    assert out["remat1/loss"] == pytest.approx(float(out["remat0/loss"]), abs=1e-6)
    assert float(out["remat/max_rel_err"]) <= 1e-6
    if backend == "jax":
        assert bool(out["remat1/in_jaxpr"]), "jax.checkpoint is missing from the differentiated program"


def timm_decays(steps):
    import torch
    from timm.utils.model_ema import ModelEmaV3
    ref = ModelEmaV3(torch.nn.Linear(1, 1), decay=EMA["decay"], use_warmup=EMA["warmup"])
    return [ref.get_decay(s) for s in steps]


def test_ema_decay_schedule_equals_timm():
    import anyclip
    from anyclip.train import ModelEMA
    model = anyclip.create_model(_config_file(), load_weights=False)
    ours = ModelEMA(model, **EMA)
    steps = [0, 1, 2, 3, 10, 1000, 10 ** 6]
    assert [ours.decay_at(s) for s in steps] == pytest.approx(timm_decays(steps), rel=1e-12)
    plain = ModelEMA(model, decay=0.9999)
    assert [plain.decay_at(s) for s in (1, 2, 5)] == [0.0, 0.9999, 0.9999]
    with pytest.raises(ValueError, match="EMA decay must be in"):
        ModelEMA(model, decay=1.5)


def _lerp(start, end, weight):
    """torch.lerp in float32, as timm's ModelEmaV3 applies it."""
    weight = np.float32(weight)
    diff = end - start
    return start + weight * diff if weight < 0.5 else end - diff * (np.float32(1) - weight)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ema_after_k_steps_equals_the_recursion(results, backend):
    out = results[backend]
    decays = timm_decays(range(1, EMA_STEPS + 1))
    n = len([k for k in out if k.startswith("ema/average/")])
    for i in range(n):
        expected = out[f"ema/weights0/{i:03d}"].copy()  # update 1 has decay 0: a copy of the weights
        for k in range(1, EMA_STEPS):
            expected = _lerp(expected, out[f"ema/weights{k}/{i:03d}"], 1.0 - decays[k])
        np.testing.assert_allclose(out[f"ema/average/{i:03d}"], expected, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(out[f"ema/average/{0:03d}"], out[f"ema/weights{EMA_STEPS - 1}/{0:03d}"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_step_runs_and_its_loss_is_near_fp32(results, backend):
    out = results[backend]
    assert bool(out["bf16/finite"])
    assert abs(float(out["bf16/loss"]) - float(out["fp32/loss"])) <= 2e-2 * float(out["fp32/loss"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_loss_scaling_skips_halves_and_grows(results, backend):
    out = results[backend]
    # step 1 at 2**100 overflows: skipped, nothing moved (weights nor EMA), the scale halved
    assert bool(out["fp16/unchanged_after_skip"])
    # then the scale is set to 8: two good steps double it (growth interval 2), the third keeps it
    np.testing.assert_array_equal(out["fp16/scales"], [2.0 ** 100, 8.0, 8.0, 16.0, 16.0])
    np.testing.assert_array_equal(out["fp16/skipped"], [1, 0, 0, 0])
    assert int(out["fp16/iterations"]) == 3
    assert np.isfinite(out["fp16/loss"]).all() and out["fp16/loss"][-1] < out["fp16/loss"][1]
    assert abs(float(out["fp16/loss"][0]) - float(out["fp32/loss"])) <= 1e-2 * float(out["fp32/loss"])


@pytest.mark.parametrize("backend", ("torch", "tensorflow"))
def test_distillation_with_accumulation_equals_one_batch(results, backend):
    out = results[backend]
    np.testing.assert_allclose(out["distill2/loss"], out["distill1/loss"], rtol=1e-5)
    assert out["distill1/loss"][0] == pytest.approx(out["distill1/loss"][1] + out["distill1/loss"][2], rel=1e-6)
    for key in [k for k in out if k.startswith("distill1/grad")]:
        ref = out[key]
        np.testing.assert_allclose(out[key.replace("distill1", "distill2")], ref,
                                   atol=1e-5 * max(1.0, np.abs(ref).max()), err_msg=key)


def test_wise_ft_interpolates_every_weight_exactly():
    import anyclip
    from anyclip.train import wise_ft
    from anyclip.weights.mapping import export_state_dict
    path = _config_file()
    zero_shot, finetuned = (anyclip.create_model(path, load_weights=False, seed=s) for s in (1, 2))
    zs, ft = export_state_dict(zero_shot), export_state_dict(finetuned)
    for alpha in (0.0, 0.25, 0.5, 1.0):
        out = wise_ft(zero_shot, ft, alpha)  # a model and a state dict mix freely
        assert out.keys() == zs.keys()
        for key in zs:
            np.testing.assert_array_equal(out[key], np.float32(1 - alpha) * zs[key] + np.float32(alpha) * ft[key])
            if alpha == 0.0:
                np.testing.assert_array_equal(out[key], zs[key])
            if alpha == 1.0:
                np.testing.assert_array_equal(out[key], ft[key])
    wise_ft(zs, finetuned, 0.5, into=finetuned)  # sets the model's weights
    expected = 0.5 * zs["visual.proj"] + 0.5 * ft["visual.proj"]
    np.testing.assert_array_equal(export_state_dict(finetuned)["visual.proj"], expected)

    with pytest.raises(ValueError, match="only in finetuned \\['extra.weight'\\]"):
        wise_ft(zs, {**ft, "extra.weight": np.zeros(2, np.float32)}, 0.5)
    with pytest.raises(ValueError, match="'visual.proj' has shape \\(32, 16\\) in zero_shot but \\(32, 8\\)"):
        wise_ft(zs, {**ft, "visual.proj": np.zeros((32, 8), np.float32)}, 0.5)
    with pytest.raises(ValueError, match="alpha must be a number in \\[0, 1\\], got 1.5"):
        wise_ft(zs, ft, 1.5)
    with pytest.raises(TypeError, match="finetuned must be a CLIP model or an open_clip state dict"):
        wise_ft(zs, [1, 2], 0.5)
