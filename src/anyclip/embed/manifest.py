"""The embed folder's ``manifest.json`` and shard names: opening, checking, recording and finishing a job.

The manifest records the job (its settings and a fingerprint of its inputs) and, per finished shard, its row
and error counts and the size and sha256 of each data file. A re-run redoes the shards whose files are
missing or differ from their record; readers check the records before parsing (:mod:`anyclip.embed.read`).

Example:
    >>> shard_name(3), [p.name for p in shard_files(Path("out"), 3, "parquet")]
    ('part-00003', ['part-00003.parquet'])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write_text
from ..errors import DataError, UsageError
from .integrity import file_matches, file_record, read_json_object

if TYPE_CHECKING:
    from .job import EmbedSettings
    from .sources import Inputs

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
FORMATS = ("parquet", "npy")


class EmbedJobError(UsageError):
    """A job that cannot run as asked (bad settings, a folder holding another job's output).

    Example:
        >>> raise EmbedJobError("out/ holds another job's output")  # doctest: +SKIP
    """


# ----------------------------------------------------------------------------------------------- shard names

def shard_name(k: int) -> str:
    """``part-00007`` for shard 7.

    Example:
        >>> shard_name(7)
        'part-00007'
    """
    return f"part-{k:05d}"


def shard_record(out: Path, k: int, settings_format: str, rows: int, errors: int) -> dict:
    """Shard ``k``'s manifest record: its row and error counts, and the size and sha256 of each data file.

    Example:
        >>> shard_record(Path("out"), 0, "parquet", 100, 0)["files"]  # doctest: +SKIP
        {'part-00000.parquet': {'bytes': 51234, 'sha256': '...'}}
    """
    return {"rows": rows, "errors": errors,
            "files": {p.name: file_record(p) for p in shard_files(out, k, settings_format)}}


def shard_files(out: Path, k: int, settings_format: str) -> list[Path]:
    """The data files of shard ``k`` (the errors file aside).

    Example:
        >>> [p.name for p in shard_files(Path("out"), 3, "npy")]
        ['part-00003.meta.parquet', 'part-00003.npy']
    """
    name = shard_name(k)
    if settings_format == "parquet":
        return [out / f"{name}.parquet"]
    return [out / f"{name}.meta.parquet", out / f"{name}.npy"]


# ------------------------------------------------------------------------------------------------------ the job

def _job_record(inputs: Inputs, settings: EmbedSettings) -> dict:
    return {**settings.to_dict(), "num_inputs": len(inputs.items), "inputs_sha256": inputs.fingerprint()}


def open_manifest(out: Path, inputs: Inputs, settings: EmbedSettings) -> dict:
    """The folder's manifest (new, or the one a previous run of the same job left); refuses another job's.

    Example:
        >>> open_manifest(Path("out"), inputs, settings)["shards"]  # doctest: +SKIP
        {}
    """
    job = _job_record(inputs, settings)
    path = out / MANIFEST
    if path.exists():
        manifest = validate_manifest(path, read_json_object(path, REMOVE_FOLDER, "an embedding manifest"),
                                     REMOVE_FOLDER)
        old = manifest["job"]
        diff = sorted(k for k in set(old) | set(job) if old.get(k) != job.get(k))
        if diff:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {job.get(k)!r}" for k in diff[:4])
            raise EmbedJobError(f"{out} holds the output of another embedding job (differs in {detail}); "
                                f"re-run with the same arguments to resume it, or write to a new folder")
        return manifest
    if out.exists() and any(p.name.startswith("part-") for p in out.iterdir()):
        raise EmbedJobError(f"{out} holds part-* files but no {MANIFEST}; write to a new or empty folder")
    shards = -(-len(inputs.items) // settings.shard_size)
    manifest = {"format": "anyclip-embeddings", "version": 1, "job": job, "num_shards": shards, "shards": {},
                "complete": False}
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


REMOVE_FOLDER = "remove the folder (or write to a new one) and run `anyclip embed` again"


def validate_manifest(path: Path, manifest: dict, fix: str) -> dict:
    """``manifest`` if it has the shape ``anyclip embed`` writes; else a :class:`DataError` naming ``path``.

    Example:
        >>> validate_manifest(Path("m.json"), {"job": {}, "num_shards": 1, "shards": []}, "fix it")
        Traceback (most recent call last):
        ...
        anyclip.errors.DataError: m.json: not an `anyclip embed` manifest (job.format is missing or unknown); fix it
    """
    job, shards, n = manifest.get("job"), manifest.get("shards"), manifest.get("num_shards")
    problem = None
    if not isinstance(job, dict):
        problem = "no job record"
    elif job.get("format") not in FORMATS:
        problem = "job.format is missing or unknown"
    elif not isinstance(n, int) or isinstance(n, bool) or n < 0:
        problem = "num_shards is not a count"
    elif not isinstance(shards, dict):
        problem = "shards is not an object"
    else:
        names = {shard_name(k) for k in range(n)}
        size, inputs = job.get("shard_size"), job.get("num_inputs")
        if isinstance(size, int) and size > 0 and isinstance(inputs, int) and n != -(-inputs // size):
            problem = f"num_shards {n} does not fit {inputs} inputs in shards of {size}"
        for name, record in shards.items():
            if problem:
                break
            if name not in names:
                problem = f"a record of {name}, beyond its {n} shard(s)"
            elif not (isinstance(record, dict) and all(isinstance(record.get(key), int) for key in ("rows", "errors"))
                      and isinstance(record.get("files", {}), dict)):
                problem = f"the record of {name} is damaged"
    if problem:
        raise DataError(f"{path}: not an `anyclip embed` manifest ({problem}); {fix}")
    return manifest


def pending_shards(out: Path, manifest: dict, inputs: Inputs, settings: EmbedSettings) -> list[tuple[int, list]]:
    """``(k, items)`` of the shards still to do (not recorded, or with a data file missing or damaged).

    Example:
        >>> [k for k, _ in pending_shards(Path("out"), manifest, inputs, settings)]  # doctest: +SKIP
        [3, 4]
    """
    todo, size = [], settings.shard_size
    for k in range(manifest["num_shards"]):
        done = manifest["shards"].get(shard_name(k))
        if done is not None and all(file_matches(p, done.get("files", {}).get(p.name))
                                    for p in shard_files(out, k, settings.format)):
            continue
        todo.append((k, inputs.items[k * size:(k + 1) * size]))
    return todo


def record_shard(out: Path, manifest: dict, k: int, record: dict) -> None:
    """Add shard ``k`` to the manifest and rewrite it atomically."""
    manifest["shards"][shard_name(k)] = record
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def finish_job(out: Path, manifest: dict) -> dict:
    """Gather the shards' errors into ``errors.jsonl`` and mark the manifest complete.

    Example:
        >>> finish_job(Path("out"), manifest)["num_rows"]  # doctest: +SKIP
        1000
    """
    parts = []
    for k in range(manifest["num_shards"]):
        path = out / f"{shard_name(k)}.errors.jsonl"
        if manifest["shards"][shard_name(k)]["errors"]:
            parts.append(path.read_text(encoding="utf-8"))
    atomic_write_text(out / ERRORS, "".join(parts))
    manifest["num_rows"] = sum(r["rows"] for r in manifest["shards"].values())
    manifest["num_errors"] = sum(r["errors"] for r in manifest["shards"].values())
    manifest["complete"] = True
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def clean_temporaries(out: Path) -> None:
    """Remove the half-written temporary files a killed run left (``.part-*.tmp``, ``.manifest.json.*``)."""
    if out.is_dir():
        for p in out.iterdir():
            if p.name.startswith((".part-", f".{MANIFEST}.", f".{ERRORS}.")) and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)


def run_stats(manifest: dict, redone: list[int]) -> dict:
    """What this run added: ``{"new_rows", "new_errors", "old_rows"}`` (``old_rows``: left by earlier runs).

    Example:
        >>> run_stats({"shards": {"part-00000": {"rows": 5, "errors": 1}, "part-00001": {"rows": 6, "errors": 0}}}, [1])
        {'new_rows': 6, 'new_errors': 0, 'old_rows': 5}
    """
    records = manifest["shards"]
    new = [records[shard_name(k)] for k in redone]
    new_rows = sum(r["rows"] for r in new)
    return {"new_rows": new_rows, "new_errors": sum(r["errors"] for r in new),
            "old_rows": sum(r["rows"] for r in records.values()) - new_rows}


__all__ = ["ERRORS", "FORMATS", "MANIFEST", "REMOVE_FOLDER", "EmbedJobError", "clean_temporaries", "finish_job",
           "open_manifest", "pending_shards", "record_shard", "run_stats", "shard_files", "shard_name",
           "shard_record", "validate_manifest"]
