"""torchvision's CIFAR100 over a generated CIFAR-100 copy, for the OpenAI README examples without a download.

:func:`write_cifar100` writes ``cifar-100-python/{train,test,meta}`` in the real archive's format (pickled dicts
with ``data`` [N, 3072] uint8, ``fine_labels`` / ``coarse_labels``, ``fine_label_names``) holding random 32x32
images. torchvision checks those files against the real archive's md5 sums, which generated files cannot match,
so :class:`CIFAR100` is torchvision's own class with the md5 sums of the generated files (``md5sums.json``, written
beside them) in place of the real ones: the reading and the integrity check are torchvision's, and
``download=True`` finds the files present and downloads nothing.

Example:
    >>> write_cifar100("root", n_train=10, n_test=10)  # doctest: +SKIP
    >>> CIFAR100("root", download=True, train=False)[3]  # doctest: +SKIP
    (<PIL.Image.Image image mode=RGB size=32x32>, 17)
"""

import hashlib
import json
import os
import pickle

import numpy as np
from torchvision.datasets import CIFAR100 as TorchvisionCIFAR100

FOLDER = "cifar-100-python"
CHECKSUMS = "md5sums.json"
CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
assert len(CLASSES) == 100


def write_cifar100(root, n_train: int, n_test: int, seed: int = 0) -> str:
    """Write a random CIFAR-100 of ``n_train`` / ``n_test`` images under ``root`` in torchvision's layout."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, FOLDER)
    os.makedirs(folder, exist_ok=True)
    sums = {}
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        entry = {"filenames": [f"{name}_{i}.png" for i in range(n)], "batch_label": f"generated {name} batch",
                 "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                 "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)}
        sums[name] = _dump(entry, os.path.join(folder, name))
    sums["meta"] = _dump({"fine_label_names": list(CLASSES), "coarse_label_names": [f"group_{i}" for i in range(20)]},
                         os.path.join(folder, "meta"))
    with open(os.path.join(folder, CHECKSUMS), "w") as f:
        json.dump(sums, f)
    return folder


def _dump(obj, path: str) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


class CIFAR100(TorchvisionCIFAR100):
    """torchvision's ``CIFAR100``, checking the generated files against their own md5 sums."""

    def __init__(self, root, *args, **kwargs):
        path = os.path.join(os.fspath(root), FOLDER, CHECKSUMS)
        if not os.path.isfile(path):
            raise RuntimeError(f"no generated CIFAR-100 under {root}: write one with write_cifar100({str(root)!r}, ...)")
        with open(path) as f:
            sums = json.load(f)
        self.train_list = [["train", sums["train"]]]
        self.test_list = [["test", sums["test"]]]
        self.meta = {**TorchvisionCIFAR100.meta, "md5": sums["meta"]}
        super().__init__(root, *args, **kwargs)
