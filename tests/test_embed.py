"""``anyclip embed`` at scale: resumable shards (kill -9 then re-run), awkward files, inputs, texts, fast path.

Runs the shipped default model (``anyclip-shapes``, 64 px) on small generated images.
"""

import json
import os
import random
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyclip.cli import main

ARGS = ["--shard-size", "6", "--batch-size", "4", "--no-progress"]


def _image(rng, h, w):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w, 1), y * 255 / max(h, 1), (x + y) * 127 / max(h + w, 1)], -1)
    return (base + rng.normal(0, 25, base.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """31 images of mixed sizes and formats in a tree, one broken file and one ignored text file."""
    root = tmp_path_factory.mktemp("embed") / "images"
    rng = np.random.default_rng(0)
    for i in range(31):
        sub = root / ("b" if i % 4 == 0 else "a") / ("deep" if i % 7 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        h, w = (int(v) for v in rng.integers(24, 160, 2))
        Image.fromarray(_image(rng, h, w)).save(sub / f"img{i:02d}.{'png' if i % 5 == 0 else 'jpg'}")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "a" / "notes.txt").write_text("not an image, and no image extension: ignored")
    return root


def _files(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _assert_same_output(clean: Path, other: Path):
    a, b = _files(clean), _files(other)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name


@pytest.fixture(scope="module")
def clean_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(["embed", str(folder), "-o", str(out), "--workers", "2", *ARGS]) == 0
    return out


def test_sharded_output_rows_errors_and_manifest(folder, clean_run):
    import pyarrow.parquet as pq
    manifest = json.loads((clean_run / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_shards"] == 6 and manifest["job"]["num_inputs"] == 32
    assert manifest["num_rows"] == 31 and manifest["num_errors"] == 1
    table = pq.read_table(sorted(clean_run.glob("part-*.parquet")))
    assert table.column_names == ["id", "path", "embedding", "model", "tag"]
    ids = table.column("id").to_pylist()
    errors = [json.loads(line) for line in (clean_run / "errors.jsonl").read_text().splitlines()]
    assert [e["path"] for e in errors] == [str(folder / "a" / "broken.jpg")]
    assert "cannot decode image" in errors[0]["error"]
    assert sorted(ids + [e["id"] for e in errors]) == list(range(32))  # every input once: a row or an error
    paths = table.column("path").to_pylist()
    assert paths == sorted(paths, key=lambda p: Path(p).relative_to(folder).parts)
    assert set(table.column("model").to_pylist()) == {"anyclip-shapes"} and set(table.column("tag").to_pylist()) == {"v1"}
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # the rows equal the model on the exact preprocessing, image by image
    import anyclip
    model, _, preprocess = anyclip.create_model_and_transforms("anyclip-shapes", "v1")
    want = np.asarray(model.encode_image(preprocess.batch(paths[:5]), normalize=True))
    np.testing.assert_allclose(emb[:5], want, atol=2e-5)


def test_rerun_skips_complete_shards_and_workers_do_not_change_the_output(folder, clean_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["embed", str(folder), "-o", str(out), "--workers", "0", *ARGS]) == 0
    _assert_same_output(clean_run, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    (out / "part-00002.parquet").unlink()  # a lost shard is redone, the others are left alone
    assert main(["embed", str(folder), "-o", str(out), "--workers", "0", *ARGS]) == 0
    _assert_same_output(clean_run, out)
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.glob("part-*") if p.name != "part-00002.parquet")
    capsys.readouterr()
    assert main(["embed", str(folder), "-o", str(out), "--workers", "0", "--shard-size", "5", "--batch-size", "4"]) == 2  # another job's settings: change the command
    assert "shard_size: 6 -> 5" in capsys.readouterr().err


def test_kill_minus_9_at_random_points_then_rerun_gives_the_clean_output(folder, clean_run, tmp_path):
    """Five real SIGKILLs at random moments (start-up, mid-shard, while writing), each followed by a re-run."""
    rng = random.Random(20261124)
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    killed = 0
    for trial in range(5):
        out = tmp_path / f"killed{trial}"
        args = ["embed", str(folder), "-o", str(out), "--workers", "1", *ARGS]
        proc = subprocess.Popen([sys.executable, "-m", "anyclip.cli", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = rng.randrange(0, 6)  # shards recorded before the kill, then a random extra delay
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = len(json.loads((out / "manifest.json").read_text())["shards"])
            except (OSError, ValueError):
                done = -1
            if done >= target:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed += proc.returncode == -signal.SIGKILL
        if out.exists():
            import pyarrow.parquet as pq
            for part in out.glob("part-*.parquet"):  # never a half-written visible file
                pq.read_table(part)
        assert main(args) == 0
        _assert_same_output(clean_run, out)
    assert killed >= 4, "the job finished before it could be killed"


def test_a_second_embed_into_a_running_jobs_folder_is_refused_naming_the_first(folder, clean_run, tmp_path, capsys):
    """A job in a subprocess holds the folder's lock; another one (same or other arguments) exits 1 naming it."""
    from anyclip.output_lock import LOCK_NAME
    out = tmp_path / "locked"
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    args = ["embed", str(folder), "-o", str(out), "--workers", "0", *ARGS]
    proc = subprocess.Popen([sys.executable, "-m", "anyclip.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        def owner_written():  # the lock file exists, and its owner has written who it is
            try:
                return f"{proc.pid}" in (out / LOCK_NAME).read_text()
            except OSError:
                return False
        while not owner_written() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the first job ended before its lock was seen"
        for argv in (args, [*args, "--format", "npy"]):
            capsys.readouterr()
            code, message = main(argv), capsys.readouterr().err
            assert code == 1 and f"pid {proc.pid}" in message and "anyclip embed" in message, message
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _assert_same_output(clean_run, out)  # the refused runs left the first job's output alone


def _png_header_only(path: Path, width: int, height: int):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    root = tmp_path_factory.mktemp("awkward")
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(_image(rng, 90, 140))
    rgb.save(root / "plain.jpg")
    rgb.convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(_image(rng, 70, 50)[..., 0].astype(np.uint16) * 257).save(root / "sixteen.png")
    rgba = np.dstack([_image(rng, 60, 80), rng.integers(0, 256, (60, 80), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(root / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(_image(rng, 40, 120)).save(root / "rotated.jpg", exif=exif)
    data = (root / "plain.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[:len(data) // 2])
    (root / "corrupt.jpg").write_bytes(data[:200] + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)))
    _png_header_only(root / "bomb.png", 40_000, 40_000)  # 1.6 G pixels declared, a few bytes of data
    (root / "words.jpg").write_text("a text file with an image extension")
    return root


GOOD = ["cmyk.jpg", "palette.png", "plain.jpg", "rgba.png", "rotated.jpg", "sixteen.png"]
BAD = {"bomb.png": ("decompression bomb",), "corrupt.jpg": ("cannot decode", "not an image"),
       "truncated.jpg": ("truncated",), "words.jpg": ("not an image",)}


def test_awkward_files_are_embedded_or_recorded_as_documented(awkward, tmp_path):
    import open_clip
    import pyarrow.parquet as pq
    from PIL import ImageOps

    import anyclip
    from anyclip.embed.decode import decode_item, normalize
    out = tmp_path / "out"
    assert main(["embed", str(awkward), "-o", str(out), "--workers", "2", *ARGS]) == 0
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    assert [Path(p).name for p in table.column("path").to_pylist()] == GOOD
    errors = {Path(e["path"]).name: e["error"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert sorted(errors) == sorted(BAD)
    for name, words in BAD.items():
        assert any(w in errors[name] for w in words), (name, errors[name])

    # the embedded pixels are open_clip's eval transform of the (EXIF-rotated) image, whatever its mode
    # (16-bit images first brought to 8 bits by rescaling, where open_clip would clip them)
    model = anyclip.create_model("anyclip-shapes", "v1")
    cfg = model.preprocess_cfg
    ref = open_clip.image_transform(cfg.size, is_train=False, mean=cfg.mean, std=cfg.std,
                                    resize_mode=cfg.resize_mode, interpolation=cfg.interpolation)
    pixels = []
    for name in GOOD:
        ours, reason = decode_item(("file", str(awkward / name)), name, cfg)
        assert reason is None, name
        ours = normalize(ours[None], cfg)[0]
        with Image.open(awkward / name) as im:
            if im.mode == "I;16":  # rescaled to 8 bits on purpose (open_clip clips it to white): v * 257 -> v
                im = Image.fromarray((np.asarray(im) // 257).astype(np.uint8))
            want = ref(ImageOps.exif_transpose(im)).numpy().transpose(1, 2, 0)
        np.testing.assert_allclose(ours, want, atol=1e-6, err_msg=name)
        pixels.append(ours)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    want = np.concatenate([np.asarray(model.encode_image(np.stack(pixels[i:i + 4]), normalize=True))
                           for i in range(0, len(pixels), 4)])
    np.testing.assert_allclose(emb, want, atol=2e-5)
    assert Image.open(awkward / "rotated.jpg").size == (120, 40)  # stored landscape, shown portrait


def test_csv_parquet_and_webdataset_inputs_give_the_folders_rows(folder, clean_run, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    clean = pq.read_table(sorted(clean_run.glob("part-*.parquet")))
    paths = clean.column("path").to_pylist()
    want = np.stack(clean.column("embedding").to_numpy(zero_copy_only=False))
    (tmp_path / "list.csv").write_text("filepath,label\n" + "".join(f"{os.path.relpath(p, tmp_path)},x\n"
                                                                    for p in paths))
    pq.write_table(pa.table({"image": paths}), tmp_path / "list.parquet")
    with tarfile.open(tmp_path / "shard-000.tar", "w") as tar:
        for i, p in enumerate(paths):
            tar.add(p, arcname=f"{i:04d}{Path(p).suffix}")
            info = tarfile.TarInfo(f"{i:04d}.txt")
            info.size = 3
            import io
            tar.addfile(info, io.BytesIO(b"cap"))
    for source, name in [("list.csv", None), ("list.parquet", None), ("shard-000.tar", "tar")]:
        out = tmp_path / f"out-{source.replace('.', '-')}"
        assert main(["embed", str(tmp_path / source), "-o", str(out), "--workers", "1", *ARGS]) == 0, source
        table = pq.read_table(sorted(out.glob("part-*.parquet")))
        got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=source)
        if name == "tar":
            assert table.column("path").to_pylist()[1] == f"{tmp_path / 'shard-000.tar'}:0001"
        else:
            assert [os.path.realpath(p) for p in table.column("path").to_pylist()] == \
                [os.path.realpath(p) for p in paths]


def test_texts_are_sharded_like_images_and_npy_format(tmp_path):
    import pyarrow.parquet as pq

    import anyclip
    texts = [f"a {c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square", "star")] + ["", "日本語"]
    (tmp_path / "t.txt").write_text("\n".join(texts[:6]) + "\n")
    out = tmp_path / "out"
    assert main(["embed", "--text-file", str(tmp_path / "t.txt"), "--texts", *texts[6:], "-o", str(out),
                 "--format", "npy", *ARGS]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["job"]["kind"] == "text" and manifest["num_rows"] == len(texts) and manifest["num_shards"] == 2
    meta = pq.read_table([out / "part-00000.meta.parquet", out / "part-00001.meta.parquet"])
    assert meta.column_names == ["id", "text", "model", "tag"]
    assert meta.column("text").to_pylist() == texts[6:] + texts[:6]  # --texts first, then the file
    emb = np.concatenate([np.load(out / "part-00000.npy"), np.load(out / "part-00001.npy")])
    model = anyclip.create_model("anyclip-shapes", "v1")
    tok = anyclip.get_tokenizer("anyclip-shapes")
    want = np.asarray(model.encode_text(tok(meta.column("text").to_pylist()), normalize=True))
    np.testing.assert_allclose(emb, want, atol=2e-5)


def test_fast_path_stays_within_its_documented_tolerance(tmp_path):
    import anyclip
    from anyclip.embed.decode import decode_item, normalize
    model = anyclip.create_model("anyclip-shapes", "v1")
    cfg = model.preprocess_cfg
    rng = np.random.default_rng(2)
    exif = Image.Exif()
    exif[0x0112] = 8
    exact, fast = [], []
    for i, (h, w) in enumerate([(900, 1300), (1600, 700), (640, 640), (333, 1501), (2000, 1500)]):
        path = tmp_path / f"big{i}.jpg"
        Image.fromarray(_image(rng, h, w)).save(path, quality=90, **({"exif": exif} if i == 1 else {}))
        a, _ = decode_item(("file", str(path)), path.name, cfg)
        b, _ = decode_item(("file", str(path)), path.name, cfg, fast=True)
        assert a.shape == b.shape
        assert np.abs(a.astype(np.int16) - b).mean() <= 1.5, path.name
        exact.append(normalize(a[None], cfg)[0])
        fast.append(normalize(b[None], cfg)[0])
    ea = np.asarray(model.encode_image(np.stack(exact), normalize=True))
    eb = np.asarray(model.encode_image(np.stack(fast), normalize=True))
    assert (ea * eb).sum(axis=1).min() >= 0.99
