"""Distributed training: JAX SPMD over every device of every host, PyTorch DDP under ``torchrun``.

Both train on one *global* batch (``--batch-size`` per device, as open_clip's per-GPU batch, times the
device count) and both give the single-device step on that batch: the same loss, gradients and update.

* **JAX** -- one program over a device mesh (``keras.distribution.DataParallel``; variables replicated,
  the batch split along its first axis). The contrastive and sigmoid losses are computed on the global
  feature arrays, so they *are* the global-batch losses; XLA inserts the all-gathers. Several hosts (a TPU
  pod, GPU nodes) join through ``jax.distributed.initialize`` (the coordinator address, process count and
  id from ``--dist-url``/``--world-size``/``--rank`` or the usual environment; on TPU pods nothing is
  needed); each host feeds the rows of the global batch that belong to its devices. :func:`fsdp_layout_map`
  shards the weights too (``keras.distribution.ModelParallel``) for towers too large for one device.
* **PyTorch** -- one process per device (``torchrun``; gloo on CPU, nccl on GPU). Each rank runs its rows,
  all-gathers the features and computes open_clip's distributed loss (``--local-loss``,
  ``--gather-with-grad``); gradients are then all-reduced. open_clip averages them (DDP), which in its
  default mode (neither flag) divides the towers' gradients by the world size; here that mode *sums* them
  and lets only rank 0 carry the temperature's gradient, so that every mode with an exact global gradient
  gives the single-device update. ``--local-loss`` without ``--gather-with-grad`` drops the cross-rank
  gradient terms, as in open_clip.

A lost worker stops the job: collectives time out after ``--dist-timeout`` seconds (a peer that exits
breaks gloo's connections at once) and raise :class:`DistributedError`, which ``anyclip train`` reports.
Checkpoints hold whole arrays written by process 0, so a run resumes on any device count.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

import numpy as np


class DistributedError(RuntimeError):
    """A collective failed: a worker died, or did not answer within the timeout.

    Example:
        >>> isinstance(DistributedError("rank 0 of 2: a collective failed"), RuntimeError)
        True
    """


@dataclasses.dataclass
class Distributed:
    """How this process takes part in training; ``Distributed()`` is a single device.

    ``backend``: ``"none"``, ``"jax"`` (SPMD) or ``"torch"`` (one process per device). ``rank`` /
    ``processes``: this process and how many there are; ``devices``: how many parts the global batch is
    split into (JAX: every device of the mesh; torch: the processes).

    Example:
        >>> ctx = Distributed()
        >>> ctx.is_main, ctx.devices
        (True, 1)
    """

    backend: str = "none"
    rank: int = 0
    processes: int = 1
    devices: int = 1
    local_loss: bool = False
    gather_with_grad: bool = False
    timeout: float = 1800.0
    mesh: object = None
    loss_kind: str = "clip"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, images, texts):
        """This process's part of the global batch (numpy in): torch rows, or JAX arrays laid over the mesh."""
        n = len(images)
        if n % self.devices:
            raise ValueError(f"a global batch of {n} does not split over {self.devices} devices")
        if self.backend == "torch":
            size = n // self.processes
            rows = slice(self.rank * size, (self.rank + 1) * size)
            return images[rows], texts[rows]
        if self.backend == "jax":
            return _jax_global(self.mesh, images), _jax_global(self.mesh, texts)
        return images, texts

    def wrap_loss(self, loss_fn: Callable, kind: str) -> Callable:
        """``loss_fn(outputs)`` made distributed: torch gathers the features (``kind`` clip, siglip or coca).

        JAX needs nothing: its outputs are already the global batch's.
        """
        if self.backend != "torch":
            return loss_fn
        if kind not in ("clip", "siglip", "coca"):
            raise ValueError(f"distributed training supports the CLIP, SigLIP and CoCa losses, not {kind}")
        self.loss_kind = kind
        return _TorchLoss(self, loss_fn, kind)

    @property
    def sums_gradients(self) -> bool:
        """open_clip's default CLIP mode: each rank holds its share of the gradient, so they are summed.

        CoCa's caption loss is a per-rank mean, so CoCa gathers with gradient instead (the same update).
        """
        return self.loss_kind == "clip" and not (self.local_loss or self.gather_with_grad)

    def reduce_gradients(self, grads: list) -> list:
        """torch: all-reduce the gradients (one flat buffer); JAX and one device: unchanged."""
        if self.backend != "torch" or self.processes == 1:
            return grads
        import torch
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._collective(torch.distributed.all_reduce, flat)
        if not self.sums_gradients:
            flat = flat / self.processes
        out, start = [], 0
        for g in grads:
            out.append(flat[start:start + g.numel()].view_as(g))
            start += g.numel()
        return out

    def reduce_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """torch: each metric averaged over the ranks (every rank's loss is its share of the global one)."""
        if self.backend != "torch" or self.processes == 1:
            return dict(metrics)
        import torch
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=_torch_device())
        self._collective(torch.distributed.all_reduce, values)
        return {k: float(v) / self.processes for k, v in zip(keys, values.tolist())}

    def barrier(self) -> None:
        """Wait for every process (torch: a small all-reduce, which honours the timeout on gloo and nccl)."""
        if self.backend == "torch" and self.processes > 1:
            import torch
            self._collective(torch.distributed.all_reduce, torch.zeros(1, device=_torch_device()))
        elif self.backend == "jax" and self.processes > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("anyclip")

    def _collective(self, op, *args):
        try:
            return op(*args)
        except (RuntimeError, ValueError) as e:  # gloo/nccl report a dead peer or a timeout as RuntimeError
            raise DistributedError(
                f"rank {self.rank} of {self.processes}: a collective failed ({str(e).splitlines()[0][:300]}); "
                f"another worker probably died or stalled for more than {self.timeout:g}s -- stopping") from e

    def close(self) -> None:
        """Leave the process group (torch); harmless otherwise."""
        if self.backend == "torch":
            import torch
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def _jax_global(mesh, x):
    """A jax array over ``mesh``, split along its first axis; each host supplies its devices' rows."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    x = np.asarray(x)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    n, p = len(x), jax.process_count()
    rows = slice(jax.process_index() * n // p, (jax.process_index() + 1) * n // p)
    return jax.make_array_from_process_local_data(sharding, x[rows], x.shape)


def _torch_device():
    import keras
    return keras.ops.zeros(()).device


class _TorchLoss:
    """Gathers this rank's features from every rank and calls the loss as open_clip's distributed loss."""

    def __init__(self, ctx: Distributed, loss_fn: Callable, kind: str):
        self.ctx, self.loss_fn, self.kind = ctx, loss_fn, kind

    def __call__(self, outputs):
        ctx, out = self.ctx, dict(outputs)
        if ctx.processes == 1:
            return self.loss_fn(out)
        if self.kind == "siglip":  # images stay local, texts travel with their gradient (open_clip's exchange)
            out["all_text_features"] = _gather(ctx, out["text_features"], True)
        else:
            with_grad = ctx.gather_with_grad or (self.kind == "coca" and not ctx.local_loss)
            out["all_image_features"] = _gather(ctx, out["image_features"], with_grad)
            out["all_text_features"] = _gather(ctx, out["text_features"], with_grad)
            out.update(local_loss=ctx.local_loss, gather_with_grad=with_grad)
            if ctx.sums_gradients and ctx.rank != 0:  # every rank sees the whole loss: count its scale once
                for key in ("logit_scale", "logit_bias"):
                    if out.get(key) is not None:
                        out[key] = out[key].detach()
        out["rank"] = ctx.rank
        return self.loss_fn(out)


def _gather(ctx: Distributed, x, with_grad: bool):
    """Every rank's rows, in rank order; ``with_grad``: gradients flow back to their ranks (summed)."""
    import torch
    if with_grad:
        return _AllGather.apply(x, ctx)
    parts = [torch.empty_like(x) for _ in range(ctx.processes)]
    ctx._collective(torch.distributed.all_gather, parts, x.detach().contiguous())
    return torch.cat(parts)


