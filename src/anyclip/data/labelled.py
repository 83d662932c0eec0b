"""Labelled image sets for classification: ImageFolder trees, CSV (path, label) files, WebDataset shards.

Every reader returns a :class:`LabelledImages`: samples in a fixed order with integer class ids, and the
class names when they are known. Class ids follow these rules:

* **ImageFolder** (``root/<class>/**/<image>``, torchvision's layout): classes are the sub-folders in
  sorted order and their names the folder names with ``_`` read as a space. With ``classnames`` given:
  when every folder name (as is, or with ``_`` read as a space) is one of them, a folder's id is its
  name's position in ``classnames`` (the other names are classes with no samples); otherwise there must
  be exactly one name per folder, taken in sorted folder order (ImageNet's ``n01440764``-style folders).
  A class folder without images is an error naming the folder.
* **CSV**: a label cell is a class name, or (with ``classnames``) an integer id. Without ``classnames``
  integer labels stay ids (no names) and text labels become classes in sorted order. A label that is not
  one of ``classnames`` is an error naming the file, line and label. Image paths are relative to the
  CSV's folder (or ``root``); a missing image file is an error naming the line.
* **WebDataset**: tar shards (a file, a brace pattern ``shard-{000..009}.tar``, several joined by
  ``::``, or a folder of ``.tar`` files) whose samples hold an image and a ``.cls`` integer id. A sample
  without an image or a ``.cls``, or with an id outside ``classnames``, is an error naming shard and key.

When ``classnames`` is not given, a ``classnames.txt`` in the dataset folder is used (clip_benchmark's
WebDataset layout).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import tarfile
from pathlib import Path
from typing import Iterator, Sequence

from .common import (
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    DatasetError,
    is_image_file,
    pick_column,
    read_csv,
    read_text_list,
    resolve_path,
)

CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One labelled image: ``name`` for messages, ``source`` (a path or ``(name, bytes)``), class id."""

    name: str
    source: object
    label: int


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """A labelled image set: ``items`` ``(path, label)`` listed up front, or WebDataset ``shards`` read
    as a stream. ``classnames`` (``None`` when only ids are known) index the class ids.

    Example:
        >>> data = LabelledImages.from_items(["a.jpg", "b.jpg"], [0, 1], classnames=["cat", "dog"])
        >>> len(data), data.num_classes
        (2, 2)
    """

    name: str
    kind: str
    classnames: tuple[str, ...] | None = None
    items: tuple[tuple[str, int], ...] | None = None
    shards: tuple[str, ...] | None = None

    @classmethod
    def from_items(cls, paths: Sequence[str | os.PathLike], labels: Sequence[int],
                   classnames: Sequence[str] | None = None, name: str = "<items>") -> "LabelledImages":
        """A set from image paths and integer labels (checked against ``classnames`` when given)."""
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        items = []
        for i, (path, label) in enumerate(zip(paths, labels)):
            label = int(label)
            if label < 0 or (classnames is not None and label >= len(classnames)):
                raise DatasetError(f"{name} item {i} ({os.fspath(path)}): label {label} is not a class id "
                                   f"in [0, {len(classnames) if classnames else 'inf'})")
            items.append((os.fspath(path), label))
        return cls(name, "items", _classnames_tuple(classnames), tuple(items))

    def __len__(self) -> int:
        if self.items is None:
            raise TypeError("a WebDataset set has no length before it is read; use num_items")
        return len(self.items)

    def __bool__(self) -> bool:
        return self.items is None or bool(self.items)

    @property
    def num_items(self) -> int | None:
        """The number of samples, or ``None`` for shards (unknown until read)."""
        return None if self.items is None else len(self.items)

    @property
    def num_classes(self) -> int | None:
        """``len(classnames)``, else one more than the largest listed label, else ``None``."""
        if self.classnames is not None:
            return len(self.classnames)
        if self.items:
            return max(label for _, label in self.items) + 1
        return None

    def samples(self) -> Iterator[Sample]:
        """The samples in order (shards are read as they are iterated)."""
        if self.items is not None:
            for path, label in self.items:
                yield Sample(path, path, label)
        else:
            for shard in self.shards:
                yield from _shard_samples(shard, self.classnames)

    def fingerprint(self) -> str:
        """A hash of what the set holds: each file's path, size and modification time, and the labels."""
        h = hashlib.sha256(f"{self.kind}\n{self.classnames}\n".encode())
        entries = self.items if self.items is not None else [(shard, "") for shard in self.shards]
        for path, label in entries:
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}\t{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            h.update(f"{os.path.abspath(path)}\t{label}\t{stamp}\n".encode())
        return h.hexdigest()


def _classnames_tuple(classnames) -> tuple[str, ...] | None:
    if classnames is None:
        return None
    if isinstance(classnames, str):
        raise TypeError("classnames must be a sequence of strings, not one string")
    names = tuple(classnames)
    seen = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"classnames[{i}] must be a non-empty string, got {name!r}")
        if name in seen:
            raise DatasetError(f"class name {name!r} appears twice (entries {seen[name] + 1} and {i + 1})")
        seen[name] = i
    return names


