"""Image-text retrieval sets with one or more captions per image, from JSON or CSV annotation files.

Accepted layouts (image paths relative to the annotation file's folder, or to ``root``):

* JSON list, one entry per image: ``[{"image": "a.jpg", "caption": ["...", "..."]}, ...]`` (also
  ``filepath``/``file_name``/``path`` for the image and ``captions``/``text``/``sentences`` for the
  captions; a caption may be a single string).
* COCO captions JSON: ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``.
* Karpathy split JSON (Flickr30k/COCO): ``{"images": [{"filename", "filepath"?, "split",
  "sentences": [{"raw"}]}]}``; only the entries of ``split`` (default ``"test"``) are used.
* CSV/TSV with a header, one ``image, caption`` row per caption; rows of the same image are grouped in
  order of first appearance.

An image listed twice gets the captions of both entries. An entry without an image, without captions,
with a caption that is not text, or whose image file does not exist is an error naming the entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .common import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    DatasetError,
    pick_column,
    read_csv,
    resolve_path,
)
from .loader import source_name

_JSON_IMAGE_KEYS = ("image", "filepath", "file_name", "filename", "path", "image_path", "img")
_JSON_CAPTION_KEYS = ("caption", "captions", "text", "texts", "sentences")


@dataclasses.dataclass(frozen=True)
class RetrievalSet:
    """Images (paths, or shard members that ``read()`` their bytes) and, per image, its captions.

    Example:
        >>> data = RetrievalSet.from_pairs(["a.jpg", "b.jpg"], [["a cat", "a kitten"], "a dog"])
        >>> data.texts, data.text_to_image.tolist()
        (['a cat', 'a kitten', 'a dog'], [0, 0, 1])
    """

    name: str
    images: tuple
    captions: tuple[tuple[str, ...], ...]

    @classmethod
    def from_pairs(cls, images: Sequence[str | os.PathLike], captions: Sequence[str | Sequence[str]],
                   name: str = "<pairs>") -> "RetrievalSet":
        """A set from image paths and, for each, a caption or a list of captions."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} caption entries")
        grouped = [[c] if isinstance(c, str) else list(c) for c in captions]
        images = tuple(p if callable(getattr(p, "read", None)) else os.fspath(p) for p in images)
        for i, (image, caps) in enumerate(zip(images, grouped)):
            _check_captions(f"{name} entry {i}", source_name(image), caps)
        return cls(name, images, tuple(tuple(c) for c in grouped))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def texts(self) -> list[str]:
        """All captions, image by image."""
        return [c for caps in self.captions for c in caps]

    @property
    def text_to_image(self) -> np.ndarray:
        """For each caption of :attr:`texts`, the index of its image."""
        return np.repeat(np.arange(len(self.images)), [len(c) for c in self.captions]).astype(np.int64)

    def fingerprint(self) -> str:
        """A hash of the image paths and captions."""
        h = hashlib.sha256()
        for image, caps in zip(self.images, self.captions):
            where = os.path.abspath(image) if isinstance(image, str) else source_name(image)
            h.update(json.dumps([where, list(caps)], ensure_ascii=False).encode())
        return h.hexdigest()


def _check_captions(where: str, image: str, captions: list) -> None:
    if not captions:
        raise DatasetError(f"{where} ({image}): no captions")
    for j, c in enumerate(captions):
        if not isinstance(c, str):
            raise DatasetError(f"{where} ({image}): caption {j} is {type(c).__name__}, not text")
        if not c.strip():
            raise DatasetError(f"{where} ({image}): caption {j} is empty")


def _build(path: Path, root: Path, entries: list[tuple[str, str, list]]) -> RetrievalSet:
    """``entries``: ``(where, image as written, captions)``; group by resolved path and check files."""
    order: dict[str, list[str]] = {}
    first_where: dict[str, str] = {}
    for where, image, captions in entries:
        if not isinstance(image, str) or not image.strip():
            raise DatasetError(f"{path} {where}: missing or empty image path")
        _check_captions(f"{path} {where}", image, captions)
        resolved = str(resolve_path(image.strip(), root))
        order.setdefault(resolved, []).extend(c.strip() for c in captions)
        first_where.setdefault(resolved, where)
    if not order:
        raise DatasetError(f"{path}: no images listed")
    missing = [(first_where[p], p) for p in order if not os.path.isfile(p)]
    if missing:
        shown = "; ".join(f"{w}: {p}" for w, p in missing[:5])
        raise DatasetError(f"{path}: {len(missing)} image file(s) not found ({shown}"
                           f"{'; ...' if len(missing) > 5 else ''}); check the paths and the dataset root")
    return RetrievalSet(str(path), tuple(order), tuple(tuple(c) for c in order.values()))


