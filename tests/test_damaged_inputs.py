"""Damaged embedding folders and index folders: one-line errors naming the file, never a traceback.

Real damage on real files written by ``anyclip embed`` / ``anyclip index`` (the shipped ``anyclip-shapes``
model on a dozen generated images, embedded once for the module): truncated and byte-flipped shards, invalid
or wrongly-shaped manifests, deleted shards, truncated or garbled index files; folders written before sizes
and checksums were recorded still read. Also: empty and all-failed embed runs, truthful resume reports and the
single-file schema.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli as run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from anyclip.cli import main
from anyclip.errors import DataError

ARGS = ["--shard-size", "5", "--batch-size", "4", "--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Twelve images embedded into a Parquet folder and an .npy folder, and an index of the Parquet one."""
    root = tmp_path_factory.mktemp("damaged")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(root / "images" / f"i{i:02d}.png")
    assert main(["embed", str(root / "images"), "-o", str(root / "emb"), *ARGS]) == 0
    assert main(["embed", str(root / "images"), "-o", str(root / "npy"), "--format", "npy", *ARGS]) == 0
    assert main(["index", str(root / "emb"), "-o", str(root / "idx")]) == 0
    return root


@pytest.fixture
def copy(built, tmp_path):
    def make(name: str) -> Path:
        return Path(shutil.copytree(built / name, tmp_path / name))
    return make


def truncate(path: Path, size: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 if size is None else size])


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def index_fails(capsys, folder: Path, names: Path, tmp_path: Path) -> str:
    code, err = run(["index", folder, "-o", tmp_path / "new_idx"], capsys)
    assert code == 1, err
    assert str(names) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new_idx").exists()
    return err


# ------------------------------------------------------------------------------------------ embedding folders

@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("fmt", ["emb", "npy"])
def test_a_damaged_shard_is_named_with_what_to_do(copy, capsys, tmp_path, damage, fmt):
    folder = copy(fmt)
    shard = folder / ("part-00001.parquet" if fmt == "emb" else "part-00001.npy")
    {"truncate": truncate, "flip": flip, "delete": Path.unlink}[damage](shard)
    err = index_fails(capsys, folder, shard, tmp_path)
    assert f"anyclip embed ... -o {folder}" in err
    assert {"truncate": "truncated", "flip": "sha256", "delete": "missing"}[damage] in err


def test_rerunning_embed_rewrites_a_damaged_shard(copy, built, capsys, tmp_path):
    folder = copy("emb")
    flip(folder / "part-00002.parquet")  # same size, still the same name: only the checksum finds it
    assert main(["embed", str(built / "images"), "-o", str(folder), *ARGS]) == 0
    assert "wrote 2 new image embeddings (10 already done; 12 in 3 shard(s))" in capsys.readouterr().out
    assert (folder / "part-00002.parquet").read_bytes() == (built / "emb" / "part-00002.parquet").read_bytes()
    assert main(["index", str(folder), "-o", str(tmp_path / "idx")]) == 0


@pytest.mark.parametrize("text, says", [
    ("{\"job\": ", "not valid JSON"),
    ("[1, 2, 3]", "holds a JSON list"),
    ("{\"job\": {\"format\": \"parquet\"}, \"num_shards\": \"three\", \"shards\": {}}", "num_shards is not a count"),
    ("{\"job\": {\"format\": \"parquet\"}, \"num_shards\": 3, \"shards\": {\"part-00000\": 7}, \"complete\": true}",
     "record of part-00000 is damaged"),
    ("", "not valid JSON"),
])
def test_a_damaged_manifest_is_named(copy, capsys, tmp_path, text, says):
    folder = copy("emb")
    (folder / "manifest.json").write_text(text)
    err = index_fails(capsys, folder, folder / "manifest.json", tmp_path)
    assert says in err
    code, err = run(["embed", Path(__file__).parent.parent / "examples" / "shapes", "-o", folder, *ARGS],
                    capsys)  # embed refuses it too
    assert code == 1 and str(folder / "manifest.json") in err and says in err


