"""Host preprocessing equals open_clip's eval transform; loading is safe; the in-graph path is close."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyclip.transforms import ImageLoadError, PreprocessConfig, image_transform, load_image, preprocess_images

ROOT = Path(__file__).resolve().parents[1]


def _photos():
    from skimage import data
    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
              "rocket": data.rocket(), "camera": data.camera()}
    return {k: Image.fromarray(v) for k, v in photos.items()}


PHOTOS = _photos()


def _variants():
    base = PHOTOS["astronaut"]
    out = []
    for name, photo in PHOTOS.items():
        out.append((name, photo))
    out += [
        ("odd", PHOTOS["coffee"].resize((301, 199))),
        ("tall", PHOTOS["chelsea"].resize((97, 251))),
        ("tiny", base.resize((5, 3))),
        ("exact", base.resize((224, 224))),
        ("L", base.convert("L")),
        ("LA", base.convert("LA")),
        ("P", base.convert("P")),
        ("RGBA", _with_alpha(base)),
        ("CMYK", base.convert("CMYK")),
        ("I;16", Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 200))),
        ("1", base.convert("1").resize((123, 77))),
    ]
    return out


def _with_alpha(image):
    rgba = image.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, rgba.width, dtype=np.uint8), (rgba.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


VARIANTS = _variants()
CONFIGS = [
    dict(size=224, resize_mode="shortest", interpolation="bicubic"),
    dict(size=336, resize_mode="shortest", interpolation="bilinear"),
    dict(size=224, resize_mode="squash", interpolation="bicubic"),
    dict(size=224, resize_mode="squash", interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    dict(size=224, resize_mode="longest", interpolation="bicubic"),
    dict(size=224, resize_mode="longest", interpolation="bilinear", fill_color=128),
    dict(size=(256, 192), resize_mode="shortest", interpolation="bicubic"),
    dict(size=(256, 192), resize_mode="longest", interpolation="bicubic", fill_color=128),
    dict(size=(256, 192), resize_mode="squash", interpolation="bilinear"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c['size']}-{c['resize_mode']}-{c['interpolation']}")
def test_host_path_equals_open_clip(cfg):
    from open_clip.transform import image_transform as ref_transform
    ours = image_transform(PreprocessConfig(**cfg))
    ref = ref_transform(cfg["size"], is_train=False, mean=cfg.get("mean"), std=cfg.get("std"),
                        resize_mode=cfg["resize_mode"], interpolation=cfg["interpolation"],
                        fill_color=cfg.get("fill_color", 0))
    for name, image in VARIANTS:
        want = ref(image).permute(1, 2, 0).numpy()
        got = ours(image)
        assert got.shape == want.shape and got.dtype == np.float32, name
        assert np.abs(got - want).max() <= 1e-6, f"{name}: {np.abs(got - want).max()}"


def test_batch_and_paths(tmp_path):
    path = tmp_path / "a.png"
    PHOTOS["coffee"].save(path)
    preprocess = image_transform(size=64)
    batch = preprocess.batch([str(path), PHOTOS["rocket"]])
    assert batch.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(batch[0], preprocess(load_image(path)))
    assert preprocess.batch([]).shape == (0, 64, 64, 3)
    assert "resize_mode='shortest'" in repr(preprocess)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.arange(6 * 4 * 3, dtype=np.uint8).reshape(4, 6, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    loaded = load_image(path)
    assert loaded.size == (4, 6)


@pytest.mark.parametrize("content,match", [
    (None, "file not found"),
    (b"", "empty"),
    (b"hello, I am a text file\n", "not an image"),
    ("truncated", "cannot decode"),
    ("corrupt", "cannot decode|not an image"),
])
def test_bad_files_raise_image_load_error_naming_the_file(tmp_path, content, match):
    path = tmp_path / "input.jpg"
    if content == "truncated":
        buf = io.BytesIO()
        PHOTOS["astronaut"].save(buf, format="JPEG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif content == "corrupt":
        buf = io.BytesIO()
        PHOTOS["astronaut"].save(buf, format="PNG")
        data = bytearray(buf.getvalue())
        data[100:400] = b"\x00" * 300
        path.write_bytes(bytes(data))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=match) as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_decompression_bomb_guard(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (4000, 3000)).save(path)
    with pytest.raises(ImageLoadError, match="exceeds the limit"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path).size == (4000, 3000)


def test_file_objects_and_bytes():
    buf = io.BytesIO()
    PHOTOS["camera"].save(buf, format="PNG")
    assert load_image(buf.getvalue()).size == PHOTOS["camera"].size
    buf.seek(0)
    assert load_image(buf).mode == "L"
    assert not buf.closed  # the caller's file stays open


def test_in_graph_path_close_to_host_path():
    images = [PHOTOS["astronaut"], PHOTOS["coffee"].resize((400, 300))]
    for cfg in (PreprocessConfig(size=224), PreprocessConfig(size=224, resize_mode="squash"),
                PreprocessConfig(size=224, resize_mode="longest", fill_color=128),
                PreprocessConfig(size=(256, 192))):
        host = image_transform(cfg)
        for image in images:
            got = np.asarray(preprocess_images(np.asarray(image), cfg))
            want = host(image)
            assert got.shape == want.shape
            diff = np.abs(got - want)
            assert diff.mean() < 0.05 and diff.max() < 1.0, (cfg, diff.mean(), diff.max())


_BACKEND_SCRIPT = r"""
import json, sys, numpy as np
from anyclip.transforms import PreprocessConfig, preprocess_images, image_transform
from PIL import Image
from skimage import data
image = Image.fromarray(data.coffee())
cfg = PreprocessConfig(size=224)
import keras
x = np.stack([np.asarray(image)] * 2)
out = keras.ops.convert_to_numpy(preprocess_images(x, cfg))
result = {"backend": keras.backend.backend(), "shape": list(out.shape),
          "mean_diff": float(np.abs(out[0] - image_transform(cfg)(image)).mean())}
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2).map(lambda b: preprocess_images(b, cfg))
    result["tf_data"] = float(np.abs(next(iter(ds)).numpy() - out).max())
print(json.dumps(result))
"""


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_in_graph_path_on_other_backends(backend):
    env = {**os.environ, "KERAS_BACKEND": backend}
    proc = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["shape"] == [2, 224, 224, 3]
    assert result["mean_diff"] < 0.05
    if backend == "tensorflow":
        assert result["tf_data"] < 1e-5


def test_in_graph_path_under_jit():
    import jax
    cfg = PreprocessConfig(size=64)
    x = np.asarray(PHOTOS["rocket"].resize((120, 80)))[None]
    eager = np.asarray(preprocess_images(x, cfg))
    jitted = np.asarray(jax.jit(lambda b: preprocess_images(b, cfg))(x))
    np.testing.assert_allclose(jitted, eager, atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="resize_mode"):
        PreprocessConfig(resize_mode="crop")
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessConfig(interpolation="nearest")
    with pytest.raises(ValueError, match="size"):
        PreprocessConfig(size=0)
    with pytest.raises(ValueError, match="mean"):
        PreprocessConfig(mean=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"\[height, width, 3\]"):
        preprocess_images(np.zeros((2, 10, 10, 4), np.uint8), PreprocessConfig(size=8))
