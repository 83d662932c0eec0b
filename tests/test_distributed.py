"""Distributed training == open_clip's single-device step on the same global batch.

JAX runs over 4 simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``) and torch as
2 gloo processes, each in subprocesses (the device count is fixed per process). The reference is open_clip's
``ClipLoss`` / ``SigLipLoss`` on the whole batch in this process; torch workers also run open_clip's own
distributed losses under gloo (``world_size=2``) and average its gradients as DDP does.
"""

import functools
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from reference import randomize

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 512, "width": 64, "heads": 2, "layers": 1},
}
BATCH, LR, WORLD = 8, 0.5, 2
KINDS = ("clip", "siglip")
# torch modes: (loss kind, --local-loss, --gather-with-grad)
TORCH_MODES = (("clip", False, False), ("clip", False, True), ("clip", True, True), ("clip", True, False),
               ("siglip", False, False))
TESTS = Path(__file__).resolve().parent
TIMEOUT = 900  # a hang guard for a busy machine; the workers take about a minute on an idle one


def config(kind):
    return {**TINY, "init_logit_bias": -10.0} if kind == "siglip" else TINY


@functools.cache
def reference(kind, seed=0):
    """open_clip on the whole batch: ``(arrays, ref)``; arrays hold the batch and the random weights."""
    import open_clip
    import torch
    model = open_clip.model.CLIP(**config(kind), output_dict=True)
    model.load_state_dict(randomize(model.state_dict(), seed))
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((BATCH, 32, 32, 3)).astype(np.float32)
    tokens = rng.integers(1, 511, size=(BATCH, 16)).astype(np.int32)
    tokens[np.arange(BATCH), rng.integers(3, 16, size=BATCH)] = 511
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    out = model(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(tokens).long())
    loss_fn = open_clip.loss.SigLipLoss() if kind == "siglip" else open_clip.loss.ClipLoss()
    args = [out["image_features"], out["text_features"], out["logit_scale"]]
    loss = loss_fn(*args, out["logit_bias"]) if kind == "siglip" else loss_fn(*args)
    loss.backward()
    grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
    arrays = {"images": images, "tokens": tokens, **{f"state/{k}": v for k, v in state.items()}}
    return arrays, {"loss": float(loss.detach()), "grads": grads, "state": state}


# ----------------------------------------------------------------------------- workers (subprocesses)
def _model(arrays, kind, directory):
    import anyclip
    from anyclip.weights.mapping import load_state_dict
    path = Path(directory) / f"{kind}-{os.getpid()}.json"  # torch ranks share the directory
    path.write_text(json.dumps(config(kind)))
    model = anyclip.create_model(str(path), load_weights=False)
    load_state_dict(model, {k[6:]: v for k, v in arrays.items() if k.startswith("state/")})
    return model


def _grads_by_key(model, grads, variables):
    import keras

    from anyclip.weights.mapping import TRANSFORMS, model_entries
    by_id = {id(var): (key, transform) for key, (var, transform) in model_entries(model).items()}
    return {by_id[id(v)][0]: TRANSFORMS[by_id[id(v)][1]][1](np.asarray(keras.ops.convert_to_numpy(g)))
            for v, g in zip(variables, grads)}


def _step(arrays, kind, ctx, directory, tag, out):
    """Our loss, gradients and one SGD update on this process's share of the batch, into ``out``."""
    import keras

    from anyclip.train import TrainStep, clip_loss, siglip_loss
    from anyclip.weights import export_state_dict
    model = _model(arrays, kind, directory)
    loss_fn = (lambda o: siglip_loss(**o)) if kind == "siglip" else (lambda o: clip_loss(**o))
    step = TrainStep(model, keras.optimizers.SGD(LR), ctx.wrap_loss(loss_fn, kind), distributed=ctx)
    images, texts = ctx.shard(arrays["images"], arrays["tokens"])
    if ctx.backend == "jax":
        out[f"{tag}/devices"] = np.int32(len(images.sharding.device_set))
    metrics, grads = step.compute_gradients(images, texts)
    out[f"{tag}/loss"] = np.float64(metrics["loss"])
    out.update({f"{tag}/grad/{k}": v for k, v in _grads_by_key(model, grads, step.variables).items()})
    step(images, texts)
    out.update({f"{tag}/after/{k}": v for k, v in export_state_dict(model).items()})


