"""CPU precision (issue 24, item 6): anyclip against open_clip at fp32 and at bf16, side by side.

For each Keras backend (one process each; ``--xla-flags`` adds JAX processes with other XLA CPU flags) and
the same random weights (open_clip's initialisation, seed 0, loaded into anyclip), times in interleaved
rounds: open_clip fp32, open_clip bf16 (``torch.autocast("cpu", torch.bfloat16)``, open_clip's ``amp_bf16``),
anyclip fp32 and anyclip bf16 (``create_model(..., precision="bf16")``), on images and on full 77-token
texts. Prints per second, the ratio anyclip / open_clip at each precision, bf16 / fp32 of each side and the
lowest cosine of each bf16 output to open_clip's fp32 (goal >= 0.999). The machine may be shared: compare
ratios from one run, not absolute figures across runs.

    python bench/bench_precision.py                                   # ViT-B-32, batch 8 images / 32 texts
    python bench/bench_precision.py --backends jax --xla-flags=--xla_cpu_experimental_ynn_fusion_type=dot
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

EOT = 49407


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def run_worker(args):
    import keras
    import open_clip
    import torch

    import anyclip
    from anyclip.weights.mapping import load_state_dict

    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    ref = open_clip.create_model(args.model).eval()
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    ours = {}
    for precision in ("fp32", "bf16"):
        ours[precision] = anyclip.create_model(args.model, load_weights=False, precision=precision)
        load_state_dict(ours[precision], state)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch, *ours["fp32"].image_size, 3)).astype(np.float32)
    tokens = rng.integers(1, EOT, (args.text_batch, ref.context_length)).astype(np.int32)
    tokens[:, -1] = EOT
    inputs = {"images": (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), images),
              "texts": (torch.from_numpy(tokens).long(), tokens)}

    def ours_fn(model, kind, x):
        encode = model.encode_image if kind == "images" else model.encode_text
        return lambda: keras.ops.convert_to_numpy(keras.ops.cast(encode(x), "float32"))

    def theirs_fn(kind, x, bf16):
        encode = ref.encode_image if kind == "images" else ref.encode_text

        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return encode(x).float().numpy()
        return run

    rows = []
    for kind, (x_ref, x_ours) in inputs.items():
        fns = {"open_clip fp32": theirs_fn(kind, x_ref, False), "open_clip bf16": theirs_fn(kind, x_ref, True),
               "anyclip fp32": ours_fn(ours["fp32"], kind, x_ours), "anyclip bf16": ours_fn(ours["bf16"], kind, x_ours)}
        outputs = {name: [fn() for _ in range(args.warmup)][-1] for name, fn in fns.items()}
        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        reference = _unit(outputs["open_clip fp32"])
        rows.append({"kind": kind, "batch": len(x_ours),
                     "per_second": {n: len(x_ours) / statistics.median(t) for n, t in times.items()},
                     "min_cos": {n: float((_unit(outputs[n]) * reference).sum(-1).min()) for n in fns}})
    print(json.dumps({"backend": keras.backend.backend(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                      "torch_threads": torch.get_num_threads(), "rows": rows}), flush=True)


def _print(result, model):
    label = result["backend"] + (f" XLA_FLAGS={result['xla_flags']}" if result["xla_flags"] else "")
    for row in result["rows"]:
        per = row["per_second"]
        print(f"{model} {row['kind']:<6} (batch {row['batch']}) [{label}]")
        for precision in ("fp32", "bf16"):
            ours, theirs = per[f"anyclip {precision}"], per[f"open_clip {precision}"]
            cos = row["min_cos"][f"anyclip {precision}"], row["min_cos"][f"open_clip {precision}"]
            print(f"  {precision}: anyclip {ours:7.1f}/s  open_clip {theirs:7.1f}/s  ratio {ours / theirs:5.2f}x   "
                  f"min cos to open_clip fp32: anyclip {cos[0]:.5f}, open_clip {cos[1]:.5f}")
        print(f"  bf16 / fp32: anyclip {per['anyclip bf16'] / per['anyclip fp32']:.2f}x   "
              f"open_clip {per['open_clip bf16'] / per['open_clip fp32']:.2f}x", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=8, help="images per call")
    parser.add_argument("--text-batch", type=int, default=32, help="77-token texts per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backends", default="jax,torch", help="Keras backends, one process each")
    parser.add_argument("--xla-flags", action="append", default=[],
                        help="also run a JAX process with these XLA_FLAGS (repeatable)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    runs = [(b, os.environ.get("XLA_FLAGS", "")) for b in args.backends.split(",")]
    runs += [("jax", flags) for flags in args.xla_flags]
    print(f"cpus {os.cpu_count()}; shared machine: ratios within one process are the figures, absolute ones vary")
    for backend, flags in runs:
        env = {**os.environ, "KERAS_BACKEND": backend, "XLA_FLAGS": flags,
               "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
        command = [sys.executable, os.path.abspath(__file__), "--worker", f"--model={args.model}",
                   f"--batch={args.batch}", f"--text-batch={args.text_batch}", f"--repeats={args.repeats}",
                   f"--warmup={args.warmup}"]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"[{backend} {flags}] failed (exit {done.returncode})", flush=True)
            continue
        _print(json.loads(lines[-1]), args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