def _all_gather_class():
    import torch

    class AllGather(torch.autograd.Function):
        """all_gather whose backward sums each rank's gradient for every row and returns this rank's rows."""

        @staticmethod
        def forward(fn_ctx, x, ctx):
            fn_ctx.dist, fn_ctx.rows = ctx, x.shape[0]
            parts = [torch.empty_like(x) for _ in range(ctx.processes)]
            ctx._collective(torch.distributed.all_gather, parts, x.contiguous())
            return torch.cat(parts)

        @staticmethod
        def backward(fn_ctx, grad):
            grad = grad.contiguous().clone()
            fn_ctx.dist._collective(torch.distributed.all_reduce, grad)  # gloo has no reduce_scatter
            n = fn_ctx.rows
            return grad[fn_ctx.dist.rank * n:(fn_ctx.dist.rank + 1) * n], None

    return AllGather


class _LazyAllGather:
    _cls = None

    def apply(self, *args):
        if _LazyAllGather._cls is None:
            _LazyAllGather._cls = _all_gather_class()
        return _LazyAllGather._cls.apply(*args)


_AllGather = _LazyAllGather()


def setup_distributed(config=None, env: Mapping[str, str] | None = None, *, model: str | None = None,
                      precision: str = "fp32") -> Distributed:
    """Start the process group (torch under ``torchrun``) or the device mesh (JAX) that ``config`` asks for.

    ``config``: a :class:`~anyclip.train.config.DistributedConfig` (default: its defaults). Before the model
    is created: on JAX it sets the Keras distribution that lays the variables out. ``model`` and
    ``precision`` name the model that ``fsdp`` shards (its weights' shapes decide the layout).

    Example:
        >>> ctx = setup_distributed(DistributedConfig(devices=4))  # doctest: +SKIP
    """
    import keras

    from .config import DistributedConfig
    config = DistributedConfig() if config is None else config
    env = os.environ if env is None else env
    backend = keras.backend.backend()
    common = {"local_loss": config.local_loss, "gather_with_grad": config.gather_with_grad,
              "timeout": config.dist_timeout}
    if backend == "torch":
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Distributed(**common)
        return _setup_torch(config.dist_backend, env, world, common)
    if backend == "jax":
        return _setup_jax(config, env, common, model, precision)
    return Distributed(**common)