def _first_key(entry: dict, keys: Sequence[str]):
    for key in keys:
        if key in entry:
            return entry[key]
    return None


def _caption_list(value) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        # Karpathy-style sentences are {"raw": ..., "tokens": [...]}
        return [v.get("raw", v.get("caption")) if isinstance(v, dict) else v for v in value]
    return [] if value is None else [value]


def read_retrieval_json(path: str | os.PathLike, root: str | os.PathLike | None = None,
                        split: str = "test") -> RetrievalSet:
    """A retrieval set from a JSON list, a COCO captions file or a Karpathy split file (see module doc).

    Example:
        >>> data = read_retrieval_json("flickr30k/test.json", root="flickr30k/images")  # doctest: +SKIP
        >>> len(data.images), len(data.texts)  # doctest: +SKIP
        (1000, 5000)
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"retrieval annotation file not found: {path}")
    root = Path(root) if root is not None else path.parent
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("annotations"), list) and isinstance(data.get("images"), list):
        return _build(path, root, _coco_entries(path, data))
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return _build(path, root, _karpathy_entries(path, data["images"], split))
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a list of {{\"image\": ..., \"caption\": [...]}} entries, a COCO "
                           f"captions file or a Karpathy split file")
    entries = []
    for i, entry in enumerate(data):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            raise DatasetError(f"{path} {where}: expected an object with image and caption, got "
                               f"{type(entry).__name__}")
        image = _first_key(entry, _JSON_IMAGE_KEYS)
        captions = _first_key(entry, _JSON_CAPTION_KEYS)
        if captions is None:
            raise DatasetError(f"{path} {where}: no caption field (one of {list(_JSON_CAPTION_KEYS)})")
        entries.append((where, image, _caption_list(captions)))
    return _build(path, root, entries)


def _coco_entries(path: Path, data: dict) -> list:
    files, captions = {}, {}
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise DatasetError(f"{path} images[{i}]: needs \"id\" and \"file_name\"")
        files[image["id"]] = (i, image["file_name"])
        captions[image["id"]] = []
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise DatasetError(f"{path} annotations[{j}]: needs \"image_id\" and \"caption\"")
        if ann["image_id"] not in files:
            raise DatasetError(f"{path} annotations[{j}]: image_id {ann['image_id']!r} is not in \"images\"")
        captions[ann["image_id"]].append(ann["caption"])
    return [(f"images[{i}] (id {key})", name, captions[key]) for key, (i, name) in files.items()]


def _karpathy_entries(path: Path, images: list, split: str) -> list:
    entries = []
    for i, image in enumerate(images):
        if not isinstance(image, dict):
            raise DatasetError(f"{path} images[{i}]: expected an object, got {type(image).__name__}")
        if "split" in image and image["split"] != split:
            continue
        name = _first_key(image, ("filename", "file_name", "image", "filepath"))
        if image.get("filepath") and image.get("filename"):
            name = f"{image['filepath']}/{image['filename']}"
        captions = _first_key(image, _JSON_CAPTION_KEYS)
        entries.append((f"images[{i}]", name, _caption_list(captions)))
    if not entries:
        raise DatasetError(f"{path}: no images in split {split!r}")
    return entries


def read_retrieval_csv(path: str | os.PathLike, root: str | os.PathLike | None = None, *,
                       img_key: str | None = None, caption_key: str | None = None,
                       separator: str | None = None) -> RetrievalSet:
    """A retrieval set from a CSV/TSV file of ``image, caption`` rows (several rows per image allowed).

    Example:
        >>> data = read_retrieval_csv("val.csv", img_key="filepath", caption_key="title")  # doctest: +SKIP
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    header, rows = read_csv(path, separator)
    img_col = pick_column(path, header, img_key, IMAGE_COLUMNS, "image path", "--csv-img-key")
    cap_col = pick_column(path, header, caption_key, CAPTION_COLUMNS, "caption", "--csv-caption-key")
    entries = [(f"line {line}", cells[img_col], [cells[cap_col]]) for line, cells in rows]
    if not entries:
        raise DatasetError(f"{path}: no rows after the header")
    return _build(path, root, entries)


__all__ = ["RetrievalSet", "read_retrieval_csv", "read_retrieval_json"]