def jax_worker(arrays, directory):
    import dataclasses

    from anyclip.train import DistributedConfig
    from anyclip.train.distributed import setup_distributed
    config = DistributedConfig(devices=4, dist_timeout=60)
    ctx = setup_distributed(config)
    out = {}
    for kind in KINDS:
        _step({k[len(kind) + 1:]: v for k, v in arrays.items() if k.startswith(kind + "/")}, kind, ctx,
              directory, kind, out)
    # FSDP: the weights too are split over the devices (ModelParallel with fsdp_layout_map)
    (Path(directory) / "fsdp.json").write_text(json.dumps(TINY))
    ctx = setup_distributed(dataclasses.replace(config, fsdp=True), model=str(Path(directory) / "fsdp.json"),
                            precision="fp32")
    clip = {k[5:]: v for k, v in arrays.items() if k.startswith("clip/")}
    model = _model(clip, "clip", directory)
    out["fsdp/sharded"] = np.int32(sum(not v.value.sharding.is_fully_replicated for v in model.weights))
    _step(clip, "clip", ctx, directory, "fsdp", out)
    return out


def _open_clip_ddp(arrays, kind, local_loss, gather_with_grad, rank, world):
    """open_clip's own distributed loss on this rank's rows, gradients averaged over ranks as DDP does."""
    import open_clip
    import torch
    model = open_clip.model.CLIP(**config(kind), output_dict=True)
    model.load_state_dict({k[6:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("state/")})
    n = BATCH // world
    rows = slice(rank * n, (rank + 1) * n)
    out = model(torch.from_numpy(arrays["images"][rows]).permute(0, 3, 1, 2),
                torch.from_numpy(arrays["tokens"][rows]).long())
    if kind == "siglip":
        loss = open_clip.loss.SigLipLoss(rank=rank, world_size=world)(
            out["image_features"], out["text_features"], out["logit_scale"], out["logit_bias"])
    else:
        loss = open_clip.loss.ClipLoss(local_loss=local_loss, gather_with_grad=gather_with_grad, rank=rank,
                                       world_size=world)(out["image_features"], out["text_features"],
                                                         out["logit_scale"])
    loss.backward()
    result = {"loss": loss.detach().reshape(1)}
    for key, p in model.named_parameters():
        result[f"grad/{key}"] = p.grad
    for value in result.values():
        torch.distributed.all_reduce(value)
        value /= world
    return {k: v.numpy() for k, v in result.items()}


def torch_worker(arrays, directory):
    from anyclip.train import DistributedConfig
    from anyclip.train.distributed import setup_distributed
    ctx = setup_distributed(DistributedConfig(dist_backend="gloo", dist_timeout=30))
    if os.environ.get("ANYCLIP_TEST_DIE"):  # a worker that dies: rank 0 must stop with a clear message, not hang
        if ctx.rank == 1:
            os._exit(3)
        ctx.barrier()
    out = {}
    for kind, local, with_grad in TORCH_MODES:
        tag = f"{kind}-{int(local)}{int(with_grad)}"
        part = {k[len(kind) + 1:]: v for k, v in arrays.items() if k.startswith(kind + "/")}
        ctx.local_loss, ctx.gather_with_grad = local, with_grad
        _step(part, kind, ctx, directory, tag, out)
        for key, value in _open_clip_ddp(part, kind, local, with_grad, ctx.rank, ctx.processes).items():
            out[f"{tag}/open_clip/{key}"] = value
    ctx.close()
    return out if ctx.rank == 0 else {}


def resume_worker(arrays, directory):
    """``anyclip train`` on 4 devices, then its step-1 checkpoint resumed on 2 devices and on 1 (same global batch)."""
    from safetensors.numpy import load_file

    from anyclip.cli import main
    from anyclip.data import ShapesConfig, ShapesDataset, write_csv
    root = Path(directory)
    write_csv(ShapesDataset(ShapesConfig(image_size=32, seed=1), "train", 24), root / "data", progress=False)
    (root / "tiny.json").write_text(json.dumps({**TINY, "text_cfg": {**TINY["text_cfg"], "context_length": 77,
                                                                      "vocab_size": 49408}}))
    logs = root / "logs"

    def train(name, devices, *extra):
        code = main(["train", "--train-data", str(root / "data" / "train.csv"), "--model", str(root / "tiny.json"),
                     "--batch-size", str(8 // devices), "--devices", str(devices), "--lr", "1e-3", "--warmup", "1",
                     "--workers", "1", "--logs", str(logs), "--name", name, "--log-every-n-steps", "1", *extra])
        assert code == 0, f"anyclip train {name} exited with {code}"

    train("d4", 4, "--save-every-n-steps", "1", "--keep", "10")
    out = {"d4/devices": np.int32(json.loads((logs / "d4/checkpoints/step_00000001/state.json").read_text())
                                  ["devices"])}
    for devices in (2, 1):
        name = f"d{devices}"
        shutil.copytree(logs / "d4" / "checkpoints" / "step_00000001", logs / name / "checkpoints" / "step_00000001")
        train(name, devices, "--resume", "latest")
    for name in ("d4", "d2", "d1"):
        out.update({f"{name}/{k}": v for k, v in load_file(str(logs / name / "final/open_clip_model.safetensors"))
                    .items()})
        losses = [json.loads(line)["loss"] for line in (logs / name / "train.jsonl").read_text().splitlines()]
        out[f"{name}/losses"] = np.array(losses[-2:])
    return out


def torch_cli_worker(arrays, directory):
    """``anyclip train`` under 2 gloo processes (stage ddp), or its step-1 checkpoint resumed in 1 (stage resume)."""
    from anyclip.cli import main
    root, stage = Path(os.environ["ANYCLIP_TEST_ROOT"]), os.environ["ANYCLIP_TEST_STAGE"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    extra = ["--save-every-n-steps", "1", "--keep", "10"] if stage == "ddp" else ["--resume", "latest"]
    if stage == "resume":
        shutil.copytree(root / "logs/ddp/checkpoints/step_00000001", root / "logs/resume/checkpoints/step_00000001")
    code = main(["train", "--train-data", str(root / "data" / "train.csv"), "--model", str(root / "tiny.json"),
                 "--batch-size", str(8 // world), "--lr", "1e-3", "--warmup", "1", "--workers", "1",
                 "--logs", str(root / "logs"), "--name", stage, "--log-every-n-steps", "1", "--dist-timeout", "120",
                 *extra])
    assert code == 0, f"anyclip train exited with {code}"
    return {"ok": np.int32(1)} if int(os.environ.get("RANK", "0")) == 0 else {}


def _worker_main(backend, in_path, out_path):
    with np.load(in_path) as data:
        arrays = {k: data[k] for k in data.files}
    fn = {"jax": jax_worker, "torch": torch_worker, "resume": resume_worker, "torchcli": torch_cli_worker}[backend]
    try:
        out = fn(arrays, str(Path(out_path).parent))
    except Exception as e:
        from anyclip.train.distributed import DistributedError
        if isinstance(e, DistributedError):
            print(f"anyclip train: {e}", file=sys.stderr)
            sys.exit(4)
        raise
    if out:
        np.savez(out_path, **out)


# ----------------------------------------------------------------------------- launching
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(backend, **extra):
    env = {**os.environ, "KERAS_BACKEND": backend, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def launch(backend, arrays, processes=1, **env):
    """Start the workers; ``(procs, out_path, tmpdir)``."""
    tmp = tempfile.mkdtemp(prefix=f"anyclip-dist-{backend}-")
    in_path, out_path = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
    np.savez(in_path, **arrays)
    extra = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"} if backend in ("jax", "resume") else {}
    if backend in ("torch", "torchcli") and processes > 1:
        extra.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(processes),
                     OMP_NUM_THREADS="1")
    procs = []
    for rank in range(processes):
        ranks = {"RANK": str(rank), "LOCAL_RANK": str(rank)} if processes > 1 else {}
        rank_env = _env({"resume": "jax", "torchcli": "torch"}.get(backend, backend), **extra, **env, **ranks)
        procs.append(subprocess.Popen([sys.executable, __file__, backend, str(in_path), str(out_path)],
                                      env=rank_env, cwd=str(TESTS), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs, out_path, tmp


def finish(procs, out_path, tmp, timeout=TIMEOUT):
    logs = []
    try:
        for proc in procs:
            try:
                logs.append(proc.communicate(timeout=timeout)[0])
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise AssertionError(f"a distributed worker did not finish within {timeout}s")
        codes = [p.returncode for p in procs]
        if any(codes) or not out_path.exists():
            raise AssertionError(f"workers exited with {codes}:\n" + "\n".join(log[-3000:] for log in logs))
        with np.load(out_path) as data:
            return {k: data[k] for k in data.files}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _arrays():
    return {f"{kind}/{k}": v for kind in KINDS for k, v in reference(kind)[0].items()}


class Jobs:
    """The numeric workers start at once (they overlap on a busy machine); ``jobs[name]`` waits for one.

    The ``torchcli`` job starts when first asked for (fewer processes in memory at a time).
    """

    def __init__(self):
        arrays = _arrays()
        self.cli_root = Path(tempfile.mkdtemp(prefix="anyclip-dist-cli-"))
        _cli_data(self.cli_root)
        self._running = {"jax": launch("jax", arrays), "torch": launch("torch", arrays, processes=WORLD),
                         "resume": launch("resume", {"unused": np.zeros(1)})}
        self._done = {}

    def __getitem__(self, name):
        if name == "torchcli" and name not in self._done:
            self._running[name] = launch("torchcli", {"unused": np.zeros(1)}, processes=WORLD,
                                         ANYCLIP_TEST_ROOT=str(self.cli_root), ANYCLIP_TEST_STAGE="ddp")
        if name not in self._done:
            self._done[name] = finish(*self._running.pop(name))
        return self._done[name]

    def close(self):
        for procs, _, tmp in self._running.values():
            for p in procs:
                p.kill()
                p.wait()
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(self.cli_root, ignore_errors=True)


def _cli_data(root):
    from anyclip.data import ShapesConfig, ShapesDataset, write_csv
    write_csv(ShapesDataset(ShapesConfig(image_size=32, seed=1), "train", 24), root / "data", progress=False)
    text = {**TINY["text_cfg"], "context_length": 77, "vocab_size": 49408}
    (root / "tiny.json").write_text(json.dumps({**TINY, "text_cfg": text}))


@pytest.fixture(scope="module")
def jobs():
    running = Jobs()
    yield running
    running.close()


@pytest.fixture(scope="module")
def results(jobs):
    return {"jax": jobs["jax"], "torch": jobs["torch"]}


def _check_step(out, tag, kind, grads=None, rescale=None):
    """Loss, gradients and the SGD update of ``tag`` against open_clip's single-device step."""
    ref = reference(kind)[1]
    assert abs(out[f"{tag}/loss"] - ref["loss"]) <= 1e-5, (tag, out[f"{tag}/loss"], ref["loss"])
    for key, expected in (grads or ref["grads"]).items():
        ours = out[f"{tag}/grad/{key}"]
        err = np.abs(ours - expected).max()
        assert err <= 1e-5 * max(1.0, np.abs(expected).max()), f"{tag}: gradient of {key} off by {err:.2e}"
        if grads is None:
            after = ref["state"][key] - LR * expected
            if key == "logit_scale":
                after = np.clip(after, 0, math.log(100))
            np.testing.assert_allclose(out[f"{tag}/after/{key}"], after, atol=2e-5, err_msg=f"{tag} {key}")


@pytest.mark.parametrize("kind", KINDS)
def test_jax_four_devices_equal_one_device_step(results, kind):
    out = results["jax"]
    assert int(out[f"{kind}/devices"]) == 4  # the batch really was split over the 4 devices
    _check_step(out, kind, kind)


@pytest.mark.parametrize("mode", TORCH_MODES, ids=lambda m: f"{m[0]}-local{int(m[1])}-gwg{int(m[2])}")
def test_torch_ddp_matches_open_clip(results, mode):
    kind, local, with_grad = mode
    out, tag = results["torch"], f"{kind}-{int(local)}{int(with_grad)}"
    ref = reference(kind)[1]
    oc = {k[len(tag) + len("/open_clip/grad/"):]: v for k, v in out.items() if k.startswith(f"{tag}/open_clip/grad/")}
    # open_clip's distributed loss, averaged over ranks, is the global-batch loss in every mode
    assert abs(float(out[f"{tag}/open_clip/loss"][0]) - ref["loss"]) <= 1e-5
    if local and not with_grad:  # open_clip drops the cross-rank gradient terms; so do we, identically
        _check_step(out, tag, kind, grads=oc)
        return
    _check_step(out, tag, kind)  # the single-device update
    for key, expected in ref["grads"].items():
        # open_clip's default mode divides the towers' gradients by the world size (its DDP averages partial
        # gradients); with --gather-with-grad, and for SigLIP, it is exact, as ours is in every mode
        factor = WORLD if (kind == "clip" and not local and not with_grad and key != "logit_scale") else 1
        np.testing.assert_allclose(oc[key] * factor, expected, atol=1e-5 * max(1.0, np.abs(expected).max()),
                                   err_msg=f"{tag} open_clip {key}")


def test_jax_fsdp_shards_the_weights_and_equals_one_device_step(results):
    out = results["jax"]
    assert int(out["fsdp/sharded"]) >= 20  # most of the tiny model's 38 weights have an axis divisible by 4
    _check_step(out, "fsdp", "clip")


def test_jax_checkpoint_of_four_devices_resumes_on_two_and_on_one(jobs):
    out = jobs["resume"]
    assert int(out["d4/devices"]) == 4
    for name in ("d2", "d1"):
        np.testing.assert_allclose(out[f"{name}/losses"], out["d4/losses"], rtol=0, atol=1e-5, err_msg=name)
        for key in [k[3:] for k in out if k.startswith("d4/") and k not in ("d4/devices", "d4/losses")]:
            np.testing.assert_allclose(out[f"{name}/{key}"], out[f"d4/{key}"], rtol=0, atol=1e-5,
                                       err_msg=f"{name} {key}")


def test_torch_cli_two_processes_then_resumed_in_one(jobs):
    """``anyclip train`` under 2 gloo ranks logs and saves once; its checkpoint continues identically in 1 process."""
    from safetensors.numpy import load_file
    jobs["torchcli"]
    root = jobs.cli_root
    finish(*launch("torchcli", {"unused": np.zeros(1)}, processes=1, ANYCLIP_TEST_ROOT=str(root),
                   ANYCLIP_TEST_STAGE="resume"))
    logs = root / "logs"
    lines = [json.loads(x) for x in (logs / "ddp/train.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]  # written by rank 0 only
    resumed = [json.loads(x) for x in (logs / "resume/train.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([x["loss"] for x in resumed], [x["loss"] for x in lines[1:]], rtol=0, atol=1e-5)
    ddp, one = (load_file(str(logs / name / "final/open_clip_model.safetensors")) for name in ("ddp", "resume"))
    for key in ddp:
        np.testing.assert_allclose(one[key], ddp[key], rtol=0, atol=1e-5, err_msg=key)


def test_torch_dead_worker_stops_the_job_with_a_message():
    procs, _, tmp = launch("torch", {f"clip/{k}": v for k, v in reference("clip")[0].items()},
                                  processes=WORLD, ANYCLIP_TEST_DIE="1")
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise AssertionError("a job with a dead worker hung")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert procs[1].returncode == 3
    assert procs[0].returncode == 4, logs[0][-3000:]
    assert "another worker probably died" in logs[0]


if __name__ == "__main__":
    _worker_main(*sys.argv[1:4])
