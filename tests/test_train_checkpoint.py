"""Training checkpoints: resume continues exactly, crashes while writing lose nothing, keep-last-N."""

import numpy as np
import pytest

from test_train_step import anyclip_model, make_case


@pytest.fixture(scope="module")
def case():
    data, state, _ = make_case(seed=5)
    return data, state


def _trainer(state, lr_steps=6):
    from anyclip.train import TrainStep, WarmupSchedule, clip_loss, create_optimizer
    model = anyclip_model(state)
    optimizer = create_optimizer(model, schedule=WarmupSchedule(1e-3, warmup=1, total_steps=lr_steps))
    return model, optimizer, TrainStep(model, optimizer, lambda o: clip_loss(**o))


def _weights(model):
    from anyclip.weights import export_state_dict
    return export_state_dict(model)


def test_resume_continues_exactly_and_loads_in_open_clip(case, tmp_path):
    import open_clip
    import torch

    from anyclip.train.checkpoint import load_training_checkpoint, resolve_checkpoint, save_training_checkpoint
    data, state = case
    model, optimizer, step = _trainer(state)
    for i in range(4):
        step(data["images"], data["tokens"])
        if i == 1:
            save_training_checkpoint(tmp_path, model, optimizer, step=2, state={"epoch": 0, "samples_seen": 16})
    uninterrupted = _weights(model)

    model2, optimizer2, step2 = _trainer(state)
    optimizer2.build(model2.trainable_variables)
    resumed = load_training_checkpoint(resolve_checkpoint(tmp_path, "latest"), model2, optimizer2)
    assert resumed == {"epoch": 0, "samples_seen": 16, "step": 2}
    for _ in range(2):
        step2(data["images"], data["tokens"])
    for key, value in _weights(model2).items():
        np.testing.assert_allclose(value, uninterrupted[key], rtol=0, atol=1e-6, err_msg=key)

    ref = open_clip.create_model(f"local-dir:{tmp_path / 'step_00000002'}")  # the weights are open_clip's layout
    assert set(ref.state_dict()) == set(uninterrupted)
    assert isinstance(ref.logit_scale, torch.nn.Parameter)


def test_crash_while_writing_keeps_the_previous_checkpoint(case, tmp_path, monkeypatch):
    import safetensors.numpy

    from anyclip.train.checkpoint import list_training_checkpoints, load_training_checkpoint, save_training_checkpoint
    data, state = case
    model, optimizer, step = _trainer(state)
    step(data["images"], data["tokens"])
    save_training_checkpoint(tmp_path, model, optimizer, step=1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_training_checkpoint(tmp_path, model, optimizer, step=2)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001"]  # no temp folder, no partial step_2
    model2, optimizer2, _ = _trainer(state)
    optimizer2.build(model2.trainable_variables)
    assert load_training_checkpoint(list_training_checkpoints(tmp_path)[-1], model2, optimizer2)["step"] == 1


def test_keep_last_n_and_errors(case, tmp_path):
    from anyclip.train.checkpoint import (list_training_checkpoints, load_training_checkpoint, resolve_checkpoint,
                                          save_training_checkpoint)
    data, state = case
    model, optimizer, step = _trainer(state)
    step(data["images"], data["tokens"])
    for s in (1, 2, 3, 4):
        save_training_checkpoint(tmp_path / "ckpt", model, optimizer, step=s, keep=2)
    assert [p.name for p in list_training_checkpoints(tmp_path / "ckpt")] == ["step_00000003", "step_00000004"]
    with pytest.raises(FileNotFoundError, match="no training checkpoint to resume"):
        resolve_checkpoint(tmp_path / "empty", "latest")
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        resolve_checkpoint(tmp_path, str(tmp_path))
    model.visual.trainable = False  # fewer trainable variables: the saved optimiser state does not fit
    from anyclip.train.optim import create_optimizer
    other = create_optimizer(model)
    other.build(model.trainable_variables)
    with pytest.raises(ValueError, match="optimizer variables saved"):
        load_training_checkpoint(tmp_path / "ckpt" / "step_00000004", model, other)
