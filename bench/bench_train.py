"""Training throughput and peak memory: anyclip train (jax, torch) vs open_clip_train, measured in the same run.

For each model of ``--models`` this writes ``batch * steps`` synthetic image-caption pairs once with
:mod:`anyclip.data.shapes` (a tab-separated CSV, columns ``filepath`` / ``title``, JPEGs at the model's image
size) and trains on them for one epoch with each trainer, one after the other, with the same flags:
the same CSV, ``--batch-size``, ``--workers``, ``--seed``, ``--precision fp32``, lr / wd / betas / eps and
``--warmup 1`` spelt out (open_clip_train's defaults differ: warmup 10000, lr and betas from the model name),
cosine schedule, ``--log-every-n-steps 1``, no evaluation:

* ``open_clip``      ``open_clip_train.main.main([... "--device", "cpu"])`` through ``python -c``, which first
                     registers a JSON model with ``open_clip.add_model_config`` (needs pandas and webdataset);
                     its ``out.log`` gives one ``Batch (t): ..., N/s`` per step
* ``anyclip/jax``,   ``python -m anyclip.cli train ...`` with ``KERAS_BACKEND`` set; its ``train.jsonl``
  ``anyclip/torch``  gives ``samples_per_second`` per step

Both trainers time a step the same way: from the end of one optimiser step to the end of the next, so data
waiting, the step and the previous step's logging are all inside. The table gives the median samples/s over
the steps after the first ``--skip`` (JIT compilation, DataLoader start-up), the peak resident memory of the
run and its total wall time (start-up, compilation, the final checkpoint that both trainers always write).
Peak RSS: each trainer runs as the only child of a fresh small Python process that prints
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once it exits, i.e. the largest RSS of any one process of that run
(open_clip's DataLoader workers are processes of their own and are not added in; anyclip's are threads).
Ratios are anyclip / open_clip: above 1 means faster (samples/s) or bigger (RSS).

    python bench/bench_train.py                          # ViT-B-32 (batch 16, 12 steps), tiny (batch 128, 30)
    python bench/bench_train.py --models tiny --steps 6 --backends jax
    python bench/bench_train.py --models ViT-B-32,tiny-sigmoid --batch-size 32 --steps 8     # README rows
    python bench/bench_train.py --models ViT-B-32 --batch-size 32 --steps 8 --grad-checkpointing
    python bench/bench_train.py --batch-size 32 --workers 4 --json train.json
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata

os.environ.setdefault("KERAS_BACKEND", "jax")

TINY = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "head_width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}
TINY_SIGLIP = {**TINY, "init_logit_bias": -10}  # --siglip: the sigmoid loss on both sides
# (named without "siglip": open_clip_train would then ask the hub for the SigLIP tokenizer)
MODELS = {"ViT-B-32": {"image_size": 224, "batch": 16, "steps": 12},
          "tiny": {"image_size": 64, "batch": 128, "steps": 30, "config": TINY},
          "tiny-sigmoid": {"image_size": 64, "batch": 128, "steps": 30, "config": TINY_SIGLIP, "siglip": True}}
PACKAGES = ("anyclip", "keras", "jax", "torch", "open_clip_torch")

# argv: LOG COMMAND...; runs COMMAND as its only child (output to LOG), then prints its wall time and peak RSS
MEASURE = """import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as log:
    rc = subprocess.call(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
print(json.dumps({"rc": rc, "wall_s": time.perf_counter() - start,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"""
# argv: JSON-or-empty FLAGS...; open_clip_train.main, with a JSON model config registered first
OPEN_CLIP_MAIN = """import sys, open_clip
from open_clip_train.main import main
if sys.argv[1]:
    open_clip.add_model_config(sys.argv[1])
main(sys.argv[2:])"""
OPEN_CLIP_RATE = re.compile(r"Batch \(t\): [0-9.]+, ([0-9.eE+-]+)/s")


def processor():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def train_flags(args, spec, csv_path, batch, logs, name):
    """The flags both trainers get (open_clip_train's names)."""
    extra = (["--siglip"] if spec.get("siglip") else []) + (["--grad-checkpointing"] if args.grad_checkpointing else [])
    return [*extra, "--train-data", str(csv_path), "--dataset-type", "csv", "--csv-img-key", "filepath",
            "--csv-caption-key", "title", "--csv-separator", "\t", "--batch-size", str(batch), "--epochs", "1",
            "--lr", str(args.lr), "--wd", "0.2", "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6",
            "--warmup", "1", "--lr-scheduler", "cosine", "--precision", "fp32", "--workers", str(args.workers),
            "--seed", str(args.seed), "--log-every-n-steps", "1", "--logs", str(logs), "--name", name]


def command(trainer, model, json_path, flags):
    """(command line, KERAS_BACKEND) of one trainer."""
    if trainer == "open_clip":
        return [sys.executable, "-c", OPEN_CLIP_MAIN, json_path or "", *flags, "--model", model,
                "--device", "cpu"], "torch"
    backend = trainer.split("/")[1]
    return [sys.executable, "-m", "anyclip.cli", "train", *flags, "--model", json_path or model], backend


def step_rates(trainer, run_dir):
    """Per-step samples/s in step order, from the trainer's own log."""
    if trainer == "open_clip":
        with open(os.path.join(run_dir, "out.log")) as f:
            return [float(m.group(1)) for m in map(OPEN_CLIP_RATE.search, f) if m]
    with open(os.path.join(run_dir, "train.jsonl")) as f:
        return [r["samples_per_second"] for r in map(json.loads, f) if "samples_per_second" in r]


def run(trainer, model, json_path, flags, logs, name, skip):
    cmd, backend = command(trainer, model, json_path, flags)
    print(f"$ KERAS_BACKEND={backend} " + " ".join(f"${a!r}" if set(a) & set("\t\n") else shlex.quote(a)
                                                   for a in cmd), flush=True)
    log_path = os.path.join(logs, f"{name}.console.log")
    out = subprocess.run([sys.executable, "-c", MEASURE, log_path, *cmd], capture_output=True, text=True,
                         env={**os.environ, "KERAS_BACKEND": backend}, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"]:
        with open(log_path) as f:
            sys.exit(f"{trainer} failed (exit {result['rc']}); its output ends with:\n{f.read()[-3000:]}")
    rates = step_rates(trainer, os.path.join(logs, name))
    if len(rates) <= skip:
        sys.exit(f"{trainer} logged {len(rates)} steps, not more than --skip {skip}")
    return {"model": model, "trainer": trainer, "steps": len(rates), "samples_per_s": statistics.median(rates[skip:]),
            "peak_rss_mib": result["peak_rss_kib"] / 1024, "wall_s": result["wall_s"], "step_rates": rates}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ViT-B-32,tiny", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--backends", default="jax,torch", help="anyclip's Keras backends, comma-separated")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per model (ViT-B-32 16, tiny 128)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps (samples written: batch * steps); default: ViT-B-32 12, tiny 30")
    parser.add_argument("--skip", type=int, default=3, help="first steps left out of the median (compile, warm-up)")
    parser.add_argument("--workers", type=int, default=2, help="open_clip DataLoader processes / anyclip threads")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="train with gradient checkpointing on both sides (compare peak RSS with a run without)")
    parser.add_argument("--json", default=None, help="also write the settings and results to this file")
    args = parser.parse_args()
    models = args.models.split(",")
    if unknown := set(models) - set(MODELS):
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(MODELS)}")
    trainers = ["open_clip"] + [f"anyclip/{b}" for b in args.backends.split(",") if b]
    if missing := [m for m in ("pandas", "webdataset") if importlib.util.find_spec(m) is None]:
        sys.exit(f"open_clip_train's data.py imports {' and '.join(missing)}: pip install {' '.join(missing)}")

    from anyclip.data import ShapesConfig, make_shapes

    machine = {"cpus": len(os.sched_getaffinity(0)), "processor": processor(), "python": platform.python_version(),
               **{p: metadata.version(p) for p in PACKAGES}}
    print(", ".join(f"{k} {v}" for k, v in machine.items()))
    rows, settings = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            spec = MODELS[model]
            batch, steps = args.batch_size or spec["batch"], args.steps or spec["steps"]
            if steps <= args.skip:
                parser.error(f"{model}: --steps {steps} leaves nothing after --skip {args.skip}")
            settings[model] = {"batch": batch, "steps": steps, "image_size": spec["image_size"],
                               "grad_checkpointing": args.grad_checkpointing, "siglip": bool(spec.get("siglip")),
                               "workers": args.workers, "lr": args.lr, "seed": args.seed, "skip": args.skip}
            print(f"{model}: {settings[model]}", flush=True)
            folder = os.path.join(tmp, model)
            csv_path = make_shapes(os.path.join(folder, "data"), "train", batch * steps, "csv", progress=False,
                                   config=ShapesConfig(image_size=spec["image_size"]))
            json_path = None
            if "config" in spec:
                json_path = os.path.join(folder, f"{model}.json")  # open_clip registers it under its stem
                with open(json_path, "w") as f:
                    json.dump(spec["config"], f)
            logs = os.path.join(folder, "logs")
            os.makedirs(logs)
            for trainer in trainers:
                name = trainer.replace("/", "-")
                rows.append(run(trainer, model, json_path, train_flags(args, spec, csv_path, batch, logs, name),
                                logs, name, args.skip))

    base = {r["model"]: r for r in rows if r["trainer"] == "open_clip"}
    print(f"\n{'model':<14}{'trainer':<15}{'steps':>6}{'samples/s':>11}{'vs open_clip':>14}"
          f"{'peak RSS MiB':>14}{'vs open_clip':>14}{'wall s':>9}")
    for r in rows:
        ref = base[r["model"]]
        r["speed_ratio"] = r["samples_per_s"] / ref["samples_per_s"]
        r["rss_ratio"] = r["peak_rss_mib"] / ref["peak_rss_mib"]
        print(f"{r['model']:<14}{r['trainer']:<15}{r['steps']:>6}{r['samples_per_s']:>11.2f}"
              f"{r['speed_ratio']:>13.2f}x{r['peak_rss_mib']:>14.0f}{r['rss_ratio']:>13.2f}x{r['wall_s']:>9.1f}")
    print(f"samples/s: median over the steps after the first {args.skip}; wall s: whole run, start-up included")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "settings": settings, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
