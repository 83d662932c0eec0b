"""Training checkpoints: resume continues exactly, crashes while writing lose nothing, keep-last-N."""

from pathlib import Path

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
    from anyclip.train.checkpoint import (
        list_training_checkpoints,
        load_training_checkpoint,
        resolve_checkpoint,
        save_training_checkpoint,
    )
    data, state = case
    model, optimizer, step = _trainer(state)
    step(data["images"], data["tokens"])
    for s in (1, 2, 3, 4):
        save_training_checkpoint(tmp_path / "ckpt", model, optimizer, step=s, keep=2)
    assert [p.name for p in list_training_checkpoints(tmp_path / "ckpt")] == ["step_00000003", "step_00000004"]
    assert resolve_checkpoint(tmp_path / "empty", "latest") is None  # nothing yet: the caller starts fresh
    from anyclip.errors import DataError
    with pytest.raises(DataError, match="not a training checkpoint"):
        resolve_checkpoint(tmp_path, str(tmp_path))
    model.visual.trainable = False  # fewer trainable variables: the saved optimiser state does not fit
    from anyclip.train.optim import create_optimizer
    other = create_optimizer(model)
    other.build(model.trainable_variables)
    with pytest.raises(ValueError, match="optimizer variables saved"):
        load_training_checkpoint(tmp_path / "ckpt" / "step_00000004", model, other)


@pytest.fixture(scope="module")
def saved(case, tmp_path_factory):
    """Three checkpoints (steps 1-3) of one small model, copied afresh by each test that damages them."""
    from anyclip.train.checkpoint import save_training_checkpoint
    data, state = case
    model, optimizer, step = _trainer(state)
    folder = tmp_path_factory.mktemp("saved") / "checkpoints"
    for s in (1, 2, 3):
        step(data["images"], data["tokens"])
        save_training_checkpoint(folder, model, optimizer, step=s)
    return folder


def _copy(saved, tmp_path):
    import shutil
    return Path(shutil.copytree(saved, tmp_path / "checkpoints"))


def test_checksums_record_every_files_size_and_sha256(saved):
    import hashlib
    import json
    folder = saved / "step_00000003"
    files = json.loads((folder / "checksums.json").read_text())["files"]
    assert set(files) == {p.name for p in folder.iterdir()} - {"checksums.json"}
    assert {"state.json", "optimizer.safetensors", "open_clip_model.safetensors"} <= set(files)
    for name, entry in files.items():
        data = (folder / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("damage", ["truncate", "flip", "missing"])
def test_latest_skips_a_damaged_checkpoint_with_one_line(saved, tmp_path, damage):
    from anyclip.train.checkpoint import resolve_checkpoint, verify_checkpoint
    folder = _copy(saved, tmp_path)
    target = folder / "step_00000003" / "optimizer.safetensors"
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data[-5] ^= 0xFF  # same size, other content
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    lines = []
    assert resolve_checkpoint(folder, "latest", notify=lines.append) == folder / "step_00000002"
    assert len(lines) == 1
    assert lines[0].startswith(f"skipped {folder / 'step_00000003'}: optimizer.safetensors ")
    assert lines[0].endswith("; resuming from step_00000002")
    expected = {"truncate": f"has {len(data) // 2} bytes, checksums.json says {len(data)}",
                "flip": "does not match its sha256", "missing": "is missing"}[damage]
    assert expected in lines[0]
    assert expected in verify_checkpoint(folder / "step_00000003")
    assert verify_checkpoint(folder / "step_00000002") is None


def test_a_named_damaged_checkpoint_is_a_data_error_naming_the_file(saved, tmp_path):
    from anyclip.errors import DataError
    from anyclip.train.checkpoint import resolve_checkpoint
    folder = _copy(saved, tmp_path)
    state = folder / "step_00000002" / "state.json"
    state.write_text(state.read_text().replace("2", "7"))
    with pytest.raises(DataError, match=r"step_00000002: state.json does not match its sha256"):
        resolve_checkpoint(folder, str(folder / "step_00000002"))
    assert resolve_checkpoint(folder, str(folder / "step_00000003")) == folder / "step_00000003"


def test_all_damaged_is_a_data_error_listing_each(saved, tmp_path):
    from anyclip.errors import DataError
    from anyclip.train.checkpoint import resolve_checkpoint
    folder = _copy(saved, tmp_path)
    for step in (1, 2, 3):
        (folder / f"step_{step:08d}" / "open_clip_model.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="no checkpoint in .* is intact.*step_00000001: open_clip_model"):
        resolve_checkpoint(folder, "latest", notify=lambda line: None)


def test_checkpoints_without_checksums_are_checked_by_loading_them(saved, tmp_path):
    """Checkpoints written before checksums.json existed: read in full; a damaged one is skipped, not a traceback."""
    from anyclip.train.checkpoint import resolve_checkpoint, verify_checkpoint
    folder = _copy(saved, tmp_path)
    for step in (1, 2, 3):
        (folder / f"step_{step:08d}" / "checksums.json").unlink()
    assert verify_checkpoint(folder / "step_00000003") is None
    target = folder / "step_00000003" / "optimizer.safetensors"
    target.write_bytes(target.read_bytes()[:-100])
    lines = []
    assert resolve_checkpoint(folder, "latest", notify=lines.append) == folder / "step_00000002"
    assert lines and lines[0].startswith(f"skipped {folder / 'step_00000003'}: optimizer.safetensors does not load")
    (folder / "step_00000002" / "optimizer.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    assert "optimizer.safetensors does not load" in verify_checkpoint(folder / "step_00000002")


def test_stale_temporary_folders_are_removed(saved, tmp_path):
    from anyclip.train.checkpoint import list_training_checkpoints, remove_stale_temporaries
    folder = _copy(saved, tmp_path)
    (folder / ".step_00000004.abc123.tmp").mkdir()
    (folder / ".step_00000004.abc123.tmp" / "optimizer.safetensors").write_bytes(b"half")
    (folder / "notes.txt").write_text("mine")
    assert remove_stale_temporaries(folder) == [folder / ".step_00000004.abc123.tmp"]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "step_00000001", "step_00000002",
                                                        "step_00000003"]
    assert len(list_training_checkpoints(folder)) == 3
    assert remove_stale_temporaries(tmp_path / "nowhere") == []
