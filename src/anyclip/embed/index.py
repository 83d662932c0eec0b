"""FAISS indexes over embedding shards (``anyclip index``) and nearest-neighbour search (``anyclip search``).

The index type follows the number of vectors ``n`` (inner product = cosine on the normalised embeddings):

* ``n <= exact_below`` (default 50,000): ``IndexFlatIP``, exact -- the same top-k as brute force;
* up to ``pq_above`` (default 2,000,000): ``IVF<nlist>,Flat`` with ``nlist ~ sqrt(n)`` (power of two);
* above: ``IVF<nlist>,PQ<m>`` (``m`` sub-quantisers of 8 bits, about ``d / 4`` bytes per vector).

For the IVF kinds ``nprobe`` is calibrated when the index is built: it doubles until recall@10 against
exact search, on up to 500 stored vectors used as queries (each one's own match left out), reaches
``target_recall`` (default 0.97), and the measured recall is kept in ``index.json``.

An index folder holds ``index.faiss``, ``index.json`` (type, nlist, nprobe, recall, model, tag) and
``rows.parquet`` (row -> ``id`` and ``path`` / ``text``), each written atomically.

Example:
    >>> emb = np.random.default_rng(0).normal(size=(1000, 16)).astype("float32")
    >>> index, info = build_index(emb / np.linalg.norm(emb, axis=1, keepdims=True))
    >>> info["type"], index.ntotal
    ('flat', 1000)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..errors import DataError, UsageError
from .extra import require
from .integrity import check_file, file_record, read_json_object
from .read import read_embeddings

EXACT_BELOW = 50_000
PQ_ABOVE = 2_000_000
INDEX_TYPES = ("auto", "flat", "ivf", "ivfpq")


class EmbeddingIndexError(DataError):
    """Embeddings that cannot be indexed, or an index folder that cannot be read; the message names it."""


def choose_index(n: int, dim: int, kind: str = "auto", exact_below: int = EXACT_BELOW,
                 pq_above: int = PQ_ABOVE) -> dict:
    """The index spec for ``n`` vectors of size ``dim``: ``{"type", "nlist", "m"}``.

    Example:
        >>> choose_index(1000, 512)["type"], choose_index(100_000, 512)
        ('flat', {'type': 'ivf', 'nlist': 256, 'm': None})
    """
    if kind not in INDEX_TYPES:
        raise EmbeddingIndexError(f"index type must be one of {INDEX_TYPES}, got {kind!r}")
    if kind == "auto":
        kind = "flat" if n <= exact_below else "ivf" if n <= pq_above else "ivfpq"
    if kind == "flat":
        return {"type": "flat", "nlist": None, "m": None}
    nlist = int(2 ** round(np.log2(max(np.sqrt(n), 1))))
    nlist = max(1, min(nlist, 65536, n // 39 or 1))  # faiss wants ~39 training points per centroid
    m = None
    if kind == "ivfpq":
        m = max(d for d in range(1, max(dim // 4, 1) + 1) if dim % d == 0)
    return {"type": kind, "nlist": nlist, "m": m}


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / max(len(t), 1) for f, t in zip(found, truth)]))


def _without_self(ids: np.ndarray, selves: np.ndarray, k: int) -> np.ndarray:
    return np.stack([[i for i in row if i != s][:k] for row, s in zip(ids, selves)])


def build_index(emb: np.ndarray, kind: str = "auto", *, exact_below: int = EXACT_BELOW, pq_above: int = PQ_ABOVE,
                target_recall: float = 0.97, seed: int = 0):
    """``(faiss index, info)``; IVF kinds get their ``nprobe`` calibrated (see the module docstring).

    Example:
        >>> index, info = build_index(vectors, "ivf")  # doctest: +SKIP
        >>> info["nprobe"], info["recall_at_10"]  # doctest: +SKIP
        (32, 0.972)
    """
    faiss = require("faiss")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n, dim = emb.shape
    spec = choose_index(n, dim, kind, exact_below, pq_above)
    info = {**spec, "n": n, "dim": dim, "metric": "inner_product"}
    if spec["type"] == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(emb)
        return index, {**info, "nprobe": None, "recall_at_10": 1.0}
    desc = f"IVF{spec['nlist']},Flat" if spec["type"] == "ivf" else f"IVF{spec['nlist']},PQ{spec['m']}"
    index = faiss.index_factory(dim, desc, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.max_points_per_centroid = 128  # train on a sample: fast, and enough for the coarse centroids
    if spec["type"] == "ivfpq":
        index.pq.cp.niter, index.pq.cp.max_points_per_centroid, index.pq.cp.seed = 10, 64, seed
        index.do_polysemous_training = False  # the factory's default: minutes of annealing we never use
    index.train(emb)
    index.add(emb)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(500, n), replace=False))
    k = min(10, n - 1)
    queries = emb[sample]
    scores = queries @ emb.T
    truth = _without_self(np.argsort(-scores, axis=1)[:, :k + 1], sample, k)
    nprobe, recall = 1, 0.0
    while True:
        index.nprobe = nprobe
        _, found = index.search(queries, k + 1)
        recall = _recall(_without_self(found, sample, k), truth)
        if recall >= target_recall or nprobe >= spec["nlist"]:
            break
        nprobe = min(nprobe + max(1, nprobe // 2), spec["nlist"])  # 1, 2, 3, 4, 6, 9, 13, 19, ...
    return index, {**info, "nprobe": nprobe, "recall_at_10": round(recall, 4)}


def save_index(out: str | os.PathLike, index, info: dict, rows) -> Path:
    """Write ``index.faiss``, ``index.json`` and ``rows.parquet`` into the folder ``out`` (atomically).

    Example:
        >>> save_index("index/", index, info, rows)  # doctest: +SKIP
    """
    pq, faiss = require("pyarrow.parquet"), require("faiss")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").unlink(missing_ok=True)  # no index.json naming files that are being replaced
    atomic_write(out / "index.faiss", lambda tmp: faiss.write_index(index, tmp))
    atomic_write(out / "rows.parquet", lambda tmp: pq.write_table(rows, tmp))
    info = {**info, "files": {name: file_record(out / name) for name in INDEX_FILES}}
    atomic_write_text(out / "index.json", json.dumps(info, indent=1, sort_keys=True))
    return out


INDEX_FILES = ("index.faiss", "rows.parquet")


def _rebuild(folder: Path) -> str:
    return f"rebuild it with `anyclip index EMBEDDINGS -o {folder}`"


def read_index_info(folder: Path) -> dict:
    """``index.json`` of an index folder, checked: the keys search needs, and each file against its record.

    Example:
        >>> read_index_info(Path("idx/"))["dim"]  # doctest: +SKIP
        512
    """
    fix = _rebuild(folder)
    if not folder.is_dir():
        raise EmbeddingIndexError(f"{folder}: no such folder; give the folder `anyclip index -o` wrote")
    if not (folder / "index.json").is_file():
        raise EmbeddingIndexError(f"{folder}: no index.json (not an `anyclip index` folder); {fix}")
    info = read_json_object(folder / "index.json", fix, "an index description")
    for key in ("n", "dim"):
        if not isinstance(info.get(key), int) or isinstance(info.get(key), bool) or info[key] < 0:
            raise EmbeddingIndexError(f"{folder / 'index.json'}: '{key}' is missing or not a count; {fix}")
    if info.get("nprobe") is not None and not isinstance(info["nprobe"], int):
        raise EmbeddingIndexError(f"{folder / 'index.json'}: 'nprobe' is not a number; {fix}")
    files = info.get("files", {})
    if not isinstance(files, dict):
        raise EmbeddingIndexError(f"{folder / 'index.json'}: 'files' is not an object; {fix}")
    for name in INDEX_FILES:  # before parsing: damage is found even where the bytes still parse
        check_file(folder / name, files.get(name), fix)
    return info


class SearchIndex:
    """A saved index: ``search(queries, k)`` gives ``(scores [q, k], rows [q][k] dicts)``.

    Example:
        >>> index = SearchIndex("index/")  # doctest: +SKIP
        >>> scores, hits = index.search(query_embeddings, k=5)  # doctest: +SKIP
        >>> hits[0][0]["path"]  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike):
        pq, faiss = require("pyarrow.parquet"), require("faiss")
        folder = Path(folder)
        self.folder = folder
        self.info = read_index_info(folder)
        fix = _rebuild(folder)
        try:
            self.index = faiss.read_index(str(folder / "index.faiss"))
        except Exception as e:  # faiss raises RuntimeError on damaged files
            reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
            raise EmbeddingIndexError(f"{folder / 'index.faiss'}: damaged ({reason}); {fix}") from None
        if self.info.get("nprobe"):
            self.index.nprobe = int(self.info["nprobe"])
        try:
            self.rows = pq.read_table(folder / "rows.parquet").to_pylist()
        except Exception as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise EmbeddingIndexError(f"{folder / 'rows.parquet'}: damaged ({reason}); {fix}") from None
        if not (self.index.ntotal == len(self.rows) == self.info["n"]) or self.index.d != self.info["dim"]:
            raise EmbeddingIndexError(
                f"{folder}: the files do not agree (index.json: {self.info['n']} x {self.info['dim']}, index.faiss: "
                f"{self.index.ntotal} x {self.index.d}, rows.parquet: {len(self.rows)} rows); {fix}")

    def search(self, queries: np.ndarray, k: int = 10):
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.info["dim"]:
            raise UsageError(f"query embeddings have size {queries.shape[1]}, the index at {self.folder} "
                             f"{self.info['dim']}: give the --model the index was built with")
        scores, ids = self.index.search(queries, max(1, min(k, self.index.ntotal)))
        hits = [[self.rows[i] for i in row if i >= 0] for row in ids]
        return scores, hits


__all__ = [
    "EXACT_BELOW",
    "INDEX_TYPES",
    "PQ_ABOVE",
    "EmbeddingIndexError",
    "SearchIndex",
    "build_index",
    "choose_index",
    "read_embeddings",
    "read_index_info",
    "save_index",
]
