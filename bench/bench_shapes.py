"""The shapes benchmark: zero-shot accuracy of anyclip's shipped default model, and its CPU training time.

Scores ``anyclip-shapes`` / ``v1`` (or ``--model`` / ``--pretrained``) on the three shapes tasks of
:func:`anyclip.data.shapes.zero_shot_tasks`, with images rendered in memory:

* ``shape``        8 shapes, on ``test`` (colour-shape pairs seen in training, new images)
* ``colour``       8 colours, on ``test``
* ``combination``  all 64 colour-shape pairs as classes, on ``test_heldout``: only the 6 pairs that were
                   kept out of training, so the model must compose a colour and a shape it never saw together

and prints the training record shipped beside the weights (the exact commands, seed, wall time, machine).
``--retrain DIR`` runs those commands again in ``DIR``, times them, scores the new model too and reports
how far its weights are from the shipped ones (the recipe is seeded: on the same machine and library
versions they should agree to float noise).

    python bench/bench_shapes.py                      # 2000 images per task
    python bench/bench_shapes.py --retrain /tmp/shapes-retrain
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def score(model_name, pretrained, n):
    import anyclip
    from anyclip.eval.shapes import shapes_zero_shot
    model = anyclip.create_model(model_name, pretrained)
    tokenizer = anyclip.get_tokenizer(model_name)
    start = time.perf_counter()
    results = shapes_zero_shot(model, tokenizer, num_samples=n)
    return results, time.perf_counter() - start


def print_scores(title, results, seconds, n):
    from anyclip.data.shapes import zero_shot_tasks
    tasks = zero_shot_tasks()
    print(f"\n{title}  ({n} images per task, scored in {seconds:.1f} s)")
    print(f"{'task':<12} {'split':<13} {'classes':>7} {'top-1':>7} {'top-5':>7} {'mean recall':>11}")
    for name, m in results.items():
        print(f"{name:<12} {tasks[name].split:<13} {len(tasks[name].classnames):>7} {m['acc1']:>7.1%} "
              f"{m['acc5']:>7.1%} {m['mean_per_class_recall']:>11.1%}")


def retrain(record, out):
    out.mkdir(parents=True, exist_ok=True)
    timings = []
    for command in record["commands"]:
        start = time.perf_counter()
        print(f"$ {command}", flush=True)
        words = shlex.split(command)
        env = dict(os.environ)
        while words and "=" in words[0]:  # leading NAME=value words set the environment, as in a shell
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        subprocess.run(words, cwd=out, env=env, check=True)
        timings.append(time.perf_counter() - start)
    return out / record["final_folder"], timings


def main():
    from importlib import resources
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="anyclip-shapes")
    p.add_argument("--pretrained", default="v1")
    p.add_argument("--n", type=int, default=2000, help="images per task")
    p.add_argument("--retrain", type=Path, default=None, help="re-run the training recipe in this folder")
    args = p.parse_args()
    import keras
    print(f"backend {keras.backend.backend()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, python {platform.python_version()}")
    results, seconds = score(args.model, args.pretrained, args.n)
    print_scores(f"{args.model} / {args.pretrained}", results, seconds, args.n)

    record_file = resources.files("anyclip.weights").joinpath("builtin", "anyclip-shapes-v1.json")
    record = json.loads(record_file.read_text())
    print("\nshipped training record:")
    print(f"  machine: {record['machine']}")
    rates = ", ".join(f"{r:.0f}" for r in record["samples_per_second_by_stage"])
    print(f"  training: {record['train_seconds'] / 60:.1f} min for {record['steps']} steps "
          f"({rates} samples/s by stage)")
    for command in record["commands"]:
        print(f"  $ {command}")
    if args.retrain is None:
        return
    folder, timings = retrain(record, args.retrain)
    training = [t for c, t in zip(record["commands"], timings) if " train " in f" {c} "]
    print(f"\nretrained: data {sum(timings) - sum(training):.0f} s, training {sum(training) / 60:.1f} min "
          f"(shipped record: {record['train_seconds'] / 60:.1f} min)")
    new_results, seconds = score(f"local-dir:{folder}", None, args.n)
    print_scores(f"retrained ({folder})", new_results, seconds, args.n)
    from safetensors.numpy import load_file
    shipped = load_file(str(resources.files("anyclip.weights").joinpath(record["file"])))
    mine = load_file(str(folder / "open_clip_model.safetensors"))
    diff = max(float(np.abs(shipped[k].astype(np.float64) - mine[k]).max()) for k in shipped)
    print(f"largest weight difference to the shipped model: {diff:.3g}")


if __name__ == "__main__":
    sys.exit(main())
