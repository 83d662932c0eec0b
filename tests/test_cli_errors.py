"""The CLI's error boundary: every user-caused error is one stderr line naming the input, exit 2 or 1, no traceback.

Bad command lines are run in-process through ``anyclip.cli.main`` (argument errors never load a model); the
import-time check runs in a subprocess so that it sees a fresh ``sys.modules``.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anyclip import cli
from anyclip.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "examples" / "shapes"
IMAGE = str(SHAPES / "red-square.png")
COMMANDS = ("models", "classify", "embed", "index", "search", "data shapes", "train", "plot", "convert", "export", "eval",
            "info", "serve")


@pytest.fixture
def files(tmp_path):
    """A folder, a missing path, UTF-8-with-BOM/CRLF and Latin-1 text files."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "bom_crlf.txt").write_bytes(b"\xef\xbb\xbfcat\r\ndog\r\n\r\nbird\rfish\n")
    (tmp_path / "latin1.txt").write_bytes("cat\nchien\nl\u00e9zard\n".encode("latin-1"))
    (tmp_path / "utf16.txt").write_bytes("cat\r\nd\u00f6g\r\n".encode("utf-16"))
    (tmp_path / "dup.txt").write_text("cat\ndog\n\ncat\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("\n  \n\t\n")
    (tmp_path / "captions.csv").write_text("filepath,caption\na.png,a cat\nb.png,a dog\n")
    return tmp_path


def one_error_line(capsys, status, expected_status, *names):
    err = capsys.readouterr().err
    assert status == expected_status, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# (argv with {tmp} for the test's folder, exit status, text the one line must hold)
BAD_ARGUMENTS = [
    (["models", "--bogus"], 2, "--bogus"),
    (["info", "--bogus"], 2, "--bogus"),
    (["classify", IMAGE, "--labels", "a", "--top-k", "-1"], 2, "--top-k"),
    (["classify", IMAGE, "--labels", "a", "--top-k", "x"], 2, "--top-k"),
    (["classify", IMAGE, "--labels", "a", "--batch-size", "0"], 2, "--batch-size"),
    (["classify", IMAGE, "--labels", "a", "--precision", "fp8"], 2, "--precision"),
    (["classify", "{tmp}/missing.png", "--labels", "a"], 2, "missing.png"),
    (["classify", "{tmp}/folder", "--labels", "a"], 2, "is a folder"),
    (["classify", IMAGE, "--labels-file", "{tmp}/folder"], 2, "--labels-file"),
    (["classify", IMAGE, "--labels-file", "{tmp}/nope.txt"], 2, "--labels-file"),
    (["classify", IMAGE], 2, "--labels"),
    (["classify", IMAGE, "--labels", "a", ""], 2, "--labels: label 2 is empty"),
    (["classify", IMAGE, "--labels", "a", " "], 2, "--labels: label 2 is empty"),
    (["classify", IMAGE, "--labels", "cat", "dog", "cat"], 2, "'cat' is given twice (--labels item 1 and --labels item 3)"),
    (["classify", IMAGE, "--labels-file", "{tmp}/dup.txt"], 1, "dup.txt line 1 and {tmp}/dup.txt line 4"),
    (["classify", IMAGE, "--labels", "dog", "--labels-file", "{tmp}/dup.txt"], 1, "item 1 and {tmp}/dup.txt line 2"),
    (["classify", IMAGE, "--labels-file", "{tmp}/empty.txt"], 1, "empty.txt: holds no labels"),
    (["classify", IMAGE, "--labels", "a", "--labels-file", "{tmp}/blank.txt"], 1, "blank.txt: holds no labels"),
    (["embed", "{tmp}/nope_dir", "-o", "{tmp}/e"], 1, "input not found: {tmp}/nope_dir"),
    (["classify", IMAGE, "--labels", "a", "b", "--template", "a photo"], 2, "--template"),
    (["classify", IMAGE, "--labels", "a", "b", "--template", "{} and {}"], 2, "--template"),
    (["classify", IMAGE, "--labels", "a", "b", "--template", "a {x}"], 2, "--template"),
    (["embed", IMAGE, "{tmp}/nope.png", "-o", "{tmp}/e"], 1, "input not found: {tmp}/nope.png"),
    (["embed", IMAGE, "-o", "{tmp}/out.txt"], 2, "--output"),
    (["embed", IMAGE, "-o", "{tmp}/bom_crlf.txt"], 2, "--output"),
    (["embed", IMAGE, "-o", "{tmp}/folder.npy"], 2, "is a folder"),
    (["index", "{tmp}/folder", "-o", "{tmp}/idx.json"], 2, "--output"),
    (["convert", "ViT-B-32", "openai", "{tmp}/c1.txt"], 2, "c1.txt"),
    (["data", "shapes", "{tmp}/s.csv"], 2, "s.csv"),
    (["embed", IMAGE, "-o", "{tmp}/out", "--max-pixels", "-5"], 2, "--max-pixels"),
    (["embed", IMAGE, "-o", "{tmp}/out", "--shard-size", "0"], 2, "--shard-size"),
    (["embed", IMAGE, "-o", "{tmp}/out", "--workers", "-1"], 2, "--workers"),
    (["embed", IMAGE, "-o", "{tmp}/out", "--ray-actors", "0"], 2, "--ray-actors"),
    (["embed", "-o", "{tmp}/out", "--text-file", "{tmp}/folder"], 2, "--text-file"),
    (["embed", "-o", "{tmp}/out.npy"], 2, "give either images"),
    (["index", "{tmp}/nowhere", "-o", "{tmp}/idx"], 2, "nowhere"),
    (["index", "{tmp}/folder", "-o", "{tmp}/idx", "--target-recall", "1.5"], 2, "--target-recall"),
    (["index", "{tmp}/folder", "-o", "{tmp}/idx", "--exact-below", "-3"], 2, "--exact-below"),
    (["search", "{tmp}/folder", "--text", "x", "-k", "0"], 2, "--top-k"),
    (["search", "{tmp}/folder", "--text", "x", "--html", "{tmp}/hits.txt"], 2, "--html"),
    (["search", "{tmp}/folder"], 2, "--text"),
    (["search", "{tmp}/bom_crlf.txt", "--text", "x"], 2, "is a file"),
    (["data", "shapes", "{tmp}/s", "-n", "0"], 2, "--num-samples"),
    (["data", "shapes", "{tmp}/s", "--image-size", "8"], 2, "--image-size"),
    (["data", "shapes", "{tmp}/s", "--split", "nope"], 2, "--split"),
    (["train", "--train-data", "t.csv", "--beta1", "1"], 2, "--beta1"),
    (["train", "--train-data", "t.csv", "--ema-decay", "nan"], 2, "--ema-decay"),
    (["train", "--train-data", "t.csv", "--lr", "0"], 2, "--lr"),
    (["train", "--train-data", "t.csv", "--epochs", "0"], 2, "--epochs"),
    (["train", "--train-data", "t.csv", "--workers", "-2"], 2, "--workers"),
    (["train", "--train-data", "t.csv", "--imagenet-val", "{tmp}/bom_crlf.txt"], 2, "--imagenet-val"),
    (["train", "--train-data", "t.csv", "--zeroshot-classnames", "{tmp}/nope.txt"], 2, "--zeroshot-classnames"),
    (["train"], 2, "--train-data"),
    (["train", "--train-data", "t.csv", "--resume", "{tmp}/nope"], 2, "--resume"),
    (["train", "--train-data", "t.csv", "--csv-separator", ";;"], 2, "--csv-separator"),
    (["eval", "--dataset", "{tmp}/folder", "--csv-separator", "comma"], 2, "--csv-separator"),
    (["plot", "{tmp}/folder", "-o", "{tmp}/curves.jpg"], 2, "--output"),
    (["plot", "{tmp}/folder", "--dpi", "0"], 2, "--dpi"),
    (["plot", "{tmp}/nope"], 2, "nope"),
    (["plot", "{tmp}/folder", "-o", "{tmp}/c.png"], 1, "no train.jsonl"),
    (["convert", "ViT-B-32", "openai", "{tmp}/x", "--precision", "fp8"], 2, "--precision"),
    (["convert", "ViT-B-32", "openai", "{tmp}/x", "--precision", "bf16"], 2, "--precision"),
    (["convert", "ViT-B-32", "openai", "{tmp}/x.h5", "--to", "keras"], 2, ".keras"),
    (["convert", "ViT-B-32", "{tmp}/x"], 2, "give the weights"),
    (["eval", "--dataset", "{tmp}/nope"], 2, "--dataset"),
    (["eval", "--dataset", "{tmp}/captions.csv", "--templates", "simple"], 2, "--templates applies to zero-shot"),
    (["eval", "--dataset", "{tmp}/captions.csv", "--classnames", "imagenet", "--confusion-png", "{tmp}/c.png"], 2,
     "--classnames and --confusion-png apply"),
    (["eval", "--dataset", "{tmp}/captions.csv", "--task", "zeroshot_classification"], 1, "--csv-label-key"),
    (["eval", "--dataset", "{tmp}/folder", "--val-fraction", "1"], 2, "--val-fraction"),
    (["eval", "--dataset", "{tmp}/folder", "--recall-k", "0"], 2, "--recall-k"),
    (["eval", "--dataset", "{tmp}/folder", "--confusion-png", "{tmp}/c.jpg"], 2, "--confusion-png"),
    (["eval", "--dataset", "{tmp}/folder", "--output", "{tmp}/folder"], 2, "--output"),
    (["eval", "--dataset", "{tmp}/folder", "--classnames", "{tmp}/nope.txt"], 2, "--classnames"),
    (["eval", "--dataset", "{tmp}/folder", "--c-values", "-1"], 2, "--c-values"),
    (["eval", "--dataset", "{tmp}/folder", "--dataset-root", "{tmp}/bom_crlf.txt"], 2, "--dataset-root"),
    (["eval", "--dataset", "{tmp}/folder", "--classnames", "{tmp}/latin1.txt"], 1, "latin1.txt"),
    (["embed", "-o", "{tmp}/out.npy", "--text-file", "{tmp}/latin1.txt"], 1, "latin1.txt"),
    (["classify", IMAGE, "--labels-file", "{tmp}/latin1.txt"], 1, "--labels-file"),
]


@pytest.mark.parametrize("argv,status,name", BAD_ARGUMENTS, ids=[" ".join(a[0][:2]) + f" {a[2]}" for a in BAD_ARGUMENTS])
def test_a_bad_command_line_is_one_line_naming_the_input(files, capsys, argv, status, name):
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    (files / "folder.npy").mkdir(exist_ok=True)
    line = one_error_line(capsys, main(argv), status, name.replace("{tmp}", str(files)))
    assert line.startswith(f"anyclip {argv[0]}"), line


def test_bad_text_encodings_name_the_file_and_line(files, capsys):
    line = one_error_line(capsys, main(["classify", IMAGE, "--labels-file", str(files / "latin1.txt")]), 1)
    assert "line 3" in line and "--encoding" in line
    line = one_error_line(capsys, main(["eval", "--dataset", str(files / "folder"), "--classnames",
                                        str(files / "latin1.txt")]), 1)
    assert "line 3" in line and "--classnames" in line


def test_an_unknown_encoding_name_is_one_line(files, capsys):
    one_error_line(capsys, main(["classify", IMAGE, "--labels-file", str(files / "latin1.txt"), "--encoding",
                                 "no-such-codec"]), 1, "no-such-codec")


class _Stop(Exception):
    pass


def test_classify_labels_file_drops_the_bom_and_reads_any_line_end(files, monkeypatch):
    """The labels reach the classifier without a BOM in the first one; CRLF, CR and UTF-16 files work."""
    import anyclip.eval.command as command
    import anyclip.zero_shot as zero_shot
    seen = []

    def classifier(model, tokenizer, labels, templates):
        seen.append(list(labels))
        raise _Stop

    monkeypatch.setattr(command, "load_model_from_args", lambda args: (None, None, None))
    monkeypatch.setattr(zero_shot, "build_zero_shot_classifier", classifier)
    for name, encoding in (("bom_crlf.txt", []), ("utf16.txt", []), ("latin1.txt", ["--encoding", "latin-1"])):
        with pytest.raises(_Stop):
            main(["classify", IMAGE, "--labels-file", str(files / name), "--activation", "softmax", *encoding])
    assert seen == [["cat", "dog", "bird", "fish"], ["cat", "d\u00f6g"], ["cat", "chien", "l\u00e9zard"]]


def test_eval_templates_file_is_read_with_encoding(files, monkeypatch):
    """``eval --encoding`` applies to --templates as it does to --classnames."""
    import shutil

    import anyclip.eval.command as command
    import anyclip.eval.zero_shot as zero_shot
    for label, image in (("red", "red-square.png"), ("blue", "blue-circle.png")):
        (files / "data" / label).mkdir(parents=True)
        shutil.copy(SHAPES / image, files / "data" / label / image)
    (files / "templates.txt").write_bytes("a photo of a {}.\nun caf\u00e9 {}.\n".encode("latin-1"))
    seen = []

    def classification(model, tokenizer, data, templates, **kwargs):
        seen.append(templates)
        raise _Stop
    monkeypatch.setattr(zero_shot, "zero_shot_classification", classification)
    argv = ["eval", "--dataset", str(files / "data"), "--templates", str(files / "templates.txt"), "--output",
            str(files / "r.json")]
    args = cli.build_parser().parse_args(argv + ["--encoding", "latin-1"])
    with pytest.raises(_Stop):
        command.run_eval_command(args, load=lambda args: (None, None, None))
    assert seen == [["a photo of a {}.", "un caf\u00e9 {}."]]


def test_eval_classnames_and_embed_text_files_read_bom_and_crlf(files):
    from anyclip.data.labelled import read_classnames
    from anyclip.embed.sources import list_inputs
    assert read_classnames(files / "bom_crlf.txt", None, "--classnames") == ("cat", "dog", "bird", "fish")
    assert read_classnames(files / "latin1.txt", "latin-1", "--classnames")[-1] == "l\u00e9zard"
    names = [item.name for item in list_inputs([str(files / "bom_crlf.txt")], "text").items]
    assert names[0] == "cat" and "fish" in names and not any("\ufeff" in n or "\r" in n for n in names)
    latin = [item.name for item in list_inputs([str(files / "latin1.txt")], "text", encoding="latin-1").items]
    assert latin[-1] == "l\u00e9zard"


@pytest.mark.parametrize("module,argv,extra", [
    ("matplotlib", ["eval", "--dataset", "{tmp}/folder", "--confusion-png", "{tmp}/c.png"], "eval"),
    ("sklearn", ["eval", "--dataset", "{tmp}/folder", "--task", "linear_probe"], "eval"),
    ("matplotlib", ["plot", "{tmp}/folder", "-o", "{tmp}/c.png"], "eval"),
    ("pyarrow", ["embed", IMAGE, "-o", "{tmp}/out"], "embed"),
    ("faiss", ["index", "{tmp}/folder", "-o", "{tmp}/idx"], "embed"),
    ("faiss", ["search", "{tmp}/folder", "--text", "x"], "embed"),
    ("tensorboardX", ["train", "--train-data", "{tmp}/t.csv", "--report-to", "jsonl,tensorboard"], "train"),
])
def test_a_missing_extra_stops_before_work_with_the_pip_command(files, capsys, monkeypatch, module, argv, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    one_error_line(capsys, main(argv), 1, module, f"pip install 'anyclip[{extra}]'")
    assert not (files / "c.png").exists() and not (files / "out").exists() and not (files / "idx").exists()


def test_an_unknown_model_is_reported_before_any_random_weights_warning(capsys):
    line = one_error_line(capsys, main(["classify", IMAGE, "--labels", "a", "--model", "NoSuchModel-B-99"]), 2,
                          "NoSuchModel-B-99")
    assert "random weights" not in line


def _raise_in_models(monkeypatch, error):
    import anyclip.weights.command as command

    def run(args):
        raise error
    monkeypatch.setattr(command, "run_models", run)


def _raised_from(error, cause):
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("error,status,text", [
    (KeyboardInterrupt(), 130, "anyclip models: interrupted"),
    (PermissionError(13, "Permission denied", "/some/results.json"), 1, "/some/results.json: permission denied"),
    (FileNotFoundError("no train.jsonl in run/"), 1, "no train.jsonl in run/"),
    (ImportError("No module named 'sklearn'", name="sklearn"), 1, "pip install 'anyclip[eval]'"),
    (_raised_from(ImportError("plotting needs matplotlib: pip install 'anyclip[train]'"),
                  ImportError("No module named 'matplotlib'", name="matplotlib")), 1,
     "plotting needs matplotlib: pip install 'anyclip[train]'"),
])
def test_interrupts_os_errors_and_missing_modules_are_one_line(monkeypatch, capsys, error, status, text):
    _raise_in_models(monkeypatch, error)
    one_error_line(capsys, main(["models"]), status, text)


def test_a_closed_pipe_ends_quietly():
    """anyclip models | true: the reader has gone before anything is written; no traceback, exit 141."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(f"{sys.executable} -m anyclip.cli models | true; echo ${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.strip() == "141" and proc.stderr == "", proc.stderr


def test_a_bug_keeps_its_traceback(monkeypatch):
    _raise_in_models(monkeypatch, KeyError("a bug"))
    with pytest.raises(KeyError):
        main(["models"])
    _raise_in_models(monkeypatch, ImportError("No module named 'nonexistent_internal'", name="nonexistent_internal"))
    with pytest.raises(ImportError):
        main(["models"])


@pytest.mark.parametrize("argv,env", [(["--debug", "models"], {}), (["models", "--debug"], {}),
                                      (["models"], {"ANYCLIP_DEBUG": "1"})])
def test_debug_shows_the_traceback_of_user_errors(monkeypatch, capsys, argv, env):
    from anyclip.errors import DataError
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _raise_in_models(monkeypatch, DataError("data/x.csv: broken"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "anyclip models: error: data/x.csv: broken"


def test_the_exit_status_table_is_decided_in_one_place():
    from anyclip.data.common import DatasetError
    from anyclip.errors import DataError, UsageError
    from anyclip.extras import MissingExtraError
    from anyclip.models import ConfigError
    from anyclip.transforms.host import ImageLoadError
    from anyclip.weights import (
        CheckpointError,
        UnknownPretrainedError,
        WeightMismatchError,
        WeightsUnavailableError,
    )
    usage = [UsageError("x"), ConfigError("x"), UnknownPretrainedError("x")]
    data = [DataError("x"), DatasetError("x"), CheckpointError("x"), WeightMismatchError("x"),
            WeightsUnavailableError("x"), ImageLoadError("x"), MissingExtraError("faiss"),
            IsADirectoryError(21, "Is a directory", "a")]
    assert [cli.exit_status(e) for e in usage] == [2] * len(usage)
    assert [cli.exit_status(e) for e in data] == [1] * len(data)
    assert [cli.exit_status(e) for e in (ValueError("x"), RuntimeError("x"), OSError("x"))] == [None] * 3


def test_every_class_of_the_table_exists():
    """The table names classes by "module.Class" (nothing imported to match them): each must still be there."""
    import importlib
    for name in cli.USER_ERRORS:
        module, _, cls = name.rpartition(".")
        error = getattr(importlib.import_module(module), cls)
        assert issubclass(error, Exception) and cli.exit_status(error("x")) == cli.USER_ERRORS[name], name


def _actions():
    parser = cli.build_parser()
    for leaf in cli._leaf_parsers(parser):
        for action in leaf._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                yield leaf.prog, action


def test_every_option_has_help_without_rst_markup():
    missing = [(prog, action.dest) for prog, action in _actions() if not action.help]
    markup = [(prog, action.dest) for prog, action in _actions() if "``" in (action.help or "")]
    assert not missing and not markup, (missing, markup)
    assert {prog for prog, _ in _actions()} == {f"anyclip {c}" for c in COMMANDS}
    commands = []
    stack = [cli.build_parser()]
    while stack:
        for action in stack.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands += [(c.dest, c.help) for c in action._choices_actions]
                stack += list(action.choices.values())
    assert len(commands) == len(COMMANDS) + 1  # data, and data shapes
    assert all(text and "`" not in text for _, text in commands), commands


def test_no_option_is_parsed_as_a_bare_int_or_float():
    """Numbers are checked by a declared type (cli_args), never just converted."""
    bare = [(prog, action.dest) for prog, action in _actions() if action.type in (int, float)]
    assert not bare, bare


HEAVY_IMPORTS = """
import json, sys
from anyclip.cli import main
codes = {}
for argv in json.loads(sys.argv[1]):
    codes[" ".join(argv)] = main(argv)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "jax", "torch", "tensorflow"))
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_help_and_argument_errors_import_no_deep_learning_framework():
    runs = [[*command.split(), "--help"] for command in COMMANDS] + [["--help"]] + [
        ["classify", IMAGE, "--labels", "a", "--top-k", "-1"], ["embed", "x", "-o", "y", "--max-pixels", "-5"],
        ["search", str(SHAPES), "-k", "0"], ["train", "--train-data", "x", "--lr", "-1"],
        ["eval", "--dataset", str(SHAPES), "--batch-size", "0"], ["data", "shapes", "out", "-n", "0"]]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-c", HEAVY_IMPORTS, json.dumps(runs)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert [result["codes"][" ".join(r)] for r in runs] == [0] * (len(COMMANDS) + 1) + [2] * 6