def test_a_manifest_missing_a_shard_record_or_miscounting_shards_is_named(copy, built, capsys, tmp_path):
    folder = copy("emb")
    original = (built / "emb" / "manifest.json").read_text()
    manifest = json.loads(original)
    del manifest["shards"]["part-00001"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert "no record of shard part-00001" in index_fails(capsys, folder, folder / "manifest.json", tmp_path)
    manifest = json.loads(original)
    manifest["num_shards"] = 1  # would silently leave out two shards
    (folder / "manifest.json").write_text(json.dumps(manifest))
    err = index_fails(capsys, folder, folder / "manifest.json", tmp_path)
    assert "num_shards 1 does not fit 12 inputs in shards of 5" in err


def test_folders_written_before_checksums_still_read_and_their_damage_is_still_found(copy, built, capsys, tmp_path):
    folder = copy("emb")
    manifest = json.loads((folder / "manifest.json").read_text())
    for record in manifest["shards"].values():
        del record["files"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["index", str(folder), "-o", str(tmp_path / "idx")]) == 0
    truncate(folder / "part-00000.parquet")
    assert "damaged" in index_fails(capsys, folder, folder / "part-00000.parquet", tmp_path)
    npy = copy("npy")
    manifest = json.loads((npy / "manifest.json").read_text())
    for record in manifest["shards"].values():
        del record["files"]
    (npy / "manifest.json").write_text(json.dumps(manifest))
    truncate(npy / "part-00001.npy")
    index_fails(capsys, npy, npy / "part-00001.npy", tmp_path)


def test_damaged_single_files_are_named(built, capsys, tmp_path):
    out = tmp_path / "one.parquet"
    assert main(["embed", str(built / "images"), "-o", str(out), *ARGS]) == 0
    truncate(out)
    index_fails(capsys, out, out, tmp_path)
    bogus = tmp_path / "bogus.npy"
    np.save(bogus, np.arange(5))  # a valid .npy, but not [n, d] embeddings
    assert "not [n, d] float embeddings" in index_fails(capsys, bogus, bogus, tmp_path)


# ------------------------------------------------------------------------------------------------ index folders

@pytest.mark.parametrize("name, damage, says", [
    ("index.faiss", truncate, "truncated"),
    ("index.faiss", flip, "sha256"),
    ("rows.parquet", truncate, "truncated"),
    ("rows.parquet", Path.unlink, "missing"),
    ("index.json", lambda p: p.write_text("{\"n\": 12, \"dim\""), "not valid JSON"),
    ("index.json", lambda p: p.write_text("\"an index\""), "holds a JSON str"),
    ("index.json", lambda p: p.write_text("{\"n\": 12}"), "'dim' is missing"),
])
def test_a_damaged_index_folder_is_named_with_what_to_do(copy, capsys, name, damage, says):
    folder = copy("idx")
    damage(folder / name)
    code, err = run(["search", folder, "--text", "a red circle"], capsys)
    assert code == 1 and str(folder / name) in err and says in err and "anyclip index" in err, err


def test_index_folders_without_checksums_still_search_and_damage_is_still_found(copy, capsys):
    folder = copy("idx")
    info = json.loads((folder / "index.json").read_text())
    del info["files"]
    (folder / "index.json").write_text(json.dumps(info))
    assert main(["search", str(folder), "--text", "a red circle", "-k", "3"]) == 0
    truncate(folder / "index.faiss")
    code, err = run(["search", folder, "--text", "a red circle"], capsys)
    assert code == 1 and str(folder / "index.faiss") in err


def test_rows_that_disagree_with_the_index_are_refused(copy, capsys):
    import pyarrow.parquet as pq
    folder = copy("idx")
    pq.write_table(pq.read_table(folder / "rows.parquet").slice(0, 5), folder / "rows.parquet")
    info = json.loads((folder / "index.json").read_text())
    del info["files"]  # as if written before checksums: only the cross-check can find it
    (folder / "index.json").write_text(json.dumps(info))
    code, err = run(["search", folder, "--text", "a red circle"], capsys)
    assert code == 1 and "do not agree" in err and "rows.parquet: 5 rows" in err


# ------------------------------------------------------------------------------------------------- embed runs

def test_empty_and_all_failed_embed_runs_exit_non_zero(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run(["embed", tmp_path / "empty", "-o", tmp_path / "out", *ARGS], capsys)
    assert code == 1 and "no image inputs found" in err
    (tmp_path / "bad").mkdir()
    for i in range(3):
        (tmp_path / "bad" / f"b{i}.jpg").write_bytes(b"not a jpeg")
    code, err = run(["embed", tmp_path / "bad", "-o", tmp_path / "out", *ARGS], capsys)
    assert code == 1 and "every one of the 3 input(s) failed" in err and "errors.jsonl" in err
    code, err = run(["embed", tmp_path / "bad", "-o", tmp_path / "one.npy", *ARGS], capsys)
    assert code == 1 and "every one of the 3 input(s) failed" in err and not (tmp_path / "one.npy").exists()


def test_single_file_outputs_have_the_shard_columns(built, tmp_path):
    import pyarrow.parquet as pq
    shards = pq.read_table(sorted((built / "emb").glob("part-*.parquet")))
    out = tmp_path / "one.parquet"
    assert main(["embed", str(built / "images"), "-o", str(out), *ARGS]) == 0
    one = pq.read_table(out)
    assert one.schema.equals(shards.schema, check_metadata=False)
    assert one.column("id").to_pylist() == list(range(12)) == shards.column("id").to_pylist()
    assert one.column("path").to_pylist() == shards.column("path").to_pylist()
    assert main(["embed", str(built / "images"), "-o", str(tmp_path / "one.npy"), *ARGS]) == 0
    meta = pq.read_table(tmp_path / "one.meta.parquet")
    assert meta.column_names == ["id", "path", "model", "tag"] and len(np.load(tmp_path / "one.npy")) == 12


# ------------------------------------------------------------------------------------------- random damage

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(["emb/part-00000.parquet", "emb/part-00002.parquet", "emb/manifest.json",
                               "npy/part-00001.npy", "npy/part-00001.meta.parquet", "idx/index.faiss",
                               "idx/rows.parquet", "idx/index.json"]),
       cut=st.booleans(), where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_random_truncation_or_byte_flips_fail_with_a_data_error_naming_the_file(built, target, cut, where, mask):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = Path(shutil.copytree(built / target.split("/")[0], tmp / target.split("/")[0]))
        path = tmp / target
        data = bytearray(path.read_bytes())
        at = int(where * len(data))
        if cut:
            data = data[:at]
        else:
            data[at] ^= mask
        path.write_bytes(bytes(data))
        try:
            if folder.name in ("emb", "npy"):
                from anyclip.embed.index import read_embeddings
                read_embeddings([folder])
            else:
                from anyclip.embed.index import SearchIndex
                SearchIndex(folder)
        except DataError as e:
            assert "\n" not in str(e)
            if path.suffix == ".json":  # a damaged record (size, checksum, count) names the file it describes
                assert str(folder) in str(e)
            else:
                assert str(path) in str(e)
        else:  # only JSON damage that leaves what the readers use intact may pass (a tag, a recall, spacing)
            assert path.suffix == ".json"
