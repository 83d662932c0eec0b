"""A low --precision says what it does on the machine at hand when it is not faster than fp32 there."""

from pathlib import Path

import pytest
from cli_run import run_cli

from anyclip.precision_notice import cpu_flags, precision_notice

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
