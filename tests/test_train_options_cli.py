"""``anyclip train`` with partial locking, gradient checkpointing, distillation, EMA and WiSE-FT together.

One run from ``--pretrained`` writes checkpoints every step; its first logged loss is recomputed by hand
(contrastive + distillation terms), its frozen weights are checked against the pretrained ones, and its
``final_wise_ft_*`` / ``final_ema`` exports against their definitions. A copy cut back to step 2 and
resumed must end with the same weights and EMA.
"""

import json
import shutil

import numpy as np
import pytest

from anyclip.cli import main
from anyclip.data import ShapesConfig, ShapesDataset, write_csv

STUDENT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
TEACHER = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
BATCH = 8  # 24 samples: 3 steps per epoch


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import anyclip
    from anyclip.weights.export import save_open_clip_checkpoint
    root = tmp_path_factory.mktemp("train-options")
    write_csv(ShapesDataset(ShapesConfig(image_size=32, seed=1), "train", 24), root / "data", progress=False)
    for name, cfg, seed in (("student", STUDENT, 5), ("teacher", TEACHER, 7)):
        (root / f"{name}.json").write_text(json.dumps(cfg))
        save_open_clip_checkpoint(anyclip.create_model(str(root / f"{name}.json"), seed=seed),
                                  root / f"{name}.safetensors")
    return root


def args(setup, name, *extra):
    return ["train", "--train-data", str(setup / "data" / "train.csv"), "--model", str(setup / "student.json"),
            "--pretrained", str(setup / "student.safetensors"), "--batch-size", str(BATCH), "--epochs", "2",
            "--lr", "1e-3", "--warmup", "1", "--workers", "2", "--logs", str(setup / "logs"), "--name", name,
            "--log-every-n-steps", "1", "--lock-image", "--lock-image-unlocked-groups", "1",
            "--grad-checkpointing", "--distill-model", str(setup / "teacher.json"),
            "--distill-pretrained", str(setup / "teacher.safetensors"), "--ema", "--ema-decay", "0.5",
            "--wise-ft", "0,0.5,1", *extra]


def weights(path):
    from safetensors.numpy import load_file
    return load_file(str(path / "open_clip_model.safetensors"))


def first_step_losses(setup):
    """Contrastive and distillation loss of step 1, from the pretrained weights, by hand in numpy."""
    import keras

    import anyclip
    from anyclip.train import TrainBatches, open_train_data
    student, preprocess, _ = anyclip.create_model_and_transforms(str(setup / "student.json"),
                                                                 str(setup / "student.safetensors"))
    teacher = anyclip.create_model(str(setup / "teacher.json"), str(setup / "teacher.safetensors"))
    batches = TrainBatches(open_train_data(str(setup / "data" / "train.csv")), preprocess,
                           anyclip.get_tokenizer(str(setup / "student.json")), BATCH, seed=0, workers=2)
    batch = next(iter(batches.epoch(0)))
    inputs = {"images": batch.images, "texts": batch.texts}
    s = {k: np.asarray(keras.ops.convert_to_numpy(v), np.float64) for k, v in student(inputs, training=True).items()}
    t = {k: np.asarray(keras.ops.convert_to_numpy(v), np.float64) for k, v in teacher(inputs).items()}

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    logits = s["logit_scale"] * s["image_features"] @ s["text_features"].T
    teacher_logits = t["logit_scale"] * t["image_features"] @ t["text_features"].T
    contrastive = -(np.trace(log_softmax(logits)) + np.trace(log_softmax(logits.T))) / (2 * BATCH)
    distill = 0.0
    for student_l, teacher_l in ((logits, teacher_logits), (logits.T, teacher_logits.T)):
        distill -= (np.exp(log_softmax(teacher_l)) * log_softmax(student_l)).sum(axis=1).mean() / 2
    return contrastive, distill


