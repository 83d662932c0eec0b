"""The offline world the seed README examples run in (tests/test_seed_examples.py).

:func:`build_world` makes, once per session: a Hugging Face hub cache holding random-init open_clip checkpoints for
exactly the repositories the examples name (open_clip's pretrained registry gives each repository), the images the
examples open, two generated CIFAR-100 copies (tests/seed_examples/generated_cifar100.py) and the CSV data of the
training command. :func:`workdir` lays one example's working folder, which is also its ``HOME``: relative paths
(``CLIP.png``, ``docs/CLIP.png``, ``train.csv``), ``~/.cache`` (CIFAR-100) and ``~/.keras/datasets`` (the
``get_file`` cache that holds ``elephant.jpg``) all resolve there, so the examples' own lines find local files.
"""

import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).parent / "seed_examples"
# (architecture, pretrained tag) of every checkpoint an example loads.
CHECKPOINTS = (("ViT-B-32", "laion2b_s34b_b79k"),       # OpenCLIP quick usage, tfclip, open_clip_jax
               ("ViT-B-32-quickgelu", "openai"))        # OpenAI CLIP's "ViT-B/32"
CIFAR_SIZES = {"zero_shot": (1, 3700), "linear_probe": (30, 20)}  # (train, test); the zero-shot reads test[3637]
CAPTIONS = ("a red square", "a blue circle", "a green triangle", "a yellow star")


def _image(seed: int, size=(300, 200), mode="RGB") -> Image.Image:
    """A smooth random picture (upsampled noise), not a flat colour."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 10, size[0] // 10, len(mode)), dtype=np.uint8)
    return Image.fromarray(small, mode).resize(size, Image.BILINEAR)


def _hub_cache(root: Path) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file
    from test_weights import make_hub_repo
    cache = root / "hf-cache"
    cache.mkdir()
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")  # open_clip's own random init; ViT-B-32-quickgelu has the same keys
    weights = root / "ViT-B-32-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    for arch, tag in CHECKPOINTS:
        repo = open_clip.get_pretrained_cfg(arch, tag)["hf_hub"].strip("/")
        snapshot = make_hub_repo(cache, repo, {})
        os.link(weights, snapshot / "open_clip_model.safetensors")  # one 600 MB file, not one per repository
    weights.unlink()
    return cache


def build_world(root: Path) -> Path:
    """Everything the examples read, under ``root``; returns ``root``."""
    sys.path.insert(0, str(EXAMPLES))
    from generated_cifar100 import write_cifar100
    sys.path.remove(str(EXAMPLES))
    _hub_cache(root)
    (root / "hf-home").mkdir()
    _image(0, (640, 360), "RGBA").save(root / "CLIP.png")  # the README's diagram is an RGBA PNG
    _image(1).save(root / "elephant.jpg", quality=95)
    for name, (n_train, n_test) in CIFAR_SIZES.items():
        write_cifar100(root / f"cifar-{name}", n_train, n_test, seed=len(name))
    data = root / "train-data"
    data.mkdir()
    for split, n in (("train", 128), ("valid", 8)):  # one batch of the example's --global-batch-size 128
        with open(data / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["caption", "image_path"])  # open_clip_jax's example column order
            for i in range(n):
                name = f"{split}-{i}.jpg"
                _image(100 + i + (0 if split == "train" else 500), (64, 64)).save(data / name)
                writer.writerow([CAPTIONS[i % len(CAPTIONS)], name])
    return root


def workdir(world: Path, folder: Path, cifar: str | None = None) -> Path:
    """One example's working folder and ``HOME`` (see the module notes)."""
    folder.mkdir(parents=True)
    (folder / "docs").mkdir()
    shutil.copy(world / "CLIP.png", folder / "CLIP.png")
    shutil.copy(world / "CLIP.png", folder / "docs" / "CLIP.png")
    (folder / ".keras" / "datasets").mkdir(parents=True)
    shutil.copy(world / "elephant.jpg", folder / ".keras" / "datasets" / "elephant.jpg")
    if cifar:
        (folder / ".cache").mkdir()
        os.symlink(world / f"cifar-{cifar}" / "cifar-100-python", folder / ".cache" / "cifar-100-python")
    for item in (world / "train-data").iterdir():
        os.symlink(item, folder / item.name)
    return folder


def environment(world: Path, folder: Path, backend: str) -> dict:
    """The example's environment: the backend, offline hub cache, ``HOME`` = its folder, no log noise."""
    import importlib.util
    src = str(Path(__file__).parents[1] / "src")
    paths = [src, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    if importlib.util.find_spec("cv2") is None:
        paths.append(str(EXAMPLES / "stand_ins"))  # OpenCV's imread/cvtColor for tfclip's examples
    return {**os.environ, "KERAS_BACKEND": backend, "HF_HUB_OFFLINE": "1", "HF_HOME": str(world / "hf-home"),
            "HF_HUB_CACHE": str(world / "hf-cache"), "HOME": str(folder), "PYTHONPATH": os.pathsep.join(paths),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_DISABLE_TELEMETRY": "1", "KERAS_HOME": str(folder / ".keras")}
