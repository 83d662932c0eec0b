"""``anyclip train`` end to end on the shapes data: logs, checkpoints, resume equals an uninterrupted run."""

import json
import shutil

import numpy as np
import pytest

from anyclip.cli import main
from anyclip.data import ShapesConfig, ShapesDataset, write_csv

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_csv(ShapesDataset(ShapesConfig(image_size=32, seed=1), "train", 24), root / "data", progress=False)
    (root / "tiny.json").write_text(json.dumps(TINY))
    return root


def run(setup, name, *extra):
    return main(["train", "--train-data", str(setup / "data" / "train.csv"), "--model", str(setup / "tiny.json"),
                 "--batch-size", "4", "--accum-freq", "2", "--lr", "1e-3", "--warmup", "1", "--workers", "2",
                 "--logs", str(setup / "logs"), "--name", name, "--log-every-n-steps", "1", *extra])


def final_weights(setup, name):
    from safetensors.numpy import load_file
    return load_file(str(setup / "logs" / name / "final" / "open_clip_model.safetensors"))


def test_train_logs_checkpoints_and_resumes_exactly(setup):
    assert run(setup, "full", "--epochs", "2") == 0
    lines = [json.loads(line) for line in (setup / "logs" / "full" / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 7))  # 24 samples / (4 x 2) = 3 steps per epoch
    assert all(np.isfinite(line["loss"]) and line["lr"] > 0 for line in lines)
    ckpts = sorted(p.name for p in (setup / "logs" / "full" / "checkpoints").iterdir())
    assert ckpts == ["step_00000003", "step_00000006"]

    # the same run, as if killed after step 3 (end of epoch 1): drop the later checkpoints, resume the newest
    assert run(setup, "split", "--epochs", "2", "--save-every-n-steps", "1", "--keep", "10") == 0
    ckpt_dir = setup / "logs" / "split" / "checkpoints"
    for later in ("step_00000004", "step_00000005", "step_00000006"):
        shutil.rmtree(ckpt_dir / later)
    assert run(setup, "split", "--epochs", "2", "--resume", "latest") == 0
    full, split = final_weights(setup, "full"), final_weights(setup, "split")
    for key in full:
        np.testing.assert_allclose(split[key], full[key], rtol=0, atol=1e-6, err_msg=key)


def test_resume_mid_epoch_continues_from_the_saved_sample(setup):
    assert run(setup, "mid", "--epochs", "1", "--save-every-n-steps", "1", "--keep", "10") == 0
    ckpt_dir = setup / "logs" / "mid" / "checkpoints"
    state = json.loads((ckpt_dir / "step_00000001" / "state.json").read_text())
    assert state["epoch"] == 0 and state["position"] == 8
    uninterrupted = final_weights(setup, "mid")
    for later in ("step_00000002", "step_00000003"):
        shutil.rmtree(ckpt_dir / later)
    assert run(setup, "mid", "--epochs", "1", "--resume", "latest") == 0
    resumed = final_weights(setup, "mid")
    for key in uninterrupted:
        np.testing.assert_allclose(resumed[key], uninterrupted[key], rtol=0, atol=1e-6, err_msg=key)


