"""A low --precision says what it does on the machine at hand when it is not faster than fp32 there."""

from pathlib import Path

import pytest
from cli_run import run_cli

from anyclip.precision_notice import BF16_CPU_FLAGS, cpu_flags, precision_notice

AMX = {"avx512f", "avx512_bf16", "amx_bf16"}
OLD_CPU = {"avx2", "fma"}
PHOTO = Path(__file__).resolve().parents[1] / "examples" / "shapes"


@pytest.mark.parametrize("precision", ["fp32", "float32", "tf32"])
def test_float32_precisions_say_nothing(precision):
    assert precision_notice(precision, "jax", on_gpu=False, cpu_flags=OLD_CPU) is None


def test_gpus_say_nothing():
    assert precision_notice("bf16", "jax", on_gpu=True, cpu_flags=OLD_CPU) is None


def test_jax_cpu_bf16_names_the_measured_figures_and_the_torch_route():
    line = precision_notice("bf16", "jax", on_gpu=False, cpu_flags=AMX)
    assert "--precision bf16 on the jax CPU backend" in line and "bench/bench_precision.py" in line
    assert "KERAS_BACKEND=torch" in line and "\n" not in line


def test_torch_cpu_bf16_is_quiet_only_with_bf16_instructions():
    assert precision_notice("bf16", "torch", on_gpu=False, cpu_flags=AMX) is None
    assert "emulated" in precision_notice("bf16", "torch", on_gpu=False, cpu_flags=OLD_CPU)
    assert "could not read" in precision_notice("amp_bf16", "torch", on_gpu=False, cpu_flags=None)


def test_no_torch_route_is_offered_without_bf16_instructions():
    assert "KERAS_BACKEND=torch" not in precision_notice("bf16", "jax", on_gpu=False, cpu_flags=OLD_CPU)


def test_fp16_on_cpu_is_slower_everywhere():
    for backend in ("jax", "torch", "tensorflow"):
        assert "slower than fp32" in precision_notice("fp16", backend, on_gpu=False, cpu_flags=AMX)


def test_cpu_flags_read_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx512_bf16", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") is None


def test_classify_with_bf16_prints_the_notice_once(capsys):
    """The default JAX backend on this CPU: the notice comes once, on stderr, and the command still works."""
    photos = sorted(PHOTO.glob("*.png"))[:1] or sorted(PHOTO.iterdir())[:1]
    code, err = run_cli(["classify", *photos, "--labels", "circle", "square", "--precision", "bf16"], capsys)
    assert code == 0
    assert err.count("--precision bf16 on the jax CPU backend") == 1


DEFAULT = "first installed of jax, torch, tensorflow"


def test_cpu_bf16_goes_to_torch_only_where_nobody_chose_and_the_cpu_has_bf16():
    from anyclip.precision_notice import cpu_bf16_route
    assert cpu_bf16_route("bf16", DEFAULT, False, AMX, True, False) == "torch"
    assert cpu_bf16_route("amp_bf16", DEFAULT, False, AMX, True, False) == "torch"
    stays = {"fp32": ("fp32", DEFAULT, False, AMX, True, False),
             "fp16": ("fp16", DEFAULT, False, AMX, True, False),
             "backend chosen": ("bf16", "KERAS_BACKEND=jax", False, AMX, True, False),
             "keras imported": ("bf16", DEFAULT, True, AMX, True, False),
             "no bf16 instructions": ("bf16", DEFAULT, False, OLD_CPU, True, False),
             "flags unknown": ("bf16", DEFAULT, False, None, True, False),
             "no torch": ("bf16", DEFAULT, False, AMX, False, False),
             "JAX on a GPU": ("bf16", DEFAULT, False, AMX, True, True)}
    assert {why: cpu_bf16_route(*case) for why, case in stays.items()} == dict.fromkeys(stays)


def test_classify_bf16_in_a_fresh_process_runs_where_bf16_is_fast(tmp_path):
    """No KERAS_BACKEND, Keras not imported: on a CPU with bf16 instructions the job moves to torch and says so
    (and JAX's slow-bf16 notice, printed whenever Keras runs on JAX, is absent); elsewhere it stays on JAX."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")])
    photo = PHOTO / "blue-circle.png"
    done = subprocess.run([sys.executable, "-m", "anyclip.cli", "classify", str(photo), "--labels", "circle",
                           "square", "--precision", "bf16"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "blue-circle.png  circle" in done.stdout
    if BF16_CPU_FLAGS & (cpu_flags() or set()):
        assert "--precision bf16 runs on the torch backend here" in done.stderr, done.stderr
        assert "jax CPU backend" not in done.stderr, done.stderr
    else:
        assert "torch backend" not in done.stderr and "on the jax CPU backend" in done.stderr, done.stderr