def read_classnames(path: str | os.PathLike, encoding: str | None = None,
                    what: str = "classnames") -> tuple[str, ...]:
    """Class names from a text file (one per line) or a JSON list; ``"imagenet"`` gives ImageNet-1k's.

    ``encoding``: the text file's (default UTF-8, or UTF-16 with a byte-order mark); ``what`` names the input
    in errors (``"--classnames"``).

    Example:
        >>> len(read_classnames("imagenet"))
        1000
    """
    if os.fspath(path) == "imagenet" and not os.path.exists(path):
        from ..zero_shot import IMAGENET_CLASSNAMES
        return tuple(IMAGENET_CLASSNAMES)
    entries = read_text_list(path, what, encoding)
    seen = {}
    for line, name in entries:
        if name in seen:
            raise DatasetError(f"{path} line {line}: class name {name!r} repeats line {seen[name]}")
        seen[name] = line
    return tuple(name for _, name in entries)


def _default_classnames(folder: Path, classnames):
    if classnames is None and (folder / CLASSNAMES_FILE).is_file():
        return read_classnames(folder / CLASSNAMES_FILE)
    return _classnames_tuple(classnames)


def read_image_folder(root: str | os.PathLike, classnames: Sequence[str] | None = None) -> LabelledImages:
    """An ImageFolder tree ``root/<class>/**/<image>`` (see the module docstring for the class ids).

    Example:
        >>> data = read_image_folder("pets/val")  # doctest: +SKIP
        >>> data.classnames  # doctest: +SKIP
        ('cat', 'dog')
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"ImageFolder root not found or not a folder: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root}: no class folders (expected {root}/<class name>/<image files>)")
    classnames = _default_classnames(root, classnames)
    names = [f.name for f in folders]
    if classnames is None:
        ids, classnames = list(range(len(folders))), tuple(n.replace("_", " ") for n in names)
    elif all(_folder_class(n, classnames) is not None for n in names):
        ids = [_folder_class(n, classnames) for n in names]
    elif len(classnames) == len(folders):
        ids = list(range(len(folders)))
    else:
        unknown = [n for n in names if _folder_class(n, classnames) is None]
        raise DatasetError(f"{root}: {len(folders)} class folders but {len(classnames)} classnames, and folder(s) "
                           f"{unknown[:5]} are not among the classnames; give one class name per folder (in "
                           f"sorted folder order) or name the folders after the classes")
    items = []
    for folder, label in zip(folders, ids):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p.name))
        if not files:
            raise DatasetError(f"class folder {folder} has no images (looked for {', '.join(_EXT_HINT)} files)")
        items.extend((str(p), label) for p in files)
    return LabelledImages(str(root), "imagefolder", classnames, tuple(items))


_EXT_HINT = (".jpg", ".png", ".webp", "...")


def _folder_class(folder: str, classnames: tuple[str, ...]) -> int | None:
    for name in (folder, folder.replace("_", " ")):
        if name in classnames:
            return classnames.index(name)
    return None


def read_labelled_csv(path: str | os.PathLike, classnames: Sequence[str] | None = None, *,
                      img_key: str | None = None, label_key: str | None = None, separator: str | None = None,
                      root: str | os.PathLike | None = None) -> LabelledImages:
    """A CSV/TSV file with a header, one ``image path, label`` row per image.

    Columns are ``img_key`` / ``label_key``, or the first of the usual names (``filepath``, ``image``,
    ``path``... / ``label``, ``class``, ``target``...). Paths are relative to ``root`` (default: the CSV's
    folder). See the module docstring for how labels become ids.

    Example:
        >>> data = read_labelled_csv("val.csv", ["cat", "dog"], img_key="filepath", label_key="label")  # doctest: +SKIP
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    header, rows = read_csv(path, separator)
    img_col = pick_column(path, header, img_key, IMAGE_COLUMNS, "image path", "--csv-img-key")
    label_col = pick_column(path, header, label_key, LABEL_COLUMNS, "label", "--csv-label-key")
    classnames = _default_classnames(path.parent, classnames)
    rows = [(line, cells[img_col].strip(), cells[label_col].strip()) for line, cells in rows]
    if not rows:
        raise DatasetError(f"{path}: no rows after the header")
    for line, image, label in rows:
        if not image:
            raise DatasetError(f"{path} line {line}: empty image path")
        if not label:
            raise DatasetError(f"{path} line {line}: empty label for {image}")
    if classnames is None and all(_is_int(label) for _, _, label in rows):
        labels = [int(label) for _, _, label in rows]
        for (line, _, _), label in zip(rows, labels):
            if label < 0:
                raise DatasetError(f"{path} line {line}: class id {label} is negative")
    else:
        if classnames is None:
            classnames = tuple(sorted({label for _, _, label in rows}))
        index = {name: i for i, name in enumerate(classnames)}
        labels = []
        for line, _, label in rows:
            if label in index:
                labels.append(index[label])
            elif _is_int(label) and 0 <= int(label) < len(classnames):
                labels.append(int(label))
            else:
                raise DatasetError(f"{path} line {line}: label {label!r} is not one of the {len(classnames)} "
                                   f"classnames (nor a class id in [0, {len(classnames)}))")
    items = [(str(resolve_path(image, root)), label) for (_, image, _), label in zip(rows, labels)]
    _check_exist(path, [(line, p) for (line, _, _), (p, _) in zip(rows, items)])
    return LabelledImages(str(path), "csv", classnames, tuple(items))


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _check_exist(path: Path, entries: list[tuple[int, str]]) -> None:
    missing = [(line, p) for line, p in entries if not os.path.isfile(p)]
    if missing:
        shown = "; ".join(f"line {line}: {p}" for line, p in missing[:5])
        raise DatasetError(f"{path}: {len(missing)} image file(s) not found ({shown}"
                           f"{'; ...' if len(missing) > 5 else ''}); check the paths and the dataset root")


TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def expand_shards(spec: str | os.PathLike, suffixes: Sequence[str] = TAR_SUFFIXES) -> list[str]:
    """Shard paths from a file, a folder of shards (names ending in one of ``suffixes``), or brace and
    glob patterns joined by ``::``.

    Example:
        >>> expand_shards("data/shard-{000..002}.tar")  # doctest: +SKIP
        ['data/shard-000.tar', 'data/shard-001.tar', 'data/shard-002.tar']
    """
    import braceexpand
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        shards = sorted(str(p) for p in Path(spec).iterdir() if p.name.lower().endswith(tuple(suffixes)))
        if not shards:
            raise DatasetError(f"{spec}: no {' / '.join(suffixes)} shards in this folder")
        return shards
    shards = []
    for pattern in (s for part in spec.split("::") for s in braceexpand.braceexpand(part)):
        is_glob = any(c in pattern for c in "*?[") and not os.path.isfile(pattern)
        matches = sorted(glob.glob(pattern)) if is_glob else []
        shards.extend(matches or [pattern])
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(shards)} shard(s) not found: {missing[:5]}")
    return shards


def read_webdataset(spec: str | os.PathLike, classnames: Sequence[str] | None = None) -> LabelledImages:
    """WebDataset shards whose samples hold an image (``.jpg``, ``.png``, ``.webp``...) and a ``.cls`` id.

    Shards are only listed here; they are read (and checked) while :meth:`LabelledImages.samples` runs.

    Example:
        >>> data = read_webdataset("wds/test/{0..3}.tar", read_classnames("wds/classnames.txt"))  # doctest: +SKIP
    """
    shards = expand_shards(spec)
    folder = Path(spec) if os.path.isdir(spec) else Path(shards[0]).parent
    classnames = _default_classnames(folder, classnames)
    if classnames is None and (folder.parent / CLASSNAMES_FILE).is_file():  # clip_benchmark: <root>/test/*.tar
        classnames = read_classnames(folder.parent / CLASSNAMES_FILE)
    return LabelledImages(os.fspath(spec), "webdataset", classnames, shards=tuple(shards))


def _split_key(member: str) -> tuple[str, str]:
    folder, _, base = member.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _shard_samples(shard: str, classnames) -> Iterator[Sample]:
    def finish(key, parts):
        name = f"{shard}:{key}"
        image_ext = next((e for e in parts if is_image_file("x." + e)), None)
        if image_ext is None:
            raise DatasetError(f"{name}: sample has no image (members: {sorted(parts)})")
        if "cls" not in parts:
            raise DatasetError(f"{name}: sample has no .cls class id (members: {sorted(parts)})")
        text = parts["cls"].decode("utf-8", "replace").strip()
        if not _is_int(text) or int(text) < 0:
            raise DatasetError(f"{name}: .cls holds {text[:40]!r}, not a class id")
        label = int(text)
        if classnames is not None and label >= len(classnames):
            raise DatasetError(f"{name}: class id {label} is not among the {len(classnames)} classnames")
        return Sample(name, (name, parts[image_ext]), label)

    try:
        with tarfile.open(shard, "r|*") as tar:
            key, parts = None, {}
            for member in tar:
                if not member.isfile() or os.path.basename(member.name).startswith(("__", ".")):
                    continue
                k, ext = _split_key(member.name)
                if k != key and parts:
                    yield finish(key, parts)
                    parts = {}
                key = k
                parts[ext] = tar.extractfile(member).read()
            if parts:
                yield finish(key, parts)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{shard}: cannot read the tar shard ({type(e).__name__}: {e})") from None


__all__ = ["CLASSNAMES_FILE", "LabelledImages", "Sample", "TAR_SUFFIXES", "TEMPLATES_FILE", "expand_shards",
           "read_classnames", "read_image_folder", "read_labelled_csv", "read_webdataset"]
