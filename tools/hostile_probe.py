"""Hostile-user probe of the anyclip CLI: bad values, damaged files; reports tracebacks and silent outcomes.

Usage: python tools/hostile_probe.py WORKDIR [--jobs 2] [-k substring]   (a manual tool, about 5 minutes; not a test)

Each case runs `python -m anyclip.cli` in WORKDIR (offline) and is judged: a bad input must exit non-zero with no
traceback and one line naming it; a good one must exit 0 with the right output.
"""
import argparse, concurrent.futures as cf, json, os, random, shutil, subprocess, sys, time
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]  # the repository (examples/shapes)


def cli(args, cwd, env=None, timeout=300):
    e = dict(os.environ, HF_HUB_OFFLINE="1", KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"),
             TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    t = time.time()
    p = subprocess.run([PY, "-m", "anyclip.cli", *args], cwd=cwd, env=e, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - t


def setup(w: Path):
    w.mkdir(parents=True, exist_ok=True)
    imgs = w / "imgs"; imgs.mkdir(exist_ok=True)
    for f in (ROOT / "examples/shapes").glob("*.png"):
        shutil.copy(f, imgs)
    (w / "utf8.txt").write_text("red square\nblue circle\n", encoding="utf-8")
    (w / "bom.txt").write_bytes(b"\xef\xbb\xbfred square\r\nblue circle\r\n")
    (w / "cr.txt").write_bytes(b"red square\rblue circle\r")
    (w / "utf16.txt").write_text("red square\nblue circle\n", encoding="utf-16")
    (w / "latin1.txt").write_bytes("red square\ncaf\xe9 circle\n".encode("latin-1"))
    (w / "empty.txt").write_text("")
    (w / "blank.txt").write_text("\n  \n\n")
    (w / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (w / "dup.txt").write_text("cat\ncat\n")
    bad = w / "badimgs"; bad.mkdir(exist_ok=True)
    (bad / "a.png").write_text("not a png"); (bad / "b.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 20)
    (w / "garbage.safetensors").write_bytes(os.urandom(1000))
    (w / "notes.png").write_text("hello")
    rc, out, err, _ = cli(["embed", "imgs", "-o", "emb", "--workers", "0", "--no-progress"], w)
    assert rc == 0, err
    rc, out, err, _ = cli(["index", "emb", "-o", "idx"], w)
    assert rc == 0, err
    rc, out, err, _ = cli(["data", "shapes", "shapescsv", "--format", "csv", "-n", "40", "--split", "val"], w)
    assert rc == 0, err
    for name, damage in [("emb_trunc", "trunc"), ("emb_flip", "flip"), ("emb_manifest_bad", "manifest"),
                         ("emb_manifest_list", "manifest_list"), ("emb_missing", "missing")]:
        d = w / name
        shutil.copytree(w / "emb", d, dirs_exist_ok=True)
        shard = sorted(d.glob("part-*.parquet"))[0]
        if damage == "trunc":
            data = shard.read_bytes(); shard.write_bytes(data[:len(data) // 2])
        elif damage == "flip":
            data = bytearray(shard.read_bytes()); data[len(data) // 3] ^= 0xFF; data[len(data) // 3 + 1] ^= 0xFF
            shard.write_bytes(bytes(data))
        elif damage == "manifest":
            (d / "manifest.json").write_text("{not json")
        elif damage == "manifest_list":
            (d / "manifest.json").write_text("[1, 2, 3]")
        elif damage == "missing":
            shard.unlink()
    for name in ("idx_json", "idx_trunc", "idx_rows"):
        d = w / name
        shutil.copytree(w / "idx", d, dirs_exist_ok=True)
        if name == "idx_json":
            (d / "index.json").write_text("{garbled")
        elif name == "idx_trunc":
            f = [p for p in d.iterdir() if p.suffix in (".faiss", ".index", ".bin")][0]
            f.write_bytes(f.read_bytes()[:100])
        else:
            f = [p for p in d.iterdir() if p.suffix == ".parquet"][0]
            f.write_bytes(f.read_bytes()[:50])
    one = w / "oneclass" / "cat"; one.mkdir(parents=True, exist_ok=True)
    shutil.copy(imgs / "red-square.png", one / "1.png"); shutil.copy(imgs / "blue-circle.png", one / "2.png")
    run = w / "logs" / "emptyrun"; run.mkdir(parents=True, exist_ok=True); (run / "train.jsonl").write_text("")
    (w / "exists.json").write_text("{}")
    (w / "tab.csv").write_text("filepath\ttitle\n" + "".join(f"imgs/{p.name}\ta {p.stem.replace('-', ' ')}\n" for p in sorted(imgs.glob('*.png'))))


# (name, argv, expectation): "fail" = non-zero, no traceback, one stderr line mentioning the token
# ("ok", check) = exit 0 and check(stdout+stderr) true
def cases():
    F = "fail"
    return [
        ("classify top-k -1", ["classify", "imgs/red-square.png", "--labels", "a", "b", "--top-k", "-1"], F, "top-k"),
        ("classify top-k 0", ["classify", "imgs/red-square.png", "--labels", "a", "b", "--top-k", "0"], F, "top-k"),
        ("classify batch 0", ["classify", "imgs/red-square.png", "--labels", "a", "--batch-size", "0"], F, "batch-size"),
        ("classify batch abc", ["classify", "imgs/red-square.png", "--labels", "a", "--batch-size", "abc"], F, "batch-size"),
        ("classify latin1", ["classify", "imgs/red-square.png", "--labels-file", "latin1.txt"], F, "latin1.txt"),
        ("classify labels missing", ["classify", "imgs/red-square.png", "--labels-file", "nope.txt"], F, "nope.txt"),
        ("classify labels dir", ["classify", "imgs/red-square.png", "--labels-file", "imgs"], F, "imgs"),
        ("classify labels empty", ["classify", "imgs/red-square.png", "--labels-file", "empty.txt"], F, "empty.txt"),
        ("classify labels blank", ["classify", "imgs/red-square.png", "--labels-file", "blank.txt"], F, "blank.txt"),
        ("classify labels binary", ["classify", "imgs/red-square.png", "--labels-file", "binary.txt"], F, "binary.txt"),
        ("classify image missing", ["classify", "nope.png", "--labels", "a", "b"], F, "nope.png"),
        ("classify image is text", ["classify", "notes.png", "--labels", "a", "b"], F, "notes.png"),
        ("classify unknown model", ["classify", "imgs/red-square.png", "--labels", "a", "--model", "NoSuchNet"], F, "NoSuchNet"),
        ("classify unknown tag", ["classify", "imgs/red-square.png", "--labels", "a", "--model", "ViT-B-32", "--pretrained", "nosuchtag"], F, "nosuchtag"),
        ("classify precision", ["classify", "imgs/red-square.png", "--labels", "a", "--precision", "fp7"], F, "precision"),
        ("classify ckpt missing", ["classify", "imgs/red-square.png", "--labels", "a", "--checkpoint", "nope.safetensors"], F, "nope.safetensors"),
        ("classify ckpt garbage", ["classify", "imgs/red-square.png", "--labels", "a", "--checkpoint", "garbage.safetensors"], F, "garbage.safetensors"),
        ("classify offline tag", ["classify", "imgs/red-square.png", "--labels", "a", "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k"], F, "HF_HUB_OFFLINE"),
        ("classify dup labels", ["classify", "imgs/red-square.png", "--labels-file", "dup.txt"], F, "cat"),
        ("classify bom", ["classify", "imgs/red-square.png", "--labels-file", "bom.txt"], ("ok", lambda s: "\ufeff" not in s and "red square" in s), None),
        ("classify cr", ["classify", "imgs/red-square.png", "--labels-file", "cr.txt"], ("ok", lambda s: "blue circle" in s and "\r" not in s), None),
        ("classify utf16", ["classify", "imgs/red-square.png", "--labels-file", "utf16.txt"], ("ok", lambda s: "red square" in s), None),
        ("embed max-pixels -5", ["embed", "imgs", "-o", "e1", "--max-pixels", "-5"], F, "max-pixels"),
        ("embed shard-size 0", ["embed", "imgs", "-o", "e2", "--shard-size", "0"], F, "shard-size"),
        ("embed workers -1", ["embed", "imgs", "-o", "e3", "--workers", "-1"], F, "workers"),
        ("embed no inputs", ["embed", "-o", "e4"], F, "embed"),
        ("embed input missing", ["embed", "nope_dir", "-o", "e5"], F, "nope_dir"),
        ("embed text-file latin1", ["embed", "--text-file", "latin1.txt", "-o", "e6"], F, "latin1.txt"),
        ("embed output bad ext", ["embed", "imgs", "-o", "out.txt"], F, "out.txt"),
        ("embed all bad images", ["embed", "badimgs", "-o", "e7", "--workers", "0"], F, "e7"),
        ("embed empty folder", ["embed", "oneclass/none", "-o", "e8"], F, "none"),
        ("embed format bogus", ["embed", "imgs", "-o", "e9", "--format", "csv"], F, "format"),
        ("index trunc", ["index", "emb_trunc", "-o", "i1"], F, "emb_trunc"),
        ("index flip", ["index", "emb_flip", "-o", "i2"], F, "emb_flip"),
        ("index manifest bad", ["index", "emb_manifest_bad", "-o", "i3"], F, "emb_manifest_bad"),
        ("index manifest list", ["index", "emb_manifest_list", "-o", "i4"], F, "emb_manifest_list"),
        ("index shard missing", ["index", "emb_missing", "-o", "i5"], F, "emb_missing"),
        ("index folder missing", ["index", "nope_emb", "-o", "i6"], F, "nope_emb"),
        ("index type bogus", ["index", "emb", "-o", "i7", "--type", "hnsw"], F, "type"),
        ("index exact-below -1", ["index", "emb", "-o", "i8", "--exact-below", "-1"], F, "exact-below"),
        ("index recall 2", ["index", "emb", "-o", "i9", "--target-recall", "2"], F, "target-recall"),
        ("index from text file", ["index", "utf8.txt", "-o", "i10"], F, "utf8.txt"),
        ("search json garbled", ["search", "idx_json", "--text", "a red square"], F, "idx_json"),
        ("search faiss trunc", ["search", "idx_trunc", "--text", "a red square"], F, "idx_trunc"),
        ("search rows trunc", ["search", "idx_rows", "--text", "a red square"], F, "idx_rows"),
        ("search k 0", ["search", "idx", "--text", "x", "-k", "0"], F, "-k"),
        ("search k -3", ["search", "idx", "--text", "x", "-k", "-3"], F, "-k"),
        ("search no query", ["search", "idx"], F, "--text"),
        ("search both queries", ["search", "idx", "--text", "x", "--image", "imgs/red-square.png"], F, "--text"),
        ("search image missing", ["search", "idx", "--image", "nope.png"], F, "nope.png"),
        ("search image is text", ["search", "idx", "--image", "notes.png"], F, "notes.png"),
        ("search index missing", ["search", "nope_idx", "--text", "x"], F, "nope_idx"),
        ("search html bad ext", ["search", "idx", "--text", "x", "--html", "hits.txt"], F, "hits.txt"),
        ("search k large", ["search", "idx", "--text", "red square", "-k", "1000"], ("ok", lambda s: "red-square" in s), None),
        ("search wrong model", ["search", "idx", "--text", "x", "--model", "ViT-B-32"], F, "ViT-B-32"),
        ("eval dataset missing", ["eval", "--dataset", "nope_ds"], F, "nope_ds"),
        ("eval classnames latin1", ["eval", "--dataset", "oneclass", "--classnames", "latin1.txt"], F, "latin1.txt"),
        ("eval batch 0", ["eval", "--dataset", "shapescsv", "--batch-size", "0"], F, "batch-size"),
        ("eval single class", ["eval", "--dataset", "oneclass", "--output", "r1.json"], F, "oneclass"),
        ("eval confusion bad ext", ["eval", "--dataset", "shapescsv", "--confusion-png", "c.txt"], F, "c.txt"),
        ("eval val-fraction 2", ["eval", "--dataset", "shapescsv", "--val-fraction", "2"], F, "val-fraction"),
        ("eval recall-k 0", ["eval", "--dataset", "shapescsv", "--recall-k", "0"], F, "recall-k"),
        ("eval tab csv auto", ["eval", "--dataset", "tab.csv", "--output", "r2.json"], ("ok", lambda s: True), None),
        ("train epochs 0", ["train", "--train-data", "tab.csv", "--epochs", "0"], F, "epochs"),
        ("train lr -1", ["train", "--train-data", "tab.csv", "--lr", "-1"], F, "lr"),
        ("train batch 0", ["train", "--train-data", "tab.csv", "--batch-size", "0"], F, "batch-size"),
        ("train data missing", ["train", "--train-data", "nope.csv"], F, "nope.csv"),
        ("train beta1 1.5", ["train", "--train-data", "tab.csv", "--beta1", "1.5"], F, "beta1"),
        ("train ema-decay 1", ["train", "--train-data", "tab.csv", "--ema", "--ema-decay", "1"], F, "ema-decay"),
        ("train warmup -5", ["train", "--train-data", "tab.csv", "--warmup", "-5"], F, "warmup"),
        ("train resume missing", ["train", "--train-data", "tab.csv", "--batch-size", "2", "--resume", "nope_ckpt"], F, "nope_ckpt"),
        ("train wise-ft bad", ["train", "--train-data", "tab.csv", "--wise-ft", "0.5,2"], F, "wise-ft"),
        ("plot run missing", ["plot", "nope_run"], F, "nope_run"),
        ("plot empty log", ["plot", "logs/emptyrun", "-o", "p.png"], F, "emptyrun"),
        ("plot bad ext", ["plot", "logs/emptyrun", "-o", "p.txt"], F, "p.txt"),
        ("plot dpi 0", ["plot", "logs/emptyrun", "--dpi", "0"], F, "dpi"),
        ("convert ckpt missing", ["convert", "anyclip-shapes", "nope.safetensors", "c1"], F, "nope.safetensors"),
        ("convert bad out ext", ["convert", "anyclip-shapes", "v1", "c1.txt"], F, "c1.txt"),
        ("convert keras to folder", ["convert", "anyclip-shapes", "v1", "c2.json", "--to", "keras"], F, "c2.json"),
        ("eval results exist", ["eval", "--dataset", "shapescsv", "--output", "exists.json"], F, "exists.json"),
        ("eval templates no braces", ["eval", "--dataset", "shapescsv", "--templates", "utf8.txt", "--output", "r3.json"], F, "--templates"),
        ("index output is a file", ["index", "emb", "-o", "utf8.txt"], F, "utf8.txt"),
        ("classify empty label", ["classify", "imgs/red-square.png", "--labels", "a", ""], F, "label"),
        ("embed texts latin1 txt", ["embed", "latin1.txt", "--kind", "text", "-o", "e10"], F, "latin1.txt"),
        ("train wd -1", ["train", "--train-data", "tab.csv", "--wd", "-1"], F, "wd"),
        ("train accum 0", ["train", "--train-data", "tab.csv", "--accum-freq", "0"], F, "accum-freq"),
        ("train keep -2", ["train", "--train-data", "tab.csv", "--keep", "-2"], F, "keep"),
        ("data shapes n 0", ["data", "shapes", "ds0", "-n", "0"], F, "num-samples"),
        ("data shapes n -1", ["data", "shapes", "ds1", "-n", "-1"], F, "num-samples"),
        ("data shapes image-size 0", ["data", "shapes", "ds2", "--image-size", "0"], F, "image-size"),
        ("data shapes shard 0", ["data", "shapes", "ds3", "--shard-size", "0"], F, "shard-size"),
        ("classify template no slot", ["classify", "imgs/red-square.png", "--labels", "a", "b", "--template",
                                       "a photo"], F, "--template"),
        ("classify template two slots", ["classify", "imgs/red-square.png", "--labels", "a", "b", "--template",
                                         "{} and {}"], F, "--template"),
        ("classify repeated --labels", ["classify", "imgs/red-square.png", "--labels", "a", "b", "a"], F, "'a'"),
        ("embed missing file", ["embed", "imgs/red-square.png", "imgs/nope.png", "-o", "e12"], F, "nope.png"),
        ("eval templates on retrieval", ["eval", "--dataset", "shapescsv/val.csv", "--templates", "simple",
                                         "--output", "r5.json"], F, "--templates"),
        ("data shapes out.csv", ["data", "shapes", "ds4.csv", "-n", "4"], F, "ds4.csv"),
        ("eval csv folder", ["eval", "--dataset", "shapescsv", "--output", "r6.json"],
         ("ok", lambda o: "zeroshot_retrieval" in o and "val.csv" in o), None),
    ]


def judge(case, w):
    name, argv, expect, token = case
    try:
        rc, out, err, dt = cli(argv, w)
    except subprocess.TimeoutExpired:
        return name, "TIMEOUT", "", 0
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("WARNING:absl", "I0000", "W0000"))]
    if "Traceback" in err:
        return name, "TRACEBACK", err.strip().splitlines()[-1], dt
    if expect == "fail":
        if rc == 0:
            return name, "EXIT0", (out + err).strip()[-200:], dt
        last = lines[-1] if lines else ""
        if token and token.lower() not in err.lower():
            return name, "UNNAMED", last[:200], dt
        return name, "ok", f"rc={rc} {last[:160]}", dt
    _, check = expect
    if rc != 0:
        return name, "FAILED", (lines[-1] if lines else "")[:200], dt
    return name, ("ok" if check(out + err) else "WRONG"), (out.strip()[-160:]), dt


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir"); ap.add_argument("--jobs", type=int, default=2); ap.add_argument("-k", default="")
    a = ap.parse_args()
    w = Path(a.workdir)
    if not (w / "idx").exists():
        setup(w)
    todo = [c for c in cases() if a.k in c[0]]
    bad = 0
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        for name, verdict, detail, dt in ex.map(lambda c: judge(c, w), todo):
            bad += verdict != "ok"
            print(f"{verdict:10} {dt:5.1f}s  {name:28} {detail}", flush=True)
    print(f"{len(todo) - bad}/{len(todo)} ok")
