"""The embedding job on a Ray cluster (Ray Data): ``anyclip embed ... --ray`` (``pip install anyclip[ray]``).

The same shards as :func:`anyclip.embed.run_embed_job` (same inputs, order, batches and files), so the output is
identical to a local run and a killed job resumes the same way. The driver lists the inputs and owns the
manifest; each shard still to do is one row of a Ray dataset, mapped by a pool of model actors that decode
(in their own worker processes), encode and write the shard atomically, then report its counts to the driver,
which records it. The output folder must be shared by every node (NFS, a mounted bucket).

Example:
    >>> run_embed_job_on_ray(list_inputs(["photos/"]), "out/", settings,
    ...                      {"model": "anyclip-shapes", "pretrained": "v1"})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .extra import require
from .job import (
    EmbedSettings,
    ShardEncoder,
    _decode_pool,
    clean_temporaries,
    finish_job,
    open_manifest,
    pending_shards,
    record_shard,
    run_stats,
    shard_record,
    write_shard,
)
from .sources import Inputs, Item


class ShardActor:
    """A Ray Data callable class: loads the model once, then embeds and writes whole shards."""

    def __init__(self, out: str, settings: dict, model_spec: dict, workers: int):
        from ..model_flags import load_model
        self.out = Path(out)
        self.settings = EmbedSettings(**settings)
        pool = _decode_pool(workers) if self.settings.kind == "image" else None  # forked before the model loads
        model, _, tokenizer = load_model(**model_spec)
        self.encoder = ShardEncoder(model, tokenizer, self.settings, workers, pool=pool)

    def __call__(self, batch: dict) -> dict:
        shards, rows, errors = [], [], []
        for k, payload in zip(batch["shard"], batch["items"]):
            items = [Item(int(i), name, tuple(ref)) for i, name, ref in json.loads(payload)]
            emb, ok, failed = self.encoder.encode(items)
            record = write_shard(self.out, int(k), emb, ok, failed, self.settings)
            shards.append(int(k))
            rows.append(record["rows"])
            errors.append(record["errors"])
        return {"shard": np.asarray(shards, np.int64), "rows": np.asarray(rows, np.int64),
                "errors": np.asarray(errors, np.int64)}


def run_embed_job_on_ray(inputs: Inputs, out: str | os.PathLike, settings: EmbedSettings, model_spec: dict, *,
                         address: str | None = None, workers: int = 2, num_actors: int = 1,
                         num_gpus_per_actor: float = 0, stats: dict | None = None) -> dict:
    """Run (or resume) the job with Ray Data; connects to ``address`` (or starts a local Ray) if Ray is not up.

    ``model_spec``: the ``model``, ``pretrained``, ``checkpoint``, ``cache_dir``, ``precision`` of ``anyclip
    embed``. Returns the completed manifest.
    """
    try:
        import ray
    except ImportError:
        raise ImportError("anyclip embed --ray needs Ray Data: pip install 'anyclip[ray]'") from None
    require("pyarrow.parquet")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)
    manifest = open_manifest(out, inputs, settings)
    todo = pending_shards(out, manifest, inputs, settings)
    if todo:
        if not ray.is_initialized():
            import keras
            env = {"KERAS_BACKEND": keras.backend.backend()}
            ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        rows = [{"shard": k, "items": json.dumps([[i.id, i.name, list(i.ref)] for i in items])}
                for k, items in todo]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map_batches(ShardActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_actors),
                            fn_constructor_kwargs={"out": str(out), "settings": settings.to_dict(),
                                                   "model_spec": model_spec, "workers": workers},
                            num_cpus=max(1, workers), num_gpus=num_gpus_per_actor)
        for row in ds.iter_rows():
            k = int(row["shard"])
            record_shard(out, manifest, k, shard_record(out, k, settings.format, int(row["rows"]), int(row["errors"])))
    manifest = finish_job(out, manifest)
    if stats is not None:
        stats.update(run_stats(manifest, [k for k, _ in todo]))
    return manifest


__all__ = ["ShardActor", "run_embed_job_on_ray"]
