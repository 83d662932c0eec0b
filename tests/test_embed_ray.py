"""``anyclip embed --ray``: the same job on Ray Data, on a local Ray cluster started here, gives the local files."""

import sys

import numpy as np
import pytest
from PIL import Image

from anyclip.cli import main

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")


def test_ray_data_job_equals_the_local_job_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(14):
        h, w = (int(v) for v in rng.integers(20, 120, 2))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{i:02d}.jpg")
    (images / "zz-bad.jpg").write_bytes(b"not an image")
    args = [str(images), "--shard-size", "4", "--batch-size", "4", "--workers", "1", "--no-progress"]
    assert main(["embed", *args, "-o", str(tmp_path / "local")]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"KERAS_BACKEND": "jax", "PYTHONPATH": ":".join(sys.path)}})
    try:
        assert main(["embed", *args, "-o", str(tmp_path / "ray"), "--ray"]) == 0
        (tmp_path / "ray" / "part-00001.parquet").unlink()  # as if a node died: the re-run redoes that shard
        assert main(["embed", *args, "-o", str(tmp_path / "ray"), "--ray"]) == 0
    finally:
        ray.shutdown()
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    remote = {p.name: p.read_bytes() for p in (tmp_path / "ray").iterdir()}
    assert sorted(local) == sorted(remote) and "errors.jsonl" in local
    for name, data in local.items():
        assert data == remote[name], name
