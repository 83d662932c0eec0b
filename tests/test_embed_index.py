"""``anyclip index`` / ``anyclip search``: FAISS index kinds against brute force, the CLI and its contact sheet."""

import json
from pathlib import Path

import numpy as np
import pytest

from anyclip.cli import main
from anyclip.embed.index import SearchIndex, build_index, choose_index, save_index
from anyclip.errors import DataError, UsageError


def _exit(argv, capsys) -> tuple[int, str]:
    """``(exit code, stderr)`` of ``anyclip argv``, whether the CLI maps DataError/UsageError itself or not."""
    capsys.readouterr()
    try:
        code = main(argv)
    except DataError as e:
        code, message = 1, str(e)
    except UsageError as e:
        code, message = 2, str(e)
    else:
        message = ""
    return code, message + capsys.readouterr().err


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(queries, base, k):
    scores = queries @ base.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_index_kind_follows_the_number_of_vectors():
    assert choose_index(50_000, 512)["type"] == "flat"
    assert choose_index(50_001, 512) == {"type": "ivf", "nlist": 256, "m": None}
    assert choose_index(3_000_000, 512) == {"type": "ivfpq", "nlist": 2048, "m": 128}
    assert choose_index(10, 64, "ivf")["nlist"] == 1  # never fewer than ~39 training vectors per list


def test_exact_index_returns_the_brute_force_top_k():
    rng = np.random.default_rng(0)
    base, queries = _unit(rng, 5000, 48), _unit(rng, 50, 48)
    index, info = build_index(base)
    assert info["type"] == "flat" and info["recall_at_10"] == 1.0
    scores, ids = index.search(queries, 10)
    want_scores, want_ids = _brute_force(queries, base, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_ivf_recall_at_10_on_100k_random_vectors():
    rng = np.random.default_rng(1)
    base, queries = _unit(rng, 100_000, 32), _unit(rng, 200, 32)
    index, info = build_index(base)  # auto: IVF above 50k vectors, nprobe calibrated on stored vectors
    assert info["type"] == "ivf" and info["nprobe"] < info["nlist"]
    _, ids = index.search(queries, 10)
    _, want = _brute_force(queries, base, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want)])
    assert recall >= 0.95, (recall, info)


def test_ivfpq_builds_and_finds_near_duplicates(tmp_path):
    import pyarrow as pa
    rng = np.random.default_rng(2)
    base = _unit(rng, 10_000, 32)
    index, info = build_index(base, "ivfpq", target_recall=0.5)
    assert info["type"] == "ivfpq" and info["m"] == 8
    queries = base[:20] + 0.01 * _unit(rng, 20, 32)
    _, ids = index.search(queries / np.linalg.norm(queries, axis=1, keepdims=True), 5)
    assert np.mean([i in row for i, row in enumerate(ids)]) >= 0.9
    rows = pa.table({"id": np.arange(10_000), "path": [f"p{i}" for i in range(10_000)]})
    save_index(tmp_path / "idx", index, info, rows)
    loaded = SearchIndex(tmp_path / "idx")
    assert loaded.index.nprobe == info["nprobe"]
    _, hits = loaded.search(base[7], k=3)
    assert hits[0][0]["path"] == "p7"


def test_embed_index_search_cli_with_a_contact_sheet(tmp_path, capsys):
    from anyclip.data.shapes import ShapesConfig, ShapesDataset
    images = tmp_path / "images"
    images.mkdir()
    data = ShapesDataset(ShapesConfig(seed=3), "test", 12)
    for i in range(12):
        data[i][0].save(images / f"s{i:02d}.png")
    assert main(["embed", str(images), "-o", str(tmp_path / "emb"), "--shard-size", "5", "--no-progress",
                 "--workers", "0"]) == 0
    assert main(["index", str(tmp_path / "emb"), "-o", str(tmp_path / "idx")]) == 0
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert info["type"] == "flat" and info["n"] == 12 and info["model"] == "anyclip-shapes" and info["tag"] == "v1"
    capsys.readouterr()
    query = images / "s04.png"
    assert main(["search", str(tmp_path / "idx"), "--image", str(query), "-k", "3", "--json",
                 "--html", str(tmp_path / "hits.html")]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == str(query) and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    sheet = (tmp_path / "hits.html").read_text()
    assert sheet.count("data:image/jpeg;base64,") == 3 and "s04.png" in sheet
    assert main(["search", str(tmp_path / "idx"), "--text", "a red circle", "-k", "12"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12 and {Path(line.split()[-1]).name for line in lines} == {f"s{i:02d}.png" for i in range(12)}
    assert main(["search", str(tmp_path / "nowhere"), "--text", "x"]) == 2  # refused by the argument's type
    assert "argument index: " in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["search", str(tmp_path / "empty"), "--text", "x"]) == 1  # a folder, but not an index
    assert "not an `anyclip index` folder" in capsys.readouterr().err
    # another --model than the index's is refused, naming both; -k beyond the index is capped
    code, err = _exit(["search", str(tmp_path / "idx"), "--text", "x", "--model", "ViT-B-32"], capsys)
    assert code == 2 and "ViT-B-32" in err and "anyclip-shapes" in err
    assert main(["search", str(tmp_path / "idx"), "--text", "a red circle", "-k", "1000", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 12
