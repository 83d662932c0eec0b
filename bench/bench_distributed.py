"""Overhead of JAX data parallelism simulated on CPU: one training step on 1 device vs on N simulated devices.

Each case runs in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the same flag for
both, so only the mesh differs) and times :class:`anyclip.train.TrainStep` -- forward, global-batch loss,
gradients, AdamW update -- on the same global batch of random images and tokens, after one untimed
compiling step. The N simulated devices share the same CPU cores, so the ratio measures the cost of the
SPMD partitioning (the all-gathers of the features, the gradient all-reduce, smaller per-device matmuls),
not a speed-up. ``--torch`` adds torch DDP: 1 process vs 2 gloo processes on the same global batch.

    python bench/bench_distributed.py                      # tiny ViT, global batch 32, 4 devices
    python bench/bench_distributed.py --devices 8 --batch 64 --repeats 10 --torch
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "head_width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 4096, "width": 128, "heads": 2, "layers": 2},
}


def child(devices, batch, repeats, loss):
    """Median seconds per step on ``devices`` (JAX: simulated devices; torch: gloo processes)."""
    import keras
    import numpy as np

    import anyclip
    from anyclip.train import DistributedConfig, TrainStep, clip_loss, siglip_loss
    from anyclip.train.distributed import setup_distributed
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from timing import timed
    ctx = setup_distributed(DistributedConfig(devices=devices, dist_timeout=300, dist_backend="gloo"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({**TINY, "init_logit_bias": -10.0} if loss == "siglip" else TINY, f)
    model = anyclip.create_model(f.name, load_weights=False, seed=0)
    os.unlink(f.name)
    fn = (lambda o: siglip_loss(**o)) if loss == "siglip" else (lambda o: clip_loss(**o))
    step = TrainStep(model, keras.optimizers.AdamW(1e-4), ctx.wrap_loss(fn, loss), distributed=ctx)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 64, 64, 3)).astype("float32")
    tokens = rng.integers(1, 4095, size=(batch, 32)).astype("int32")
    images, tokens = ctx.shard(images, tokens)
    seconds = timed(lambda: step(images, tokens), repeats)
    ctx.close()
    if ctx.is_main:
        print("RESULT " + json.dumps({"devices": devices, "seconds": seconds}))


def _run(backend, devices, processes, opts):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={opts.devices}"}
    if backend == "torch" and processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(processes))
    cmd = [sys.executable, __file__, "--child", str(devices), "--batch", str(opts.batch), "--repeats",
           str(opts.repeats), "--loss", opts.loss]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(processes)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    for p, out in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"{backend} child failed:\n{out[-3000:]}")
    line = next(line for line in outs[0].splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])["seconds"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=4, help="simulated devices (JAX)")
    p.add_argument("--batch", type=int, default=32, help="global batch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--loss", default="clip", choices=["clip", "siglip"])
    p.add_argument("--torch", action="store_true", help="also torch: 1 process vs 2 gloo processes")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child is not None:
        return child(opts.child, opts.batch, opts.repeats, opts.loss)
    start = time.perf_counter()
    rows = [("jax", 1, _run("jax", 1, 1, opts)), ("jax", opts.devices, _run("jax", opts.devices, 1, opts))]
    if opts.torch:
        rows += [("torch", 1, _run("torch", 1, 1, opts)), ("torch", 2, _run("torch", 2, 2, opts))]
    print(f"global batch {opts.batch}, {opts.loss} loss, tiny ViT ({os.cpu_count()} CPU cores)")
    print(f"{'backend':8} {'devices':>7} {'s/step':>9} {'ratio':>7}")
    base = {}
    for backend, devices, seconds in rows:
        base.setdefault(backend, seconds)
        print(f"{backend:8} {devices:>7} {seconds:>9.4f} {seconds / base[backend]:>7.2f}")
    print(f"(ratio: s/step over the same backend's 1 device; {time.perf_counter() - start:.0f}s in all)")


if __name__ == "__main__":
    main()