def test_options_run_exports_and_resumes(setup):
    assert main(args(setup, "full", "--save-every-n-steps", "1", "--keep", "10")) == 0
    run = setup / "logs" / "full"
    lines = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 7))
    contrastive, distill = first_step_losses(setup)
    assert lines[0]["contrastive_loss"] == pytest.approx(contrastive, abs=2e-5)
    assert lines[0]["distill_loss"] == pytest.approx(distill, abs=2e-5)
    assert lines[0]["loss"] == pytest.approx(contrastive + distill, abs=4e-5)

    from safetensors.numpy import load_file
    pretrained = load_file(str(setup / "student.safetensors"))
    final, ema = weights(run / "final"), weights(run / "final_ema")
    # --lock-image-unlocked-groups 1: only visual.proj of the image tower moved
    for key in pretrained:
        if key.startswith("visual.") and key != "visual.proj":
            np.testing.assert_array_equal(final[key], pretrained[key], err_msg=key)
    assert not np.array_equal(final["visual.proj"], pretrained["visual.proj"])
    assert not np.array_equal(final["text_projection"], pretrained["text_projection"])
    # the EMA lags the weights; frozen weights are not averaged and stay put
    assert not np.array_equal(ema["text_projection"], final["text_projection"])
    np.testing.assert_array_equal(ema["visual.conv1.weight"], pretrained["visual.conv1.weight"])
    # WiSE-FT: exact interpolation between the pretrained and the final weights
    wise = {alpha: weights(run / f"final_wise_ft_{alpha}") for alpha in ("0", "0.5", "1")}
    for key in pretrained:
        np.testing.assert_array_equal(wise["0"][key], pretrained[key], err_msg=key)
        np.testing.assert_array_equal(wise["1"][key], final[key], err_msg=key)
        np.testing.assert_array_equal(wise["0.5"][key], 0.5 * pretrained[key] + 0.5 * final[key], err_msg=key)

    # cut a copy back to step 2 (mid-epoch) and resume: same final weights and EMA
    shutil.copytree(run, setup / "logs" / "split")
    split = setup / "logs" / "split"
    for later in [p for p in (split / "checkpoints").iterdir() if p.name > "step_00000002"]:
        shutil.rmtree(later)
    for folder in split.glob("final*"):
        shutil.rmtree(folder)
    assert main(args(setup, "split", "--resume", "latest")) == 0
    for name in ("final", "final_ema", "final_wise_ft_0.5"):
        ours, ref = weights(split / name), weights(run / name)
        for key in ref:
            np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=1e-6, err_msg=f"{name}: {key}")


def test_option_flags_are_checked(setup, capsys):
    base = ["train", "--train-data", str(setup / "data" / "train.csv"), "--model", str(setup / "student.json"),
            "--logs", str(setup / "logs"), "--name", "bad"]
    cases = [
        (["--distill-model", str(setup / "teacher.json")], "both --distill-model and --distill-pretrained"),
        (["--wise-ft", "0.5"], "give --pretrained"),
        (["--pretrained", str(setup / "student.safetensors"), "--wise-ft", "0.5,2"], "'2' is not a number in [0, 1]"),
        (["--lock-image", "--lock-image-unlocked-groups", "-1"],
         "argument --lock-image-unlocked-groups: '-1' is not a whole number of at least 0"),
        (["--ema", "--ema-decay", "1.5"], "argument --ema-decay: '1.5' is not a number from 0 up to (not including) 1"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, extra


def test_fp16_skipped_steps_still_move_the_lr_schedule(setup):
    """open_clip_train sets the LR from the loop's step, so steps the float16 loss scaler skips move it on."""
    import math

    from safetensors.numpy import load_file
    run = ["train", "--train-data", str(setup / "data" / "train.csv"), "--model", str(setup / "student.json"),
           "--batch-size", str(BATCH), "--epochs", "2", "--lr", "1e-3", "--warmup", "2", "--workers", "1",
           "--logs", str(setup / "logs"), "--name", "fp16", "--log-every-n-steps", "1", "--precision", "amp_fp16"]
    assert main(run) == 0
    lines = [json.loads(line) for line in (setup / "logs" / "fp16" / "train.jsonl").read_text().splitlines()]
    skipped = sum(line["step_skipped"] for line in lines)
    assert len(lines) == 6 and 1 <= skipped < 6  # the first steps overflow at the initial scale of 2**16
    state = load_file(str(setup / "logs" / "fp16" / "checkpoints" / "step_00000006" / "optimizer.safetensors"))
    inner = {k.rsplit("/", 1)[-1]: v for k, v in state.items() if "/adam_w" in k}  # not the loss-scale wrapper's
    lr, iterations = inner["learning_rate"], inner["iteration"]
    assert int(iterations) == 6 - skipped
    # open_clip_train's cosine_lr at loop step 5 of 6, after 2 warmup steps: 0.5 (1 + cos(pi * 3 / 4)) * lr
    np.testing.assert_allclose(float(lr), 0.5 * (1 + math.cos(math.pi * 3 / 4)) * 1e-3, rtol=1e-6)
