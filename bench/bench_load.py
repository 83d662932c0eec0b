"""Build + load from safetensors (issue 24, item 4): wall time and peak RSS against open_clip; import times.

Writes open_clip's randomly initialised weights (seed 0) to ``MODEL.safetensors`` in a temporary folder, then
in a fresh process per measurement, rounds interleaved: ``open_clip.create_model_and_transforms(MODEL,
pretrained=FILE)`` against ``anyclip.create_model_and_transforms(MODEL, pretrained=FILE)`` on each Keras
backend. Times the call alone (imports excluded) and reads the process' peak RSS (``resource.getrusage``)
and its RSS after the imports, so "load RSS" is what building and loading added. Then ``import anyclip`` and
``anyclip --help`` wall times (fresh processes) against ``import open_clip``. Medians; ratios anyclip /
open_clip (below 1 is better for time and memory). The machine may be shared: compare ratios of one run.

    python bench/bench_load.py                          # ViT-B-32 and ViT-L-14, jax and torch, 3 rounds
    python bench/bench_load.py --models ViT-B-32 --backends jax --repeats 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MEASURE = r"""
import json, resource, sys, time
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
side, model, path = sys.argv[1:4]
if side == "open_clip":
    import open_clip as lib
else:
    import anyclip as lib
    import keras  # the backend's import is not part of the load
    if keras.backend.backend() == "jax":
        import jax; jax.numpy.zeros(1).block_until_ready()
    elif keras.backend.backend() == "torch":
        import torch
after_import = rss_mb()
start = time.perf_counter()
out = lib.create_model_and_transforms(model, pretrained=path)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "after_import_mb": after_import}))
"""


def _child_env(backend=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
           "HF_HUB_OFFLINE": "1"}
    if backend:
        env["KERAS_BACKEND"] = backend
    return env


def _measure(side, model, path, backend=None):
    done = subprocess.run([sys.executable, "-c", MEASURE, side, model, path], env=_child_env(backend),
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wall(code, backend=None):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=_child_env(backend), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _write_checkpoint(model, folder):
    import open_clip
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(0)
    net = open_clip.create_model(model)
    path = os.path.join(folder, f"{model}.safetensors")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path, os.path.getsize(path) / 2**20


def bench_load(args, folder):
    for model in args.models.split(","):
        path, size_mb = _write_checkpoint(model, folder)
        sides = [("open_clip", None)] + [("anyclip", b) for b in args.backends.split(",")]
        runs = {side: [] for side in sides}
        for _ in range(args.repeats):
            for side in sides:
                runs[side].append(_measure(side[0], model, path, side[1]))
        ref = runs[("open_clip", None)]
        ref_s = statistics.median(r["seconds"] for r in ref)
        ref_peak = statistics.median(r["peak_mb"] for r in ref)
        ref_load = statistics.median(r["peak_mb"] - r["after_import_mb"] for r in ref)
        print(f"{model} ({size_mb:.0f} MB safetensors): open_clip build+load {ref_s:.2f} s, peak RSS "
              f"{ref_peak:.0f} MB ({ref_load:.0f} MB over its imports)", flush=True)
        for side in sides[1:]:
            r = runs[side]
            s = statistics.median(x["seconds"] for x in r)
            peak = statistics.median(x["peak_mb"] for x in r)
            load = statistics.median(x["peak_mb"] - x["after_import_mb"] for x in r)
            print(f"  anyclip [{side[1]}]: build+load {s:.2f} s = {s / ref_s:.2f}x open_clip's time; peak RSS "
                  f"{peak:.0f} MB = {peak / ref_peak:.2f}x; over its imports {load:.0f} MB = {load / ref_load:.2f}x",
                  flush=True)


def bench_imports(args):
    cases = {"import anyclip": "import anyclip",
             "anyclip --help": "import sys\nfrom anyclip.cli import main\ntry:\n    main(['--help'])\n"
                               "except SystemExit:\n    pass",
             "import open_clip": "import open_clip"}
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, code in cases.items():
            times[name].append(_wall(code))
    ref = statistics.median(times["import open_clip"])
    for name, t in times.items():
        median = statistics.median(t)
        print(f"{name}: {median:.2f} s (fresh process, interpreter start included; goal <= 1 s)"
              + ("" if name == "import open_clip" else f" = {median / ref:.2f}x import open_clip"), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ViT-B-32,ViT-L-14")
    parser.add_argument("--backends", default="jax,torch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}; shared machine: compare the ratios of one run", flush=True)
    bench_imports(args)
    with tempfile.TemporaryDirectory() as folder:
        bench_load(args, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
