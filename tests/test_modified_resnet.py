"""ModifiedResNet (RN50 family): training-mode batch norm, the train step, lock(), configs and weights vs open_clip.

Inference parity of every shipped RN config runs in test_parity.py; here a tiny ResNet CLIP is checked in
training mode (batch statistics, running-stat updates, gradients through them) on JAX and torch.
"""

import copy

import numpy as np
import pytest
from backend_runner import start_in_backend
from inputs import clip_batch
from reference import randomize

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 64, "layers": [2, 1, 1, 1], "width": 8, "head_width": 16, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 32, "heads": 2, "layers": 1},
}
BATCH = 6
COUNT = 3  # num_batches_tracked in the starting state, so that the +1 of a training forward is visible


def _open_clip_model(seed=0):
    import open_clip
    import torch
    model = open_clip.model.CLIP(**copy.deepcopy(TINY), output_dict=True)
    state = randomize(model.state_dict(), seed)
    state = {k: (torch.tensor(COUNT) if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    model.load_state_dict(state)
    return model


def _batch(seed=0):
    return clip_batch(TINY, BATCH, seed)


@pytest.fixture(scope="module")
def case():
    """open_clip in training mode: loss, gradients, and the state after one training forward."""
    import open_clip
    import torch
    model = _open_clip_model()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    images, tokens = _batch()
    model.train()
    out = model(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(tokens).long())
    loss = open_clip.loss.ClipLoss()(out["image_features"], out["text_features"], out["logit_scale"])
    loss.backward()
    return {
        "arrays": {"images": images, "tokens": tokens, **{f"state/{k}": v for k, v in before.items()}},
        "loss": loss.item(),
        "grads": {k: p.grad.numpy() for k, p in model.named_parameters()},
        "after": {k: v.detach().numpy() for k, v in model.state_dict().items()},
    }


def train_outputs(arrays, params):
    """On the current backend: one TrainStep (SGD 0.5) from ``state``; the loss and the state after it."""
    import keras

    import anyclip
    from anyclip.train import TrainStep, clip_loss
    from anyclip.weights.mapping import export_state_dict, load_state_dict
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    out = {}
    model = anyclip.CLIP(TINY, seed=None)
    load_state_dict(model, state)
    out["loss"] = np.float32(TrainStep(model, keras.optimizers.SGD(0.5), lambda o: clip_loss(**o))(
        arrays["images"], arrays["tokens"])["loss"])
    out.update({f"step/{k}": v for k, v in export_state_dict(model).items()})
    return out


def _check_training(out, case):
    assert abs(float(out["loss"]) - case["loss"]) <= 1e-5
    buffers = [k for k in case["after"] if k.startswith("visual.") and k.rsplit(".", 1)[-1] in
               ("running_mean", "running_var", "num_batches_tracked")]
    assert len(buffers) == 3 * (3 + 5 * 3 + 4)  # BNs: 3 in the stem, 3 in each of 5 blocks, 4 shortcuts
    for key in buffers:  # the step's one training forward = one running-stat update, as torch
        ours, ref = out["step/" + key], case["after"][key]
        if key.endswith("num_batches_tracked"):
            assert ours.dtype == np.int64 and ours.shape == () and int(ours) == int(ref) == COUNT + 1, key
        else:
            np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6, err_msg=key)
    for key, ref in case["grads"].items():  # SGD(0.5): the update is half the gradient
        grad = (case["arrays"][f"state/{key}"] - out[f"step/{key}"]) / 0.5
        err = np.abs(grad - ref).max()
        assert err <= 2e-5 * max(1.0, np.abs(ref).max()), f"gradient of {key} off by {err:.2e}"


# XLA:CPU's loop fusion sums some reductions in a less accurate order: here the fused train step's bias gradients
# (sums whose terms largely cancel, behind later batch norms) end up 1.2% from open_clip's float64 gradients, where
# torch, unfused XLA and JAX op by op all stay within 4e-6. The check is of anyclip's arithmetic, so JAX runs its
# step without that pass (XLA_FLAGS is read when JAX starts: a worker process).
UNFUSED_XLA = {"XLA_FLAGS": "--xla_disable_hlo_passes=fusion"}


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


# On Intel CPUs with AMX (seen 2026-12-05, torch 2.14.1 CPU, jax 0.10.2) the torch-backend gradient of conv1 differs
# from open_clip's by 0.2% (2.9e-2 of 13; the loss and every running statistic still match to 1e-5), and with one
# thread another gradient by 2.7e-5; on the CPUs CI passed on before it matched to 2e-5. Not yet explained: see the notes.
@pytest.mark.xfail(_cpu_has_amx(), reason="gradients differ on AMX CPUs (not yet explained)", strict=False)
def test_training_mode_batch_norm_and_train_step_match_open_clip(case):
    """Loss and gradients through the batch statistics, torch's running-stat update (unbiased variance,
    momentum 0.1, counter) carried back by TrainStep (JAX's step is functional), on JAX and torch."""
    jobs = [start_in_backend("torch", "test_modified_resnet:train_outputs", case["arrays"]),
            start_in_backend("jax", "test_modified_resnet:train_outputs", case["arrays"], env=UNFUSED_XLA)]
    for job in jobs:
        _check_training(job.result(timeout=900), case)


def _trainable_keys(model):
    from anyclip.weights.mapping import model_entries
    trainable = {id(v) for v in model.trainable_variables}
    return {k for k, (v, _) in model_entries(model).items() if id(v) in trainable}


@pytest.mark.parametrize("freeze_bn_stats", [False, True])
def test_lock_matches_open_clip(freeze_bn_stats):
    import keras
    import torch

    import anyclip
    from anyclip.weights.mapping import export_state_dict, load_state_dict
    ref = _open_clip_model()
    ours = anyclip.CLIP(TINY, seed=None)
    load_state_dict(ours, {k: v.numpy() for k, v in ref.state_dict().items()})
    with pytest.raises(AssertionError):
        ref.lock_image_tower(unlocked_groups=1)
    with pytest.raises(ValueError, match="only unlocked_groups=0"):
        ours.lock_image_tower(unlocked_groups=1)
    ref.lock_image_tower(0, freeze_bn_stats=freeze_bn_stats)
    ours.lock_image_tower(0, freeze_bn_stats=freeze_bn_stats)
    theirs = {k for k, p in ref.named_parameters() if p.requires_grad}
    assert theirs and not any(k.startswith("visual.") for k in theirs)
    assert _trainable_keys(ours) == theirs

    # A training forward (eager): frozen statistics stay put and are used; otherwise the batch statistics
    # are used and the running ones move (unbiased variance, momentum 0.1, counter), as in torch.
    images, _ = _batch(1)
    ref.train()
    with torch.no_grad():
        expected = ref.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    got = keras.ops.convert_to_numpy(ours.visual(images, training=True))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    exported = export_state_dict(ours)
    key = "visual.layer1.0.bn1.num_batches_tracked"
    assert int(exported[key]) == (COUNT if freeze_bn_stats else COUNT + 1)
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(exported[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    if freeze_bn_stats:  # open_clip's FrozenBatchNorm2d saves no counter; both directions still load strictly
        assert key not in ref.state_dict()
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
        again = anyclip.CLIP(TINY, seed=None)
        load_state_dict(again, {k: v.numpy() for k, v in ref.state_dict().items()})
        assert int(export_state_dict(again)[key]) == 0  # torch keeps a fresh module's count when it is missing


def test_grad_checkpointing_is_accepted_as_in_open_clip():
    import anyclip
    model = anyclip.CLIP(TINY, seed=0)
    model.set_grad_checkpointing(True)  # open_clip's ModifiedResNet ignores it too (text tower still remats)
    assert model.text.transformer.grad_checkpointing


def _bad(mutate):
    cfg = copy.deepcopy(TINY)
    mutate(cfg["vision_cfg"])
    return cfg


@pytest.mark.parametrize("mutate,match", [
    (lambda v: v.update(layers=[3, 4, 6]), r"vision_cfg.layers: a list selects the ModifiedResNet tower"),
    (lambda v: v.update(layers=[3, 4, 0, 3]), r"vision_cfg.layers: .*4 positive integers"),
    (lambda v: v.update(layers=[3, 4, 6.0, 3]), r"vision_cfg.layers"),
    (lambda v: v.update(layers=[3, 4, True, 3]), r"vision_cfg.layers: .*4 positive integers"),
    (lambda v: v.update(width=1), r"vision_cfg.width: must be an integer >= 2"),
    (lambda v: v.update(head_width=48), r"vision_cfg.head_width: 48 gives 5 heads"),
    (lambda v: v.update(head_width=1000), r"vision_cfg.head_width"),
    (lambda v: v.update(image_size=[64, 64]), r"vision_cfg.image_size: ModifiedResNet takes one integer size"),
    (lambda v: v.update(image_size=63), r"vision_cfg.image_size: 63 gives a 2x2 feature grid"),
    (lambda v: v.update(image_size=16), r"vision_cfg.image_size"),
    (lambda v: v.update(patch_dropout=0.5), r"vision_cfg.patch_dropout is not used by the ModifiedResNet"),
    (lambda v: v.update(patch_size=[16, 16]), r"vision_cfg.patch_size is not used"),
    (lambda v: v.update(widht=8), r"unknown key vision_cfg.'widht'; did you mean 'width'"),
])
def test_bad_resnet_configs_name_the_key(mutate, match):
    from anyclip.models.config import CLIPConfig
    from anyclip.towers.config import ConfigError
    with pytest.raises(ConfigError, match=match):
        CLIPConfig.from_dict(_bad(mutate))


def test_resnet_configs_round_trip_and_match_open_clip():
    import open_clip

    import anyclip
    import anyclip.weights
    from anyclip.models.config import CLIPConfig, get_model_config
    from anyclip.towers.openai.modified_resnet import ModifiedResNetConfig
    for name in ("RN50", "RN101-quickgelu", "RN50x64"):
        cfg = get_model_config(name)
        assert isinstance(cfg.vision_cfg, ModifiedResNetConfig)
        assert CLIPConfig.from_dict(cfg.to_dict()) == cfg
        theirs = open_clip.get_model_config(name)
        assert cfg.to_dict()["vision_cfg"] == {"head_width": 64, **{k: v for k, v in theirs["vision_cfg"].items()
                                                                   if v is not None}}
        assert cfg.vision_cfg.heads == theirs["vision_cfg"]["width"] * 32 // 64
    assert sorted(anyclip.list_pretrained_tags_by_model("RN50")) == ["cc12m", "openai", "yfcc15m"]
    entry = anyclip.weights.get_pretrained_cfg("RN50-quickgelu", "openai")
    assert entry.repo_id == "timm/resnet50_clip.openai" and entry.quick_gelu


def test_force_image_size_and_wrong_images(tmp_path):
    import json

    import anyclip
    path = tmp_path / "tiny-rn.json"
    path.write_text(json.dumps(TINY))
    model = anyclip.create_model(str(path))
    assert model.image_size == (64, 64)
    bigger = anyclip.create_model(str(path), force_image_size=96)
    assert bigger.image_size == (96, 96) and bigger.preprocess_cfg.size == 96
    assert tuple(bigger.visual.attnpool.positional_embedding.shape) == (3 * 3 + 1, 256)
    with pytest.raises(ValueError, match=r"expects 2x2 \(images of 64 pixels\)"):
        model.visual(np.zeros((1, 96, 96, 3), "float32"))


def test_strict_loading_names_bad_resnet_keys():
    import anyclip
    from anyclip.weights.mapping import WeightMismatchError, load_state_dict
    state = {k: v.numpy() for k, v in _open_clip_model().state_dict().items()}
    model = anyclip.CLIP(TINY, seed=None)
    bad = dict(state)
    del bad["visual.layer2.0.downsample.0.weight"]
    bad["visual.layer1.0.bn2.running_var"] = np.ones(5, np.float32)
    with pytest.raises(WeightMismatchError) as err:
        load_state_dict(model, bad)
    assert "missing key 'visual.layer2.0.downsample.0.weight'" in str(err.value)
    assert "shape mismatch for 'visual.layer1.0.bn2.running_var'" in str(err.value)


def test_export_round_trips_through_open_clip(tmp_path):
    """Our export is open_clip's state dict (int64 0-d counters included) and open_clip loads it strictly."""
    import open_clip
    import torch

    import anyclip
    from anyclip.weights.export import save_open_clip_checkpoint
    from anyclip.weights.mapping import export_state_dict, load_state_dict
    state = {k: v.numpy() for k, v in _open_clip_model(seed=2).state_dict().items()}
    model = anyclip.CLIP(TINY, seed=None)
    load_state_dict(model, state)
    exported = export_state_dict(model)
    assert exported.keys() == state.keys()
    for key, value in state.items():
        assert exported[key].dtype == value.dtype and exported[key].shape == value.shape, key
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    save_open_clip_checkpoint(model, tmp_path / "rn")
    ref = open_clip.create_model(f"local-dir:{tmp_path / 'rn'}").eval()
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key], err_msg=key)
    images, _ = _batch(3)
    with torch.no_grad():
        expected = ref.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2), normalize=True).numpy()
    np.testing.assert_allclose(np.asarray(model.encode_image(images, normalize=True)), expected, atol=1e-5)
