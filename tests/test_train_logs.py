"""Training logs (JSON lines, TensorBoard) and ``anyclip plot``: what is written is what is read back and drawn."""

import json
import struct
import sys

import numpy as np
import pytest
from PIL import Image

from anyclip.cli import build_parser, main
from anyclip.train.logs import RunLog, parse_report_to, read_log
from anyclip.train.plot import load_run, plot_run, plot_runs

C0, C1 = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's first two line colours: run 1, run 2


def train_record(step, loss=None):
    return {"step": step, "epoch": step // 4, "loss": 5.0 / step if loss is None else loss, "lr": 1e-4 * step,
            "logit_scale": 14.0 + step, "samples_per_second": 100.0, "skipped": 0}


def make_run(folder, steps=range(1, 9), evals=(4, 8)):
    with RunLog(folder) as run_log:
        for step in steps:
            run_log.log(train_record(step))
        for step in evals:
            run_log.log({"step": step, "epoch": step // 4, "shapes/shape/acc1": 0.1 * step,
                         "shapes/count/acc1": 0.05 * step, "val/image_retrieval_recall@1": 0.02 * step,
                         "val/image_retrieval_mean_rank": 10.0 / step}, kind="eval")
    return folder


def read_event_scalars(folder):
    """``{tag: [(step, value)]}`` from the TFRecord-framed event files, checking every record's CRCs."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c
    scalars = {}
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            header = data[pos:pos + 8]
            (n,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked_crc32c(header)
            body = data[pos + 12:pos + 12 + n]
            assert struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])[0] == masked_crc32c(body)
            pos += n + 16
            event = Event.FromString(body)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def colour_pixels(png, rgb, tol=12):
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=-1) <= tol).sum())


def test_runlog_writes_plain_json_lines_and_reads_them_back(tmp_path):
    with RunLog(tmp_path / "run") as run_log:
        written = run_log.log({"step": np.int64(3), "epoch": 0, "loss": np.float32(2.5), "lr": np.array(1e-3),
                               "flag": np.bool_(True), "note": "warmup"})
    assert written == {"step": 3, "epoch": 0, "loss": 2.5, "lr": 1e-3, "flag": True, "note": "warmup"}
    assert type(written["step"]) is int and type(written["loss"]) is float and type(written["flag"]) is bool
    lines = (tmp_path / "run" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [written]
    assert read_log(tmp_path / "run" / "train.jsonl") == [written]
    assert not (tmp_path / "run" / "eval.jsonl").exists() and not (tmp_path / "run" / "tensorboard").exists()


def test_resume_appends_and_a_line_cut_by_a_crash_is_skipped(tmp_path, caplog):
    run = tmp_path / "run"
    make_run(run, steps=[1, 2], evals=[2])
    with open(run / "train.jsonl", "a") as f:
        f.write('{"step": 3, "epoch": 0, "lo')  # the process died mid-write
    with caplog.at_level("WARNING", logger="anyclip.train"):
        assert [r["step"] for r in read_log(run / "train.jsonl")] == [1, 2]
    assert "train.jsonl" in caplog.text and "[3]" in caplog.text
    make_run(run, steps=[3, 4], evals=[4])  # resume: appends, never truncates
    caplog.clear()
    with caplog.at_level("WARNING", logger="anyclip.train"):
        assert [r["step"] for r in read_log(run / "train.jsonl")] == [1, 2, 3, 4]
    assert "skipped 1 unreadable line(s) [3]" in caplog.text
    assert [r["step"] for r in read_log(run / "eval.jsonl")] == [2, 4]


def test_log_errors_name_the_input(tmp_path):
    run_log = RunLog(tmp_path / "run")
    with pytest.raises(ValueError, match="integer 'step'"):
        run_log.log({"loss": 1.0})
    with pytest.raises(TypeError, match="'weights'"):
        run_log.log({"step": 1, "weights": np.zeros(3)})
    with pytest.raises(ValueError, match="'test'"):
        run_log.log({"step": 1}, kind="test")
    run_log.close()
    with pytest.raises(ValueError, match="closed"):
        run_log.log({"step": 2})


@pytest.mark.parametrize("text, match", [('{"step": 1}\n[1, 2]\n', r"bad\.jsonl:2: expected a JSON object"),
                                         ("not json\n", r"bad\.jsonl: no line is a JSON object")])
def test_read_log_names_a_file_that_is_not_a_log(tmp_path, text, match):
    (tmp_path / "bad.jsonl").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_log(tmp_path / "bad.jsonl")


def test_report_to_values(monkeypatch):
    assert parse_report_to("jsonl") == ("jsonl",)
    assert parse_report_to("tensorboard, jsonl") == ("jsonl", "tensorboard")
    assert parse_report_to(["tensorboard"]) == ("jsonl", "tensorboard")
    with pytest.raises(ValueError, match="'wandb'"):
        parse_report_to("jsonl,wandb")
    assert build_parser().parse_args(["train", "--train-data", "x.csv"]).report_to == "jsonl"
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'tensorboardX.*pip install "anyclip\[train\]"'):
        parse_report_to("tensorboard")


def test_train_rejects_a_bad_report_to_before_loading_anything(tmp_path, capsys):
    assert main(["train", "--train-data", str(tmp_path / "missing.csv"), "--report-to", "wandb"]) == 2
    assert "'wandb'" in capsys.readouterr().err


def test_tensorboard_events_hold_every_numeric_field(tmp_path):
    with RunLog(tmp_path / "run", report_to=("jsonl", "tensorboard")) as run_log:
        for step in (10, 20):
            run_log.log(train_record(step))
        run_log.log({"step": 20, "epoch": 1, "shapes/shape/acc1": 0.75, "dataset": "shapes"}, kind="eval")
    scalars = read_event_scalars(tmp_path / "run" / "tensorboard")
    assert set(scalars) == {"train/epoch", "train/loss", "train/lr", "train/logit_scale", "train/samples_per_second",
                            "train/skipped", "eval/epoch", "eval/shapes/shape/acc1"}
    assert scalars["train/loss"] == [(10, pytest.approx(0.5)), (20, pytest.approx(0.25))]
    assert scalars["train/lr"] == [(10, pytest.approx(1e-3)), (20, pytest.approx(2e-3))]
    assert scalars["eval/shapes/shape/acc1"] == [(20, 0.75)]
    assert len(read_log(tmp_path / "run" / "train.jsonl")) == 2  # jsonl is written alongside


def test_load_run_keeps_the_history_a_resume_continued(tmp_path):
    run = make_run(tmp_path / "run", steps=range(1, 7), evals=[4])
    make_run(run, steps=[5, 6, 7], evals=[6])  # resumed from step 4: the first 5, 6 were abandoned
    curves = load_run(run)
    assert curves["name"] == "run"
    assert [r["step"] for r in curves["train"]] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["step"] for r in curves["eval"]] == [4, 6]
    with RunLog(run) as run_log:  # two evaluations at one step are one point of each metric
        run_log.log({"step": 7, "shapes/shape/acc1": 0.5, "val/image_retrieval_recall@1": 0.25}, kind="eval")
        run_log.log({"step": 7, "shapes/shape/acc1": 0.75, "other/acc1": 1.0}, kind="eval")
    assert load_run(run)["eval"][-1] == {"step": 7, "shapes/shape/acc1": 0.75, "val/image_retrieval_recall@1": 0.25,
                                         "other/acc1": 1.0}
    assert load_run(run / "train.jsonl")["train"] == curves["train"]


def test_plot_run_draws_train_and_eval_panels(tmp_path):
    out = plot_run(make_run(tmp_path / "run"), tmp_path / "curves.png")
    image = Image.open(out)
    assert image.format == "PNG"
    # 3 train panels + 4 eval groups (shapes/shape, shapes/count, val, val ranks) = 7 panels: 3 columns, 3 rows
    assert image.size == (1350, 990)  # 4.5 x 3.3 inches a panel at 100 dpi
    assert colour_pixels(out, C0) > 500 and colour_pixels(out, C1) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "run"]  # no temporary file left
    train_only = plot_run(make_run(tmp_path / "train-only", evals=[]), tmp_path / "train-only.png", dpi=50)
    assert Image.open(train_only).size == (675, 165)  # one row of 3 panels at 50 dpi


def test_plot_runs_draws_one_line_per_run(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", steps=range(1, 5), evals=[4])
    out = plot_runs([a, b], tmp_path / "both.png", title="a vs b")
    assert colour_pixels(out, C0) > 500 and colour_pixels(out, C1) > 200


def test_cli_plot_writes_the_png_and_explains_bad_runs(tmp_path, capsys):
    run = make_run(tmp_path / "logs" / "shapes")
    out = tmp_path / "plots" / "curves.png"
    assert main(["plot", str(run), "-o", str(out)]) == 0
    assert Image.open(out).format == "PNG" and str(out) in capsys.readouterr().out
    (tmp_path / "logs" / "empty").mkdir()
    assert main(["plot", str(run), str(tmp_path / "logs" / "empty"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no train.jsonl in" in err and "empty" in err
    (tmp_path / "logs" / "empty" / "train.jsonl").write_text("")
    assert main(["plot", str(tmp_path / "logs" / "empty"), "-o", str(out)]) == 1
    assert "has no records" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "logs" / "nope"), "-o", str(out)]) == 2
    assert "nope" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]


def test_anyclip_train_reports_to_tensorboard_and_plots(tmp_path):
    from anyclip.data import ShapesConfig, ShapesDataset, write_csv
    tiny = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    write_csv(ShapesDataset(ShapesConfig(image_size=32, seed=1), "train", 16), tmp_path / "data", progress=False)
    (tmp_path / "tiny.json").write_text(json.dumps(tiny))
    assert main(["train", "--train-data", str(tmp_path / "data" / "train.csv"), "--model", str(tmp_path / "tiny.json"),
                 "--batch-size", "8", "--workers", "1", "--logs", str(tmp_path / "logs"), "--name", "tb",
                 "--log-every-n-steps", "1", "--report-to", "tensorboard"]) == 0
    records = read_log(tmp_path / "logs" / "tb" / "train.jsonl")
    scalars = read_event_scalars(tmp_path / "logs" / "tb" / "tensorboard")
    assert [r["step"] for r in records] == [1, 2]
    for key in ("loss", "lr", "logit_scale"):
        assert scalars[f"train/{key}"] == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in records]
    assert main(["plot", str(tmp_path / "logs" / "tb"), "-o", str(tmp_path / "curves.png")]) == 0
    assert Image.open(tmp_path / "curves.png").size == (1350, 330)


def test_truncate_logs_keeps_each_step_once_after_a_resume(tmp_path):
    from anyclip.train.logs import truncate_logs
    make_run(tmp_path, steps=range(1, 9), evals=(4, 8))
    with open(tmp_path / "train.jsonl", "a") as f:
        f.write('{"step": 9, "lo')  # a line cut short by a kill
    eval_before = (tmp_path / "eval.jsonl").read_text()
    assert truncate_logs(tmp_path, 5) == [tmp_path / "train.jsonl", tmp_path / "eval.jsonl"]
    assert [json.loads(line)["step"] for line in (tmp_path / "train.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert (tmp_path / "eval.jsonl").read_text() == eval_before.splitlines(keepends=True)[0]  # step 4 kept, 8 gone
    with RunLog(tmp_path) as run_log:  # the resumed run continues from step 6
        for step in range(6, 9):
            run_log.log(train_record(step))
    assert [r["step"] for r in read_log(tmp_path / "train.jsonl")] == list(range(1, 9))
    assert truncate_logs(tmp_path, 8) == []  # nothing after step 8: the files are left alone
    assert truncate_logs(tmp_path / "no-run", 3) == []


def test_progress_lines_come_every_n_seconds_and_at_the_end():
    from anyclip.train.progress import ProgressLines
    lines, now = [], [100.0]
    progress = ProgressLines(total=6, epochs=2, every_seconds=30, start_step=2, write=lines.append,
                             clock=lambda: now[0])
    for step, t in zip(range(3, 7), (110.0, 131.0, 150.0, 155.0)):
        now[0] = t
        progress.update(step, epoch=(step - 1) // 3, loss=1.0 / step, lr=1e-3, samples=8)
    # 16 samples in 31 s; 2 of the 4 steps left took 31 s -> 31 s to go; the last step always gets a line
    assert lines == ["step 4/6 (66%) epoch 2/2 loss 0.2500 lr 1.00e-03 samples/s 0.5 ETA 0:00:31",
                     "step 6/6 (100%) epoch 2/2 loss 0.1667 lr 1.00e-03 samples/s 0.6 ETA 0:00:00"]
    off = ProgressLines(total=6, epochs=2, every_seconds=0, write=lines.append)
    off.update(6, epoch=1, loss=0.1, lr=1e-3, samples=8)
    assert len(lines) == 2
