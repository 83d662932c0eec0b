"""open_clip's optimiser recipe: schedules step by step, weight-decay groups and AdamW updates."""

import math

import numpy as np
import pytest
import torch

from anyclip.train.optim import WarmupSchedule, create_optimizer


def open_clip_lrs(kind, steps, **kw):
    from open_clip_train import scheduler
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    if kind == "cosine":
        fn = scheduler.cosine_lr(opt, kw["base_lr"], kw["warmup"], kw["total_steps"])
    elif kind == "const":
        fn = scheduler.const_lr(opt, kw["base_lr"], kw["warmup"], kw["total_steps"])
    else:
        fn = scheduler.const_lr_cooldown(opt, kw["base_lr"], kw["warmup"], kw["total_steps"], kw["cooldown_steps"],
                                         kw["cooldown_power"], kw["cooldown_end_lr"])
    return np.array([fn(s) for s in range(steps)])


@pytest.mark.parametrize("kind,kw", [
    ("cosine", {"base_lr": 5e-4, "warmup": 10, "total_steps": 100}),
    ("cosine", {"base_lr": 1e-3, "warmup": 0, "total_steps": 37}),
    ("const", {"base_lr": 2e-4, "warmup": 7, "total_steps": 50}),
    ("const-cooldown", {"base_lr": 1e-3, "warmup": 5, "total_steps": 60, "cooldown_steps": 20,
                        "cooldown_power": 1.0, "cooldown_end_lr": 1e-5}),
    ("const-cooldown", {"base_lr": 1e-3, "warmup": 5, "total_steps": 60, "cooldown_steps": 30,
                        "cooldown_power": 2.0, "cooldown_end_lr": 0.0}),
])
def test_schedules_equal_open_clip_train(kind, kw):
    import keras
    ours = WarmupSchedule(kind=kind, **kw)
    steps = kw["total_steps"]
    got = np.array([float(keras.ops.convert_to_numpy(ours(s))) for s in range(steps)])
    np.testing.assert_allclose(got, open_clip_lrs(kind, steps, **kw), rtol=1e-5, atol=1e-6 * kw["base_lr"])
    again = WarmupSchedule.from_config(ours.get_config())
    assert float(keras.ops.convert_to_numpy(again(3))) == pytest.approx(got[3])


@pytest.mark.parametrize("kwargs,match", [
    ({"base_lr": 1e-3, "kind": "linear"}, "unknown learning-rate schedule 'linear'"),
    ({"base_lr": 1e-3, "warmup": 10, "total_steps": 10}, "warmup"),
    ({"base_lr": 1e-3, "total_steps": 10, "kind": "const-cooldown", "cooldown_steps": 0}, "cooldown_steps"),
    ({"base_lr": -1.0}, "lr >= 0"),
])
def test_bad_schedules_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupSchedule(**kwargs)


def test_adamw_steps_and_decay_groups_equal_open_clip():
    """Three AdamW steps with open_clip_train's parameter groups, on the same gradients."""
    import keras
    import open_clip
    from reference import randomize
    from test_train_step import TINY, anyclip_model

    from anyclip.weights.mapping import TRANSFORMS, model_entries

    ref = open_clip.model.CLIP(**TINY)
    ref.load_state_dict(randomize(ref.state_dict(), 3))
    state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    model = anyclip_model(state)
    named = list(ref.named_parameters())
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    schedule = dict(base_lr=1e-2, warmup=2, total_steps=5)
    # eps ~ 0: Keras adds eps before the bias correction, torch after; without it the two are the same update.
    torch_opt = torch.optim.AdamW([{"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
                                   {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.2}],
                                  lr=schedule["base_lr"], betas=(0.9, 0.98), eps=1e-30)
    from open_clip_train.scheduler import cosine_lr
    lr_fn = cosine_lr(torch_opt, schedule["base_lr"], schedule["warmup"], schedule["total_steps"])
    ours = create_optimizer(model, lr=1e-2, wd=0.2, eps=1e-30, schedule=WarmupSchedule(**schedule))
    entries = model_entries(model)
    variables = [entries[n][0] for n, _ in named]
    ours.build(variables)
    excluded = {n for n, p in named if exclude(n, p)}
    assert excluded == {n for n, _ in named if not ours._use_weight_decay(entries[n][0])}
    rng = np.random.default_rng(0)
    for step in range(3):
        grads = {n: rng.standard_normal(p.shape).astype(np.float32) for n, p in named}
        lr_fn(step)
        for n, p in named:
            p.grad = torch.from_numpy(grads[n])
        torch_opt.step()
        ours.apply([TRANSFORMS[entries[n][1]][0](grads[n]) for n, _ in named], variables)
    for n, p in named:
        ours_value = TRANSFORMS[entries[n][1]][1](np.asarray(keras.ops.convert_to_numpy(entries[n][0])))
        np.testing.assert_allclose(ours_value, p.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=n)


def test_bad_optimizer_settings_are_refused():
    from test_train_step import TINY  # noqa: F401

    import anyclip
    model = anyclip.create_model("ViT-S-32", load_weights=False)
    with pytest.raises(ValueError, match="beta2 must be in"):
        create_optimizer(model, beta2=1.0)
    with pytest.raises(ValueError, match="wd must be"):
        create_optimizer(model, wd=math.nan)
