"""The index ``anyclip serve`` uses when given none: synthetic shapes pictures, embedded by the served model.

The pictures come from anyclip's own shapes generator (:mod:`anyclip.data.shapes`, shipped in the
package), so the service works offline on first try. They are drawn, embedded and indexed once per model
and weights into a cache folder (``$ANYCLIP_CACHE``, else ``$XDG_CACHE_HOME/anyclip``, else
``~/.cache/anyclip``, then ``serve/<model>-<tag>-<n>``) and reused on the next start.

Example:
    >>> folder = default_index_folder("anyclip-shapes", "v1", 96, root="/tmp/cache")
    >>> folder.as_posix()
    '/tmp/cache/serve/anyclip-shapes-v1-96'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_IMAGES = 96  # pictures in the default index
SHAPES_SEED = 7  # which pictures (the generator is deterministic)


def cache_root() -> Path:
    """Where anyclip keeps derived files: ``$ANYCLIP_CACHE``, ``$XDG_CACHE_HOME/anyclip`` or ``~/.cache/anyclip``.

    Example:
        >>> cache_root().name  # doctest: +SKIP
        'anyclip'
    """
    if os.environ.get("ANYCLIP_CACHE"):
        return Path(os.environ["ANYCLIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "anyclip"


def default_index_folder(model: str, tag: str | None, n: int = DEFAULT_IMAGES, root=None) -> Path:
    """The cache folder of the default index for ``model`` / ``tag`` (names made safe for a file system)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}-{tag or 'random'}-{n}")
    return Path(root if root is not None else cache_root()) / "serve" / safe


def build_default_index(model, preprocess, model_name: str, tag: str | None, *, n: int = DEFAULT_IMAGES,
                        root=None, batch_size: int = 32) -> Path:
    """Draw ``n`` shapes pictures, embed them with ``model`` and write an index folder; an existing one is reused.

    Random weights (``tag`` None) are never cached: every start draws fresh embeddings for them.

    Example:
        >>> folder = build_default_index(model, preprocess, "anyclip-shapes", "v1")  # doctest: +SKIP
        >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
        ['images', 'index.faiss', 'index.json', 'rows.parquet']
    """
    from ..atomic import atomic_write
    from ..data.shapes import ShapesConfig, ShapesDataset
    from ..embed.extra import require
    from ..embed.index import build_index, save_index
    from ..encode import encode_images
    pa = require("pyarrow")
    folder = default_index_folder(model_name, tag, n, root)
    if tag is not None and (folder / "index.json").is_file():
        return folder
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    dataset = ShapesDataset(ShapesConfig(seed=SHAPES_SEED), "test", n)
    paths, captions = [], []
    for i in range(n):
        image, caption, _ = dataset[i]
        path = images / f"shape-{i:04d}.png"
        atomic_write(path, lambda tmp, image=image: image.save(tmp, format="PNG"))
        paths.append(str(path))
        captions.append(caption)
    feats = encode_images(model, paths, preprocess, batch_size=batch_size, workers=0, progress=False)
    index, info = build_index(feats.features, "flat")
    rows = pa.table({"id": [Path(p).stem for p in paths], "path": paths, "caption": captions,
                     "model": [model_name] * n, "tag": [tag] * n})
    save_index(folder, index, {**info, "model": model_name, "tag": tag, "kind": "image",
                               "sources": ["anyclip.data.shapes"]}, rows)
    return folder


__all__ = ["DEFAULT_IMAGES", "build_default_index", "cache_root", "default_index_folder"]
