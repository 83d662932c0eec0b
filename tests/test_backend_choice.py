"""Which Keras backend anyclip runs on: KERAS_BACKEND, else an imported keras's, else the first installed of
jax, torch, tensorflow; never keras.json. Each case runs in a fresh interpreter whose HOME holds a keras.json
that says "tensorflow" (what Keras writes on its first import); the cases run in parallel."""

import importlib.metadata
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from anyclip._backend import FIRST_INSTALLED, BackendChoice, decide_backend

ROOT = Path(__file__).resolve().parents[1]
CHOICE = "import anyclip, keras, json; print(json.dumps([keras.backend.backend(), *anyclip.backend_choice()]))"
USE_KERAS = "import anyclip, keras; keras.ops.convert_to_numpy(keras.ops.ones(2) + 1)"
CASES = {  # name: (extra environment, python -c code or ["-m", ...] argv, ...) run one after the other
    "env_wins": ({"KERAS_BACKEND": "torch"}, CHOICE),
    "keras_json_ignored": ({}, CHOICE),
    "imported_keras_honoured": ({}, "import os; os.environ['KERAS_BACKEND'] = 'torch'; import keras; "
                                    "del os.environ['KERAS_BACKEND']; " + CHOICE),
    "acceptance": ({"NO_KERAS_JSON": "1"}, "import keras",
                   "import anyclip, keras; print(keras.backend.backend())"),
    "quiet_jax": ({"KERAS_BACKEND": "jax"}, "import anyclip", USE_KERAS),
    "quiet_torch": ({"KERAS_BACKEND": "torch"}, "import anyclip", USE_KERAS),
    "quiet_tensorflow": ({"KERAS_BACKEND": "tensorflow"},
                         "import anyclip, os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"),
    "torch_after_tensorflow": ({"KERAS_BACKEND": "torch"},
                               "import anyclip, tensorflow, keras, sys; keras.ops.convert_to_numpy(keras.ops.ones(2)); "
                               "print(keras.backend.backend(), 'triton' in sys.modules)"),
    "info": ({}, ["-m", "anyclip.cli", "info"]),
    "info_json": ({}, ["-m", "anyclip.cli", "info", "--json"]),
}


def _run_case(tmp: Path, name: str) -> list[subprocess.CompletedProcess]:
    extra, *commands = CASES[name]
    home = tmp / name
    (home / ".keras").mkdir(parents=True)
    if "NO_KERAS_JSON" not in extra:
        (home / ".keras" / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))
    drop = ("KERAS_BACKEND", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "HF_HOME", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({k: v for k, v in extra.items() if k != "NO_KERAS_JSON"}, HOME=str(home), HF_HUB_OFFLINE="1",
               HF_HUB_CACHE=str(tmp / "hf-cache"), PYTHONPATH=str(ROOT / "src"))
    return [subprocess.run([sys.executable, *(c if isinstance(c, list) else ["-c", c])], env=env, cwd=home,
                           capture_output=True, text=True, timeout=300) for c in commands]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backend-choice")
    with ThreadPoolExecutor(len(CASES)) as pool:
        futures = {name: pool.submit(_run_case, tmp, name) for name in CASES}
        results = {name: f.result() for name, f in futures.items()}
    results["tmp"] = tmp
    return results


def _last_json(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_keras_backend_env_wins(runs):
    assert _last_json(runs["env_wins"][0]) == ["torch", "torch", "KERAS_BACKEND=torch"]


def test_keras_json_saying_tensorflow_does_not_select_it(runs):
    assert _last_json(runs["keras_json_ignored"][0]) == ["jax", "jax", FIRST_INSTALLED]


def test_an_already_imported_keras_keeps_its_backend(runs):
    assert _last_json(runs["imported_keras_honoured"][0]) == [
        "torch", "torch", "keras was already imported with backend torch"]


def test_issue_acceptance_import_keras_then_anyclip_runs_on_jax(runs):
    first, second = runs["acceptance"]
    assert first.returncode == 0, first.stderr[-3000:]
    written = json.loads((runs["tmp"] / "acceptance" / ".keras" / "keras.json").read_text())
    assert written["backend"] == "tensorflow"  # what Keras wrote by default: the trap this rule avoids
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.strip() == "jax"


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_import_and_first_keras_use_write_nothing_to_stderr(runs, backend):
    for proc in runs[f"quiet_{backend}"]:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stderr == ""


def test_import_on_tensorflow_writes_nothing_to_stderr_and_quiets_tensorflow(runs):
    """TensorFlow itself (2.21) still logs a few C++ lines when Keras imports it; importing anyclip does not."""
    proc = runs["quiet_tensorflow"][0]
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    assert proc.stdout.strip() == "1"


def test_torch_backend_survives_tensorflow_imported_after_anyclip(runs):
    # Without anyclip's guard, Keras's torch backend imports triton after TensorFlow and the process segfaults.
    (proc,) = runs["torch_after_tensorflow"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["torch", "False"]


def test_anyclip_info_says_backend_reason_devices_versions_and_cache(runs):
    proc = runs["info"][0]
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    lines = dict(line.split(":", 1) for line in proc.stdout.strip().splitlines())
    assert lines["backend"].strip() == f"jax ({FIRST_INSTALLED})"
    assert "cpu:0" in lines["devices"]
    assert f"keras {importlib.metadata.version('keras')}" in lines["versions"]
    assert lines["weights cache"].strip() == str(runs["tmp"] / "hf-cache")


def test_anyclip_info_json(runs):
    proc = runs["info_json"][0]
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert set(info) == {"backend", "reason", "devices", "versions", "weights_cache", "extras"}
    assert info["extras"]["embed"] == []  # the test environment has every extra
    assert (info["backend"], info["reason"]) == ("jax", FIRST_INSTALLED)
    import jax
    assert info["devices"] and len(info["devices"]) == len(jax.devices())
    for name, distribution in [("keras", "keras"), ("jax", "jax"), ("numpy", "numpy"),
                               ("open_clip", "open_clip_torch")]:
        assert info["versions"][name] == importlib.metadata.version(distribution)
    assert info["versions"]["anyclip"]
    assert info["weights_cache"] == str(runs["tmp"] / "hf-cache")


@pytest.mark.parametrize("environ, modules, missing, expected", [
    ({"KERAS_BACKEND": "tensorflow"}, {}, (), ("tensorflow", "KERAS_BACKEND=tensorflow")),
    ({}, {}, ("jax",), ("torch", FIRST_INSTALLED)),
    ({}, {}, ("jax", "torch"), ("tensorflow", FIRST_INSTALLED)),
    ({}, {"keras": None}, (), ("jax", FIRST_INSTALLED)),  # a keras entry that is not a module yet: ignored
])
def test_decide_backend_rule(environ, modules, missing, expected):
    assert decide_backend(environ, modules, installed=lambda m: m not in missing) == BackendChoice(*expected)
