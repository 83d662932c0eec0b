"""GPU throughput and fp32 parity (issue 24, item 7): open_clip against anyclip on one GPU, one markdown table.

Columns: open_clip fp32 (TF32 off), bf16 autocast, bf16 autocast + torch.compile; anyclip JAX fp32 (exact
float32 products), tf32, bf16 and anyclip torch bf16. Rows: ViT-B-32 and ViT-L-14, images (batch 512 / 256)
and texts (1024 x 77 tokens). Random weights (open_clip's initialisation, seed 0, loaded into anyclip),
inputs already on the device, every variant warmed up, then timed in interleaved rounds; medians. MFU counts
the reference model's FLOPs (torch's FlopCounterMode) against 989 TFLOP/s (H100/H200 dense bf16 spec).
The parity table: max|d| of unit vectors against open_clip fp32 with TF32 off (goal 1e-5) and the lowest
cosine of bf16 to it (goal >= 0.998). Each Keras backend runs in its own process; the torch process times
open_clip bf16 autocast again beside anyclip torch bf16 for its in-run ratio.

On the GPU machine (torch, JAX with CUDA and timm are there; keras, open_clip_torch and ftfy travel as wheels),
prepared here once, in the repository root::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl keras==3.15.1 namex optree open_clip_torch==3.3.0 ftfy wcwidth

then one ``run`` with ``carry=[".whl"]`` and ``timeout_s=600``::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site:src || exit; PYTHONUNBUFFERED=1 python3 bench/bench_gpu.py \\
        --out $OUT/gpu.md 2>&1 | tee $OUT/log

Rows are printed as they finish, so a run cut short still reports what it measured. torch.compile of
ViT-L-14 takes minutes: where one call's 10 minutes are tight, run ``--models ViT-B-32`` and
``--models ViT-L-14`` as two calls on the warm machine, or add ``--no-compile``. On a CPU,
``python bench/bench_gpu.py --smoke`` runs every path on ViT-S-32 with tiny batches (its numbers mean nothing).
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

PEAK_FLOPS = 989e12  # dense bf16, H100 / H200 SXM spec
EOT = 49407
FULL = {"models": "ViT-B-32,ViT-L-14", "image_batch": {"ViT-B-32": 512, "ViT-L-14": 256}, "text_batch": 1024,
        "repeats": 10, "warmup": 3}
SMOKE = {"models": "ViT-S-32", "image_batch": {}, "text_batch": 2, "repeats": 2, "warmup": 1}
REFERENCE_COLUMNS = ("open_clip fp32", "open_clip bf16", "open_clip bf16 compile")
COLUMNS = {
    "open_clip fp32": "open_clip fp32 (no TF32)",
    "open_clip bf16": "open_clip bf16 autocast",
    "open_clip bf16 compile": "open_clip bf16 + torch.compile",
    "anyclip jax fp32": "anyclip JAX fp32",
    "anyclip jax tf32": "anyclip JAX tf32",
    "anyclip jax bf16": "anyclip JAX bf16",
    "anyclip torch bf16": "anyclip torch bf16",
}


# ----------------------------------------------------------------------------- worker (one Keras backend)
def _sync_all(out):
    import torch
    if isinstance(out, torch.Tensor):
        if out.is_cuda:
            torch.cuda.synchronize()
        return out
    import jax
    return jax.block_until_ready(out)


def _to_numpy(out):
    import torch
    if isinstance(out, torch.Tensor):
        return out.float().cpu().numpy()
    return np.asarray(out, dtype=np.float32)


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _reference_runners(ref, device, compile_it):
    """open_clip's variants: (name, images fn, texts fn)."""
    import torch

    def autocast(fn):
        def run(x):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return fn(x)
        return run

    runners = [("open_clip fp32", ref.encode_image, ref.encode_text),
               ("open_clip bf16", autocast(ref.encode_image), autocast(ref.encode_text))]
    if compile_it:
        runners.append(("open_clip bf16 compile", autocast(torch.compile(ref.encode_image)),
                        autocast(torch.compile(ref.encode_text))))
    return runners


def _flops_per_item(ref, images, texts):
    """FLOPs of one image and one text through open_clip (matmuls and attention, as torch counts them)."""
    from torch.utils.flop_counter import FlopCounterMode
    counts = []
    for fn, x in ((ref.encode_image, images[:1]), (ref.encode_text, texts[:1])):
        mode = FlopCounterMode(display=False)
        with mode:
            fn(x)
        counts.append(mode.get_total_flops())
    return counts