def test_train_bad_input(setup, tmp_path, capsys):
    assert main(["train", "--train-data", str(tmp_path / "missing.csv"), "--model", str(setup / "tiny.json")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    assert run(setup, "bad", "--siglip") == 2
    assert "logit_bias" in capsys.readouterr().err
    assert run(setup, "bad", "--batch-size", "0") == 2
    assert "argument --batch-size: '0' is not a whole number of at least 1" in capsys.readouterr().err


def test_kill_minus_9_then_resume_latest_ends_like_an_uninterrupted_run(setup):
    """Three real SIGKILLs at random steps (seeded), each followed by ``--resume latest``: the final weights are
    bit-for-bit those of an uninterrupted run and ``train.jsonl`` has each step once."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time
    args = ["--train-data", str(setup / "data" / "train.csv"), "--model", str(setup / "tiny.json"),
            "--batch-size", "4", "--accum-freq", "2", "--lr", "1e-3", "--warmup", "1", "--workers", "2",
            "--logs", str(setup / "logs"), "--epochs", "3", "--save-every-n-steps", "1", "--keep", "2",
            "--log-every-n-steps", "1", "--name", "killed"]
    assert main(["train", *args[:-1], "clean"]) == 0
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    log = setup / "logs" / "killed" / "train.jsonl"

    def logged():
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line)["step"] for line in lines if line.endswith("}")]

    for kill_at in sorted(random.Random(21).sample(range(2, 9), 3)):  # 9 steps: 3 epochs of 3
        resume = ["--resume", "latest"] if log.exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "anyclip.cli", "train", *args, *resume], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and max(logged(), default=0) < kill_at:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"training finished before it could be killed at {kill_at}"
        assert not (setup / "logs" / "killed" / "final").exists()
    assert main(["train", *args, "--resume", "latest"]) == 0
    assert logged() == list(range(1, 10))  # each step once, however many times it ran
    clean, killed = final_weights(setup, "clean"), final_weights(setup, "killed")
    for key in clean:  # jax on CPU is deterministic here: bit-for-bit, not just close
        np.testing.assert_array_equal(killed[key], clean[key], err_msg=key)


def test_resume_falls_back_past_a_damaged_checkpoint_and_cleans_up(setup, capsys):
    assert run(setup, "damaged", "--epochs", "1", "--save-every-n-steps", "1", "--keep", "10") == 0
    uninterrupted = final_weights(setup, "damaged")
    ckpt_dir = setup / "logs" / "damaged" / "checkpoints"
    newest = ckpt_dir / "step_00000003" / "optimizer.safetensors"
    size = newest.stat().st_size
    newest.write_bytes(newest.read_bytes()[:100])  # a copy or disk cut short
    stale = ckpt_dir / ".step_00000004.x1y2.tmp"  # a save killed half-way
    stale.mkdir()
    (stale / "state.json").write_text("{")
    capsys.readouterr()
    assert run(setup, "damaged", "--epochs", "1", "--resume", "latest") == 0
    err = capsys.readouterr().err
    assert (f"skipped {ckpt_dir / 'step_00000003'}: optimizer.safetensors has 100 bytes, checksums.json says "
            f"{size}; resuming from step_00000002") in err
    assert f"removed {stale}" in err and not stale.exists()
    assert "Traceback" not in err
    steps = [json.loads(line)["step"] for line in (setup / "logs" / "damaged" / "train.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    resumed = final_weights(setup, "damaged")
    for key in uninterrupted:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)


def test_resume_latest_with_nothing_yet_starts_fresh_and_logs_progress_off_tty(setup, capsys):
    assert run(setup, "fresh", "--epochs", "1", "--resume", "latest", "--log-every-seconds", "1e-9") == 0
    err = capsys.readouterr().err  # captured: not a terminal, so plain progress lines instead of a bar
    ckpt_dir = setup / "logs" / "fresh" / "checkpoints"
    assert f"--resume latest: no checkpoint in {ckpt_dir} yet; starting from step 0" in err
    progress = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split(" (")[0] for line in progress] == ["step 1/3", "step 2/3", "step 3/3"]
    assert all(" epoch 1/1 loss " in line and " lr " in line and " samples/s " in line and " ETA " in line
               for line in progress)
    assert progress[-1].endswith("ETA 0:00:00")
    assert run(setup, "quiet", "--epochs", "1", "--log-every-seconds", "0") == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]


def test_a_second_train_into_a_busy_run_folder_exits_1_naming_the_first(setup, capsys):
    import subprocess
    import sys
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom anyclip.output_lock import locked_output\n"
         "with locked_output(sys.argv[1], 'anyclip train --name busy'):\n print('held', flush=True)\n"
         " time.sleep(120)", str(setup / "logs" / "busy")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert run(setup, "busy", "--epochs", "1") == 1
        err = capsys.readouterr().err
        assert f"is in use by `anyclip train --name busy` (pid {holder.pid}" in err
        assert "Traceback" not in err and not (setup / "logs" / "busy" / "train.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(setup, "busy", "--epochs", "1") == 0  # the holder is gone: its lock is stale, taken over


@pytest.mark.slow  # full sweep: the resume tests cover epoch-end checkpoints
def test_an_epochs_last_step_is_saved_once_as_the_epochs_end(setup, monkeypatch):
    import anyclip.train.checkpoint as checkpoint
    saves, real = [], checkpoint.save_training_checkpoint
    def counting(folder, model, optimizer, step, state, **kw):
        saves.append((step, state["epoch"], state["position"]))
        return real(folder, model, optimizer, step, state, **kw)
    monkeypatch.setattr(checkpoint, "save_training_checkpoint", counting)
    assert run(setup, "every3", "--epochs", "2", "--save-every-n-steps", "3") == 0  # 3 steps per epoch
    assert saves == [(3, 1, 0), (6, 2, 0)]
    saves.clear()
    assert run(setup, "every2", "--epochs", "2", "--save-every-n-steps", "2") == 0
    assert saves == [(2, 0, 16), (3, 1, 0), (4, 1, 8), (6, 2, 0)]


def test_eval_during_training_logs_zero_shot_retrieval_and_shapes(setup, tmp_path):
    import anyclip
    from anyclip.data.labelled import read_image_folder
    from anyclip.data.retrieval import read_retrieval_csv
    from anyclip.eval import zero_shot_classification, zero_shot_retrieval
    csv_path = setup / "data" / "train.csv"
    rows = [line.split("\t") for line in csv_path.read_text().splitlines()[1:]]
    for path, _, shape, *_ in rows:  # an ImageFolder of the same images, labelled by shape
        (tmp_path / "zs" / shape).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / "zs" / shape)
    assert run(setup, "evals", "--epochs", "2", "--val-data", str(csv_path), "--zeroshot-data",
               str(tmp_path / "zs"), "--zeroshot-shapes", "16", "--zeroshot-frequency", "2") == 0
    records = [json.loads(line) for line in (setup / "logs" / "evals" / "eval.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in records] == [(3, 1), (6, 2)]  # val every epoch, zero-shot every 2
    assert not any(k.startswith(("zeroshot/", "shapes/")) for k in records[0])
    last = records[-1]
    assert {"shapes/shape/acc1", "shapes/colour/acc1", "shapes/combination/acc1"} <= set(last)
    # the numbers are those of anyclip eval on the final model
    model = anyclip.create_model(str(setup / "tiny.json"), str(setup / "logs" / "evals" / "final"))
    tokenizer = anyclip.get_tokenizer(str(setup / "tiny.json"))
    retrieval = zero_shot_retrieval(model, tokenizer, read_retrieval_csv(csv_path, separator="\t"), progress=False).metrics
    for key, value in retrieval.items():
        assert last[f"val/{key}"] == pytest.approx(value, abs=1e-6), key
    zs = zero_shot_classification(model, tokenizer, read_image_folder(tmp_path / "zs"), progress=False).metrics
    for key, value in zs.items():
        assert last[f"zeroshot/{key}"] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow  # full sweep: the Python API path is the CLI path (TrainConfig.from_args)
def test_python_api_trains_from_a_config_as_the_command_does(setup):
    from anyclip.cli import build_parser
    from anyclip.train import TrainConfig, train
    flags = ["--train-data", str(setup / "data" / "train.csv"), "--model", str(setup / "tiny.json"),
             "--batch-size", "4", "--accum-freq", "2", "--lr", "1e-3", "--warmup", "1", "--workers", "2",
             "--logs", str(setup / "logs"), "--log-every-n-steps", "1", "--epochs", "1"]
    assert main(["train", *flags, "--name", "cli"]) == 0
    config = TrainConfig.from_flags(train_data=setup / "data" / "train.csv", model=str(setup / "tiny.json"),
                                    batch_size=4, accum_freq=2, lr=1e-3, warmup=1, workers=2, logs=setup / "logs",
                                    log_every_n_steps=1, epochs=1, name="api")
    assert train(config) == setup / "logs" / "api"
    api, cli = final_weights(setup, "api"), final_weights(setup, "cli")
    for key in cli:
        np.testing.assert_array_equal(api[key], cli[key], err_msg=key)
    # params.json: the keys and values of the parsed flags, from either side
    parsed = build_parser().parse_args(["train", *flags, "--name", "api"])
    expected = json.loads(json.dumps({k: v for k, v in vars(parsed).items() if not callable(v)}))
    assert json.loads((setup / "logs" / "api" / "params.json").read_text()) == expected


def test_final_export_comes_with_a_pretrained_entry(setup):
    import hashlib
    assert run(setup, "entry", "--epochs", "1") == 0
    final = setup / "logs" / "entry" / "final"
    entry = json.loads((final / "pretrained_entry.json").read_text())
    assert entry["sha256"] == hashlib.sha256((final / "open_clip_model.safetensors").read_bytes()).hexdigest()
    config = json.loads((final / "open_clip_config.json").read_text())["preprocess_cfg"]
    assert entry["mean"] == config["mean"] and entry["std"] == config["std"]


def test_eval_flags_are_checked_before_training(setup, tmp_path, capsys):
    assert run(setup, "badeval", "--zeroshot-data", str(tmp_path / "nowhere")) == 1
    assert "nowhere" in capsys.readouterr().err
    assert run(setup, "badeval", "--zeroshot-frequency", "0") == 2
    assert "argument --zeroshot-frequency: '0' is not a whole number of at least 1" in capsys.readouterr().err


def test_aug_cfg_takes_open_clips_key_value_syntax(setup, capsys):
    from anyclip.train.config import parse_aug_cfg
    assert parse_aug_cfg(["scale=(0.5, 1.0)", "color_jitter=(0.4,0.4,0.4,0.1)", "color_jitter_prob=0.8"]) == {
        "scale": (0.5, 1.0), "color_jitter": (0.4, 0.4, 0.4, 0.1), "color_jitter_prob": 0.8}
    assert run(setup, "aug", "--epochs", "1", "--aug-cfg", "scale=(0.5,1.0)", "gray_scale_prob=0.5") == 0
    assert run(setup, "badaug", "--aug-cfg", "re_prob=0.3") == 2
    assert "--aug-cfg 're_prob=0.3'" in capsys.readouterr().err
    assert run(setup, "badaug", "--aug-cfg", "scale=(0, 1.0)") == 2
    assert "scale must satisfy" in capsys.readouterr().err


def test_pretrained_of_another_image_size_needs_resize_pos_embed(setup, capsys):
    assert run(setup, "small", "--epochs", "1") == 0
    bigger = json.loads(json.dumps(TINY))
    bigger["vision_cfg"]["image_size"] = 48  # a 6x6 grid; the weights were trained on a 4x4 one
    (setup / "tiny48.json").write_text(json.dumps(bigger))
    weights = str(setup / "logs" / "small" / "final" / "open_clip_model.safetensors")
    flags = ["train", "--train-data", str(setup / "data" / "train.csv"), "--model", str(setup / "tiny48.json"),
             "--pretrained", weights, "--batch-size", "4", "--epochs", "1", "--logs", str(setup / "logs"),
             "--workers", "2"]
    capsys.readouterr()
    assert main([*flags, "--name", "big-strict"]) != 0
    err = capsys.readouterr().err
    assert "'visual.positional_embedding': checkpoint (17, 64), model (37, 64)" in err and "Traceback" not in err
    assert main([*flags, "--name", "big-resized", "--resize-pos-embed"]) == 0