def _setup_torch(dist_backend, env, world, common) -> Distributed:
    import datetime

    import torch
    rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
    dist_backend = dist_backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if dist_backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(dist_backend, rank=rank, world_size=world,
                                             timeout=datetime.timedelta(seconds=common["timeout"]))
    return Distributed("torch", rank=rank, processes=world, devices=world, **common)


def _setup_jax(config, env, common, model, precision) -> Distributed:
    import jax
    import keras
    url = config.dist_url or env.get("JAX_COORDINATOR_ADDRESS")
    world = config.world_size if config.world_size is not None else _int_env(env, "JAX_NUM_PROCESSES")
    rank = config.rank if config.rank is not None else _int_env(env, "JAX_PROCESS_ID")
    if url or world is not None:
        if not url or world is None or rank is None:
            raise ValueError("a multi-host jax run needs --dist-url, --world-size and --rank (or "
                             "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID), all three")
        jax.distributed.initialize(url, world, rank, initialization_timeout=int(common["timeout"]))
    elif _cluster(env):  # TPU pod, SLURM or Open MPI: jax finds the coordinator and the processes itself
        jax.distributed.initialize(initialization_timeout=int(common["timeout"]))
    devices = jax.devices()
    count = config.devices or len(devices)
    if not 1 <= count <= len(devices):
        raise ValueError(f"--devices {count}: this job has {len(devices)} devices")
    if jax.process_count() > 1 and (count != len(devices) or config.fsdp):
        raise ValueError("across several hosts, train on every device (no --devices) and without --fsdp "
                         "(its checkpoints would need sharded writing, which is not supported yet)")
    if count == 1 and jax.process_count() == 1:
        keras.distribution.set_distribution(None)
        return Distributed(**common)
    devices = devices[:count]
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
    names = [f"{d.platform}:{d.id}" for d in devices]
    if config.fsdp:
        if model is None:
            raise ValueError("--fsdp needs the model whose weights it shards (setup_distributed(..., model=...))")
        mesh_k = keras.distribution.DeviceMesh((count,), ["batch"], names)
        keras.distribution.set_distribution(keras.distribution.ModelParallel(
            layout_map=fsdp_layout_map(model, mesh_k, precision), batch_dim_name="batch"))
    else:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=names))
    return Distributed("jax", rank=jax.process_index(), processes=jax.process_count(), devices=count,
                       mesh=mesh, **common)


def _int_env(env, name):
    value = env.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name}={value!r} is not an integer") from None


def _cluster(env) -> bool:
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
        return True
    return any((_int_env(env, name) or 1) > 1 for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))


def fsdp_layout_map(model: str, device_mesh, precision: str = "fp32"):
    """A ``LayoutMap`` sharding each weight's largest axis divisible by the mesh size (FSDP-style).

    ``model`` (an architecture name or config, as ``--model``) is built once at ``precision`` without a
    distribution to read its variable paths and shapes; weights with
    no divisible axis stay replicated. Call it before the model is created under the distribution.

    Example:
        >>> mesh = keras.distribution.DeviceMesh((4,), ["batch"])  # doctest: +SKIP
        >>> layout_map = fsdp_layout_map("ViT-B-32", mesh)  # doctest: +SKIP
    """
    import re

    import keras

    import anyclip
    n = device_mesh.shape[0]
    probe = anyclip.create_model(model, load_weights=False, precision=precision)
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for var in probe.weights:
        dims = [i for i, d in enumerate(var.shape) if d % n == 0 and d >= n]
        if not dims:
            continue
        axis = max(dims, key=lambda i: var.shape[i])
        # the model's own name may differ between builds ("clip", "clip_1"): match the path below it
        below = var.path.split("/", 1)[-1]
        layout_map["^[^/]+/" + re.escape(below) + "$"] = tuple("batch" if i == axis else None
                                                               for i in range(len(var.shape)))
    del probe
    return layout_map


__all__ = ["Distributed", "DistributedError", "fsdp_layout_map", "setup_distributed"]