def _time_interleaved(runners, repeats, warmup, report):
    """Median seconds per call of each runner, rounds interleaved; also each runner's last output."""
    outputs = {}
    for name, fn in runners:
        start = time.perf_counter()
        for _ in range(warmup):
            outputs[name] = _sync_all(fn())
        report(f"  warm-up {name}: {time.perf_counter() - start:.1f} s")
    times = {name: [] for name, _ in runners}
    for _ in range(repeats):
        for name, fn in runners:
            start = time.perf_counter()
            _sync_all(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def _parity(outputs, reference):
    ref = _unit(_to_numpy(outputs[reference]))
    rows = {}
    for name, out in outputs.items():
        if name == reference:
            continue
        ours = _unit(_to_numpy(out))
        rows[name] = {"max_abs": float(np.abs(ours - ref).max()), "min_cos": float((ours * ref).sum(-1).min())}
    return rows


def run_worker(args, config):
    import keras
    import open_clip
    import torch

    import anyclip
    from anyclip.weights.mapping import load_state_dict

    backend = keras.backend.backend()
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference fp32: no TF32 anywhere
    torch.backends.cudnn.allow_tf32 = False
    torch.set_grad_enabled(False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"backend": backend, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "versions": {"torch": torch.__version__, "keras": keras.__version__, "open_clip": open_clip.__version__},
               "rows": []}
    if backend == "jax":
        import jax
        results["versions"]["jax"] = jax.__version__
        results["jax_devices"] = [str(d) for d in jax.devices()]

    def report(line):
        print(f"[{backend}] {line}", file=sys.stderr, flush=True)

    ours_precisions = ("fp32", "tf32", "bf16") if backend == "jax" else ("fp32", "bf16")
    for name in config["models"].split(","):
        torch.manual_seed(0)
        ref = open_clip.create_model(name).eval().to(device)
        state = {k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()}
        models = {}
        for precision in ours_precisions:
            models[precision] = anyclip.create_model(name, load_weights=False, precision=precision)
            load_state_dict(models[precision], state)
        del state
        size = models["fp32"].image_size
        batch = config["image_batch"].get(name, 2)
        rng = np.random.default_rng(0)
        images = rng.standard_normal((batch, *size, 3)).astype(np.float32)
        tokens = rng.integers(1, EOT, (config["text_batch"], ref.context_length)).astype(np.int32)
        tokens[:, -1] = EOT  # full 77-token prompts: nothing to trim
        images_ref = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
        tokens_ref = torch.from_numpy(tokens).long().to(device)
        if backend == "jax":
            images_ours, tokens_ours = jax.device_put(images), jax.device_put(tokens)
        else:
            images_ours, tokens_ours = (keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(tokens))
        flops = _flops_per_item(ref, images_ref, tokens_ref)
        reference = _reference_runners(ref, device, compile_it=backend == "jax" and not args.no_compile)
        for kind, x_ref, x_ours, flop in (("images", images_ref, images_ours, flops[0]),
                                          ("texts", tokens_ref, tokens_ours, flops[1])):
            pick = 1 if kind == "images" else 2
            runners = [(r[0], (lambda fn: lambda: fn(x_ref))(r[pick])) for r in reference]
            runners += [(f"anyclip {backend} {p}",
                         (lambda fn: lambda: fn(x_ours))(m.encode_image if kind == "images" else m.encode_text))
                        for p, m in models.items()]
            # the torch process times only bf16 (open_clip autocast beside anyclip); its fp32 runs are for parity
            timed = [r for r in runners if backend == "jax" or not r[0].endswith("fp32")]
            report(f"{name} {kind}: batch {len(x_ours)}, {flop / 1e9:.2f} GFLOP per item")
            seconds, outputs = _time_interleaved(timed, config["repeats"], config["warmup"], report)
            outputs.update({n: _sync_all(fn()) for n, fn in runners if n not in outputs})
            row = {"model": name, "kind": kind, "batch": len(x_ours), "flops_per_item": flop,
                   "per_second": {n: len(x_ours) / s for n, s in seconds.items()},
                   "parity": _parity(outputs, "open_clip fp32")}
            results["rows"].append(row)
            report(json.dumps({k: row[k] for k in ("model", "kind", "per_second")}))
        del models, ref
    with open(args.json, "w") as f:
        json.dump(results, f)


# ----------------------------------------------------------------------------- report
def _cell(row, column):
    value = row["per_second"].get(column)
    if value is None:
        return ""
    mfu = value * row["flops_per_item"] / PEAK_FLOPS
    return f"{value:,.0f} ({mfu:.0%} MFU)" if mfu >= 0.005 else f"{value:,.1f}"


def _merge(results):
    """One row per (model, kind): the JAX process' open_clip columns, each process' anyclip columns."""
    rows = {}
    for res in results:
        for row in res["rows"]:
            key = (row["model"], row["kind"])
            merged = rows.setdefault(key, {**row, "per_second": {}, "parity": {}, "torch_side_reference": None})
            for column, value in row["per_second"].items():
                if column.startswith("anyclip") or res["backend"] == "jax":
                    merged["per_second"][column] = value
                elif column == "open_clip bf16":
                    merged["torch_side_reference"] = value
            merged["parity"].update(row["parity"])
    return list(rows.values())


def report_table(results) -> str:
    rows = _merge(results)
    device = results[0]["device"]
    lines = [f"Device: {device}; {datetime.date.today()}; versions {json.dumps(results[0]['versions'])}; "
             "random weights, inputs on the device, medians of interleaved rounds after warm-up; MFU against "
             f"{PEAK_FLOPS / 1e12:.0f} TFLOP/s", "",
             "| per second | " + " | ".join(COLUMNS.values()) + " | anyclip best / open_clip best |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for row in rows:
        per = row["per_second"]
        theirs = max((per[c] for c in REFERENCE_COLUMNS if c in per), default=None)
        ours = max((v for c, v in per.items() if c.startswith("anyclip")), default=None)
        ratio = f"{ours / theirs:.2f}x" if ours and theirs else ""
        lines.append(f"| {row['model']} {row['kind']} (batch {row['batch']}) | "
                     + " | ".join(_cell(row, c) for c in COLUMNS) + f" | {ratio} |")
    lines += ["", "anyclip torch bf16 beside open_clip bf16 autocast in the torch process (in-run ratio):"]
    for row in rows:
        ref, ours = row["torch_side_reference"], row["per_second"].get("anyclip torch bf16")
        if ref and ours:
            lines.append(f"- {row['model']} {row['kind']}: {ours:,.1f} vs {ref:,.1f} per s = {ours / ref:.2f}x")
    parity_columns = ["anyclip jax fp32", "anyclip jax tf32", "anyclip torch fp32", "anyclip jax bf16",
                      "anyclip torch bf16", "open_clip bf16"]
    lines += ["", "Parity against open_clip fp32 (TF32 off), unit vectors: max|d| for float32 (goal 1e-5), "
              "lowest cosine for bf16 (goal >= 0.998)", "",
              "| model | " + " | ".join(parity_columns) + " |", "|---" * (len(parity_columns) + 1) + "|"]
    for row in rows:
        cells = []
        for column in parity_columns:
            p = row["parity"].get(column)
            cells.append("" if p is None else f"{p['max_abs']:.1e}" if "bf16" not in column
                         else f"cos {p['min_cos']:.5f}")
        lines.append(f"| {row['model']} {row['kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="ViT-S-32, tiny batches: checks every path on a CPU")
    parser.add_argument("--models", help="comma-separated model names (default ViT-B-32,ViT-L-14)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 10)")
    parser.add_argument("--no-compile", action="store_true", help="leave out open_clip bf16 + torch.compile")
    parser.add_argument("--backends", default="jax,torch", help="Keras backends, one process each")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = dict(SMOKE if args.smoke else FULL)
    if args.models:
        config["models"] = args.models
    if args.repeats:
        config["repeats"] = args.repeats
    if args.worker:
        return run_worker(args, config)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            path = os.path.join(tmp, f"{backend}.json")
            env = {**os.environ, "KERAS_BACKEND": backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                   "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
            command = [sys.executable, os.path.abspath(__file__), "--worker", backend, "--json", path]
            command += [f for f, on in (("--smoke", args.smoke), ("--no-compile", args.no_compile)) if on]
            command += [f"--models={config['models']}", f"--repeats={config['repeats']}"]
            if subprocess.run(command, env=env).returncode == 0:
                with open(path) as f:
                    results.append(json.load(f))
            else:
                print(f"the {backend} process failed; its columns are missing", file=sys.stderr)
    if not results:
        return 1
    table = report_table(results)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