@pytest.mark.parametrize("offline,text", [
    (False, "cannot reach the Hugging Face Hub at http://127.0.0.1:9"),
    (True, "HF_HUB_OFFLINE is set"),
])
def test_weights_not_cached_and_no_hub_is_one_line_with_the_fix(hf_cache, monkeypatch, capsys, offline, text):
    """The hub is a closed local port (nothing leaves the machine): at most one attempt, one line with the fix."""
    import huggingface_hub
    from huggingface_hub import constants

    from anyclip.weights import hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub, "_REACHABLE", {})
    probes = []
    session = huggingface_hub.get_session

    def counting_session():
        probes.append(1)
        return session()
    monkeypatch.setattr(huggingface_hub, "get_session", counting_session)
    line = one_error_line(capsys, main(["classify", IMAGE, "--labels", "a", "--model", "ViT-B-32", "--pretrained",
                                        "laion2b_s34b_b79k"]), 1, text, "--checkpoint FILE", "hf download")
    assert "HF_HUB_OFFLINE=1" in line or offline
    assert len(probes) == (0 if offline else 1)


def test_anyclips_own_warnings_are_one_line_naming_the_command(capsys):
    import warnings

    from anyclip.transforms import depth
    seen = []
    show = cli._warning_printer("anyclip classify", lambda *a: seen.append(a))
    show(UserWarning("x.tif: scaled"), UserWarning, depth.__file__, 60)
    assert capsys.readouterr().err == "anyclip classify: warning: x.tif: scaled\n"
    show(UserWarning("from numpy"), UserWarning, warnings.__file__, 1)  # another package's: its own format
    assert len(seen) == 1 and capsys.readouterr().err == ""
