"""anyclip on JAX runs with neither torch nor TensorFlow importable (as after `pip install anyclip[jax]`)."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r"""
    import importlib.abc, sys, json

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "tensorflow", "torchvision", "open_clip", "transformers"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    import anyclip
    import anyclip.transforms
    import keras
    from anyclip.weights import save_open_clip_checkpoint, read_state_dict
    cfg = {"embed_dim": 8, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
           "patch_size": 16}, "text_cfg": {"layers": 1, "width": 32, "heads": 2}}
    open(sys.argv[1] + "/tiny.json", "w").write(json.dumps(cfg))
    model = anyclip.create_model(sys.argv[1] + "/tiny.json")
    save_open_clip_checkpoint(model, sys.argv[1] + "/out")
    again = anyclip.create_model("local-dir:" + sys.argv[1] + "/out")
    preprocess = anyclip.transforms.image_transform(again.preprocess_cfg)
    image = preprocess(anyclip.load_image(sys.argv[2]))[None]
    ids = anyclip.get_tokenizer(sys.argv[1] + "/tiny.json")(["a cat"])
    a = keras.ops.convert_to_numpy(model.encode_image(image))
    b = keras.ops.convert_to_numpy(again.encode_image(image))
    try:
        read_state_dict(sys.argv[1] + "/x.bin") if open(sys.argv[1] + "/x.bin", "wb").write(b"x") else None
        torch_message = ""
    except Exception as e:
        torch_message = str(e)
    print(json.dumps({"backend": keras.backend.backend(), "same": bool((a == b).all()),
                      "text": list(keras.ops.convert_to_numpy(again.encode_text(ids)).shape),
                      "torch_loaded": "torch" in sys.modules, "tf_loaded": "tensorflow" in sys.modules,
                      "torch_message": torch_message}))
""")


def test_jax_path_needs_no_torch_or_tensorflow(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path / "keras-home")  # no keras.json: anyclip must pick jax itself
    photo = os.path.join(root, "examples", "images", "cat.jpg")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), photo], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["same"] and result["text"] == [1, 8]
    assert not result["torch_loaded"] and not result["tf_loaded"]
    assert "needs torch" in result["torch_message"]


NO_EMBED_EXTRA = textwrap.dedent(r"""
    import contextlib, importlib.abc, io, json, sys

    class Block(importlib.abc.MetaPathFinder):  # as if anyclip were installed without its [embed] extra
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("pyarrow", "faiss"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import anyclip
    from anyclip.cli import main
    shapes, tmp = sys.argv[1], sys.argv[2]
    import os; os.makedirs(tmp + "/emb"); os.makedirs(tmp + "/idx")  # index and search check their inputs exist
    runs = {"embed": ["embed", shapes, "-o", tmp + "/emb", "--workers", "0"],
            "index": ["index", tmp + "/emb", "-o", tmp + "/idx"],
            "search": ["search", tmp + "/idx", "--text", "a red circle"],
            "classify": ["classify", shapes + "/red-square.png", shapes + "/blue-circle.png", "--labels-file",
                         shapes + "/labels.txt"]}
    result = {}
    for command, args in runs.items():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
        result[command] = {"code": code, "out": out.getvalue(), "err": err.getvalue(), "keras": "keras" in sys.modules}
    result["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("pyarrow", "faiss"))
    print(json.dumps(result))
""")


def test_import_and_classify_need_no_embed_extra_and_embedding_says_what_to_install(tmp_path):
    """Without pyarrow and faiss (``pip install anyclip`` without ``[embed]``): ``import anyclip`` and
    ``anyclip classify`` work; ``embed``, ``index`` and ``search`` stop, before loading a model, naming the extra."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", NO_EMBED_EXTRA, os.path.join(root, "examples", "shapes"),
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for command in ("embed", "index", "search"):
        run = result[command]
        assert run["code"] == 1 and not run["keras"], (command, run)
        assert f"anyclip {command}: error: this needs pyarrow: pip install 'anyclip[embed]'" in run["err"], run["err"]
    assert result["classify"]["code"] == 0, result["classify"]["err"]
    assert "red-square.png" in result["classify"]["out"] and "top1" in result["classify"]["out"]
    assert result["loaded"] == []


def test_import_anyclip_and_the_cli_load_no_keras_until_needed():
    """``import anyclip`` (and ``anyclip --help``) load no Keras; once anything imports Keras, anyclip's classes are
    registered, so ``keras.saving.load_model`` reads anyclip's ``.keras`` files whatever the import order."""
    code = ("import sys, json, anyclip, anyclip.cli; light = 'keras' not in sys.modules; "
            "anyclip.cli.build_parser(); parser_light = 'keras' not in sys.modules; import keras; "
            "registered = keras.saving.get_registered_object('anyclip>CLIP') is anyclip.CLIP; "
            "print(json.dumps([light, parser_light, registered]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [True, True, True]
