"""Host preprocessing equals open_clip's eval transform; loading is safe; the in-graph path matches it.

TensorFlow is only ever imported in subprocesses (importing it before torchvision segfaults here).
"""

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from anyclip.transforms import (
    OPENAI_DATASET_STD,
    ImageLoadError,
    ImagePreprocessor,
    PreprocessConfig,
    image_transform,
    load_image,
    preprocess_images,
)
from anyclip.transforms.graph import pil_resample_weights
from anyclip.transforms.host import crop_offsets, resize_geometry

ROOT = Path(__file__).resolve().parents[1]
ONE_LEVEL = 1.0 / 255.0 / min(OPENAI_DATASET_STD)  # one 8-bit step in normalised units (~0.0150)
KERAS_RESAMPLER_MAX = ONE_LEVEL + 1e-5  # documented in anyclip/transforms/graph.py
KERAS_RESAMPLER_MEAN = 1e-4


def _photos():
    from skimage import data
    photos = {k: Image.fromarray(getattr(data, k)()) for k in ("astronaut", "coffee", "chelsea", "rocket", "camera")}
    assert photos["camera"].mode == "L"
    return photos


PHOTOS = _photos()


def _with_alpha(image):
    rgba = image.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, rgba.width).astype(np.uint8), (rgba.height, 1))
    alpha[:, : rgba.width // 8] = 0  # a fully transparent band
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def _variants():
    base = PHOTOS["astronaut"]
    gray = np.asarray(base.convert("L"))
    out = list(PHOTOS.items())
    out += [
        ("odd", PHOTOS["coffee"].resize((301, 199))),
        ("tall", PHOTOS["chelsea"].resize((97, 251))),
        ("tiny-3x5", base.resize((5, 3))),
        ("1x1", base.resize((1, 1))),
        ("exact-224", base.resize((224, 224))),
        ("small-upscaled", PHOTOS["rocket"].resize((150, 100))),
        ("L", base.convert("L")),
        ("LA", base.convert("LA")),
        ("P", base.convert("P")),
        ("RGBA", _with_alpha(base)),
        ("RGBA-224", _with_alpha(base.resize((224, 224)))),
        ("CMYK", base.convert("CMYK")),
        ("I;16", Image.fromarray(gray.astype(np.uint16) * 200)),  # values beyond 255: clipped
        ("I", Image.fromarray(gray.astype(np.int32) * 3 - 100)),
        ("F", Image.fromarray(gray.astype(np.float32) / 255.0)),
        ("1", base.convert("1").resize((123, 77))),
        ("YCbCr", PHOTOS["coffee"].convert("YCbCr")),
    ]
    return out


VARIANTS = _variants()
CONFIGS = [
    dict(size=224, resize_mode="shortest", interpolation="bicubic"),
    dict(size=224, resize_mode="shortest", interpolation="bilinear"),
    dict(size=336, resize_mode="shortest", interpolation="bicubic"),
    dict(size=336, resize_mode="shortest", interpolation="bilinear"),
    dict(size=224, resize_mode="squash", interpolation="bicubic"),
    dict(size=336, resize_mode="squash", interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    dict(size=224, resize_mode="longest", interpolation="bicubic"),
    dict(size=336, resize_mode="longest", interpolation="bilinear", fill_color=128),
    dict(size=(256, 192), resize_mode="shortest", interpolation="bicubic"),
    dict(size=(256, 192), resize_mode="shortest", interpolation="bilinear"),  # open_clip uses bicubic here
    dict(size=(256, 192), resize_mode="longest", interpolation="bicubic", fill_color=128),
    dict(size=(256, 192), resize_mode="longest", interpolation="bilinear", fill_color=0),
    dict(size=(256, 192), resize_mode="squash", interpolation="bilinear"),
]


def _cfg_id(c):
    return f"{c['size']}-{c['resize_mode']}-{c['interpolation']}-fill{c.get('fill_color', 0)}"


def _open_clip_transform(cfg):
    from open_clip.transform import image_transform as ref_transform
    return ref_transform(cfg["size"], is_train=False, mean=cfg.get("mean"), std=cfg.get("std"),
                         resize_mode=cfg["resize_mode"], interpolation=cfg["interpolation"],
                         fill_color=cfg.get("fill_color", 0))


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cfg_id)
def test_host_path_equals_open_clip(cfg):
    ours = image_transform(PreprocessConfig(**cfg))
    ref = _open_clip_transform(cfg)
    worst = {}
    for name, image in VARIANTS:
        want = ref(image).permute(1, 2, 0).numpy()
        got = ours(image)
        assert got.shape == want.shape and got.dtype == np.float32, name
        worst[name] = float(np.abs(got - want).max())
    assert max(worst.values()) <= 1e-6, worst


MODES = ("RGB", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1")


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), mode=st.sampled_from(MODES),
       size=st.one_of(st.integers(1, 48), st.tuples(st.integers(1, 48), st.integers(1, 48))),
       resize_mode=st.sampled_from(["shortest", "longest", "squash"]),
       interpolation=st.sampled_from(["bicubic", "bilinear"]), fill=st.sampled_from([0, 128, 255]),
       seed=st.integers(0, 2**16))
def test_host_path_equals_open_clip_random_images(h, w, mode, size, resize_mode, interpolation, fill, seed):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 1024, (h, w), dtype=np.uint16))
    elif mode in ("I", "F"):
        image = image.convert("L").convert(mode)
    else:
        image = image.convert(mode)
    cfg = dict(size=size, resize_mode=resize_mode, interpolation=interpolation, fill_color=fill)
    got = image_transform(PreprocessConfig(**cfg))(image)
    try:
        want = _open_clip_transform(cfg)(image).permute(1, 2, 0).numpy()
    except ValueError as e:  # open_clip's longest mode rounds a side to 0 pixels; we keep 1 (documented)
        assert "must be > 0" in str(e) and resize_mode == "longest", e
        assert got.shape == (*PreprocessConfig(**cfg).hw, 3)
        return
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-6


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000),
       size=st.one_of(st.integers(1, 600), st.tuples(st.integers(1, 600), st.integers(1, 600))),
       mode=st.sampled_from(["shortest", "longest", "squash"]))
def test_geometry_equals_torchvision_and_open_clip(h, w, size, mode):
    from open_clip.transform import ResizeKeepRatio
    from torchvision.transforms.functional import _compute_resized_output_size
    cfg = PreprocessConfig(size=size, resize_mode=mode)
    th, tw = cfg.hw
    (rh, rw), interpolation = resize_geometry(h, w, cfg)

    class _Sized:  # ResizeKeepRatio.get_params only reads .size
        size = (w, h)

    if mode == "squash":
        assert (rh, rw) == (th, tw)
    elif mode == "longest":
        assert [rh, rw] == [max(v, 1) for v in ResizeKeepRatio.get_params(_Sized, (th, tw), 1.0)]
    elif th == tw:
        assert [rh, rw] == _compute_resized_output_size((h, w), [th])
    else:
        assert [rh, rw] == ResizeKeepRatio.get_params(_Sized, (th, tw), 0.0)
        assert interpolation == "bicubic"
    top, left, pad_top, pad_left = crop_offsets(rh, rw, (th, tw))
    if rh >= th:
        assert top == int(round((rh - th) / 2.0)) and pad_top == 0
    else:
        assert top == 0 and pad_top == (th - rh) // 2


def test_batch_paths_arrays_and_repr(tmp_path):
    path = tmp_path / "a.png"
    PHOTOS["coffee"].save(path)
    preprocess = image_transform(size=64)
    batch = preprocess.batch([str(path), path, PHOTOS["rocket"], np.asarray(PHOTOS["camera"])])
    assert batch.shape == (4, 64, 64, 3) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], preprocess(load_image(path)))
    np.testing.assert_array_equal(batch[3], preprocess(PHOTOS["camera"]))
    assert preprocess.batch([]).shape == (0, 64, 64, 3)
    assert repr(preprocess).startswith("Preprocess(size=64, resize_mode='shortest', interpolation='bicubic'")
    assert image_transform({"size": [32, 48], "resize_mode": "squash", "unknown": 1}).cfg.hw == (32, 48)
    with pytest.raises(TypeError, match="uint8"):
        preprocess(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError, match="path, bytes or a binary file"):
        preprocess(12)
    with pytest.raises(ImageLoadError, match="no pixels"):
        preprocess(Image.new("RGB", (0, 5)))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:20, :30] = (255, 0, 0)  # red block top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (40, 60) and loaded.mode == "RGB"  # (width, height): now portrait
    arr = np.asarray(loaded).astype(int)
    assert arr[5, 35, 0] > 200 and arr[5, 5, 0] < 60  # top-left moved to top-right
    assert 0x0112 not in loaded.getexif()


def _jpeg_bytes(image=None, **kwargs):
    buf = io.BytesIO()
    (image or PHOTOS["astronaut"]).save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def _png_bytes(image=None):
    buf = io.BytesIO()
    (image or PHOTOS["coffee"]).save(buf, format="PNG")
    return buf.getvalue()


def _bad_file(tmp_path, kind):
    path = tmp_path / f"input-{kind}.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am a text file\n")
    elif kind == "truncated-jpeg":
        data = _jpeg_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-png":
        data = _png_bytes()
        path = path.with_suffix(".png")
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt-png":
        data = bytearray(_png_bytes())
        data[200:600] = b"\x00" * 400
        path = path.with_suffix(".png")
        path.write_bytes(bytes(data))
    elif kind == "header-only-jpeg":
        path.write_bytes(_jpeg_bytes()[:300])
    return path


@pytest.mark.parametrize("kind,match", [
    ("missing", "file not found"),
    ("directory", "not a regular file"),
    ("empty", "empty"),
    ("text", "not an image"),
    ("truncated-jpeg", "cannot decode"),
    ("truncated-png", "cannot decode"),
    ("corrupt-png", "cannot decode|not an image"),
    ("header-only-jpeg", "cannot decode"),
])
def test_bad_files_raise_image_load_error_naming_the_file(tmp_path, kind, match):
    if kind == "missing":
        path = tmp_path / "does-not-exist.jpg"
    elif kind == "directory":
        path = tmp_path
    else:
        path = _bad_file(tmp_path, kind)
    with pytest.raises(ImageLoadError, match=match) as err:
        load_image(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)
    with pytest.raises(ImageLoadError):  # the transform reports it the same way
        image_transform(size=32)(str(path))


def test_decompression_bomb_guard(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (4000, 3000)).save(path)
    with pytest.raises(ImageLoadError, match="exceeds the limit of 1000000") as err:
        load_image(path, max_pixels=1_000_000)
    assert str(path) in str(err.value)
    assert load_image(path).size == (4000, 3000)
    assert load_image(path, max_pixels=None).size == (4000, 3000)


def test_pil_bomb_tiers(tmp_path, monkeypatch):
    # PIL warns above MAX_IMAGE_PIXELS and refuses above twice that. Our limit replaces the warning tier;
    # the hard tier still stops the image, as an ImageLoadError.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warn_tier, hard_tier = tmp_path / "warn.png", tmp_path / "hard.png"
    Image.new("RGB", (40, 40)).save(warn_tier)
    Image.new("RGB", (50, 50)).save(hard_tier)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(warn_tier).size == (40, 40)
    with pytest.raises(ImageLoadError, match="MAX_IMAGE_PIXELS") as err:
        load_image(hard_tier)
    assert str(hard_tier) in str(err.value)


def test_file_objects_and_bytes():
    data = _png_bytes(PHOTOS["camera"])
    assert load_image(data).size == PHOTOS["camera"].size
    assert load_image(bytearray(data)).mode == "L"
    buf = io.BytesIO(data)
    assert load_image(buf).mode == "L"
    assert not buf.closed  # the caller's file stays open
    with pytest.raises(ImageLoadError, match="<bytes>: empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="^<bytes>: not an image"):
        load_image(b"not an image at all")
    with pytest.raises(TypeError, match="binary"):
        load_image(io.StringIO("abc"))
    with pytest.raises(TypeError):
        load_image(None)


def _seed_files():
    small = PHOTOS["chelsea"].resize((40, 30))
    files = {}
    for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"):
        buf = io.BytesIO()
        small.save(buf, format=fmt)
        files[fmt] = buf.getvalue()
    return files


SEED_FILES = _seed_files()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(SEED_FILES)), cut=st.floats(0.0, 1.0),
       edits=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8))
def test_corrupted_files_never_escape_as_other_errors(fmt, cut, edits):
    data = bytearray(SEED_FILES[fmt])
    for where, value in edits:
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[: max(1, int(cut * len(data)))]) if cut < 0.999 else bytes(data)
    try:
        image = load_image(data)
    except ImageLoadError as e:
        assert str(e).startswith("<bytes>: ")
    else:
        assert image.width > 0 and image.height > 0
        image_transform(size=16)(image)


def test_example_images():
    for name in ("astronaut", "coffee", "cat"):
        path = ROOT / "examples" / "images" / f"{name}.jpg"
        assert path.stat().st_size <= 40_000
        image = load_image(path)
        assert image.mode == "RGB" and max(image.size) <= 320
    assert (ROOT / "examples" / "images" / "README.md").exists()


# ----------------------------------------------------------------------------------------- in-graph path


def test_pil_weights_reproduce_pil_resize():
    rng = np.random.default_rng(0)
    for interpolation, resample in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
        for n_in, n_out in ((640, 224), (100, 301), (7, 3), (3, 7), (2000, 13)):
            row = rng.integers(0, 256, (1, n_in), dtype=np.uint8)
            weights = pil_resample_weights(n_in, n_out, interpolation)
            ours = np.clip((row.astype(np.int64) @ weights + (1 << 21)) >> 22, 0, 255)
            theirs = np.asarray(Image.fromarray(row).resize((n_out, 1), resample))
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{interpolation} {n_in}->{n_out}")


GRAPH_CONFIGS = [PreprocessConfig(size=64), PreprocessConfig(size=(48, 40), interpolation="bilinear"),
                 PreprocessConfig(size=64, resize_mode="longest", fill_color=128),
                 PreprocessConfig(size=(40, 56), resize_mode="squash")]


def _graph_inputs():
    rng = np.random.default_rng(1)
    return {"astronaut": np.asarray(PHOTOS["astronaut"].resize((160, 120))),
            "upscale": np.asarray(PHOTOS["coffee"].resize((45, 30))),
            "noise": rng.integers(0, 256, (37, 91, 3), dtype=np.uint8)}


def test_in_graph_path_equals_host_path_jax():
    import jax
    inputs = list(_graph_inputs().items())
    for i, cfg in enumerate(GRAPH_CONFIGS):
        host = image_transform(cfg)
        for name, image in (inputs[i % len(inputs)], inputs[(i + 1) % len(inputs)]):
            want = host(Image.fromarray(image))
            exact = np.asarray(jax.jit(lambda x: preprocess_images(x, cfg))(image[None]))
            assert exact.shape == (1, *cfg.hw, 3) and exact.dtype == np.float32
            assert np.abs(exact[0] - want).max() <= 1e-6, (cfg, name)
        name, image = inputs[i % len(inputs)]
        close = np.asarray(jax.jit(lambda x: preprocess_images(x, cfg, resampler="keras"))(image))
        diff = np.abs(close - host(Image.fromarray(image)))
        assert diff.max() <= KERAS_RESAMPLER_MAX and diff.mean() <= 5 * KERAS_RESAMPLER_MEAN, (cfg, name)


def test_in_graph_eager_batches_and_extreme_downscale():
    rng = np.random.default_rng(2)
    cfg = PreprocessConfig(size=(6, 10), resize_mode="squash")  # 2400 -> 10 columns: 240x, narrow digits
    noise = rng.integers(0, 256, (2, 7, 2400, 3), dtype=np.uint8)
    got = np.asarray(preprocess_images(noise, cfg))
    want = image_transform(cfg).batch([Image.fromarray(x) for x in noise])
    assert got.shape == (2, 6, 10, 3)
    assert np.abs(got - want).max() <= 1e-6
    single = np.asarray(preprocess_images(noise[0].astype(np.float32), cfg))  # float 0-255, one image
    assert single.shape == (6, 10, 3) and np.abs(single - want[0]).max() <= 1e-6


_BACKEND_SCRIPT = r"""
import json, numpy as np, keras
from PIL import Image
from skimage import data
from anyclip.transforms import PreprocessConfig, ImagePreprocessor, image_transform, preprocess_images
photo = np.asarray(Image.fromarray(data.coffee()).resize((150, 100)))
result = {"backend": keras.backend.backend(), "pil": 0.0, "keras_max": 0.0, "keras_mean": 0.0}
for cfg in (PreprocessConfig(size=64), PreprocessConfig(size=(48, 64), resize_mode="longest", fill_color=128,
                                                        interpolation="bilinear")):
    want = image_transform(cfg, output="numpy")(Image.fromarray(photo))  # HWC numpy on every backend
    out = preprocess_images(np.stack([photo] * 2), cfg)
    result["shape"], result["dtype"] = list(out.shape), str(keras.ops.convert_to_numpy(out).dtype)
    result["pil"] = max(result["pil"], float(np.abs(keras.ops.convert_to_numpy(out)[1] - want).max()))
    close = np.abs(keras.ops.convert_to_numpy(preprocess_images(photo, cfg, resampler="keras")) - want)
    result["keras_max"] = max(result["keras_max"], float(close.max()))
    result["keras_mean"] = max(result["keras_mean"], float(close.mean()))
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices(np.stack([photo] * 3)).batch(2)
    batches = list(ds.map(lambda b: preprocess_images(b, cfg)).as_numpy_iterator())
    singles = list(tf.data.Dataset.from_tensor_slices(np.stack([photo] * 2)).map(ImagePreprocessor(cfg))
                   .as_numpy_iterator())
    result["tf_data"] = max(float(np.abs(b - want).max()) for b in batches + singles)
    result["tf_data_shapes"] = [list(b.shape) for b in batches + singles]
print(json.dumps(result))
"""


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_in_graph_path_on_other_backends(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["shape"] == [2, 48, 64, 3] and result["dtype"] == "float32"
    assert result["pil"] <= 1e-6
    assert result["keras_max"] <= KERAS_RESAMPLER_MAX and result["keras_mean"] <= 5 * KERAS_RESAMPLER_MEAN
    if backend == "tensorflow":
        assert result["tf_data"] <= 1e-6
        assert result["tf_data_shapes"] == [[2, 48, 64, 3], [1, 48, 64, 3], [48, 64, 3], [48, 64, 3]]


def test_image_preprocessor_layer_serialises(tmp_path):
    import keras
    import torchvision  # noqa: F401 -- keras.saving imports tensorflow, which must come after torchvision
    cfg = PreprocessConfig(size=(32, 24), resize_mode="longest", fill_color=128, interpolation="bilinear")
    layer = ImagePreprocessor(cfg, name="prep")
    config = layer.get_config()
    assert config["cfg"]["size"] == (32, 24) and config["resampler"] == "pil"
    json.dumps(config)
    clone = ImagePreprocessor.from_config(json.loads(json.dumps(config)))
    assert clone.cfg == cfg
    inputs = keras.Input((45, 60, 3), dtype="uint8")
    model = keras.Model(inputs, ImagePreprocessor(cfg, name="prep")(inputs))
    assert tuple(model.output.shape) == (None, 32, 24, 3)
    x = np.asarray(PHOTOS["chelsea"].resize((60, 45)))[None]
    want = np.asarray(model(x))
    np.testing.assert_allclose(want[0], image_transform(cfg)(Image.fromarray(x[0])), atol=1e-6)
    model.save(tmp_path / "prep.keras")
    restored = keras.saving.load_model(tmp_path / "prep.keras")
    assert restored.get_layer("prep").cfg == cfg
    np.testing.assert_array_equal(np.asarray(restored(x)), want)
    with pytest.raises(ValueError, match="static"):
        ImagePreprocessor(cfg)(keras.Input((None, None, 3), dtype="uint8"))


def test_validation():
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
    with pytest.raises(ValueError, match="resampler"):
        preprocess_images(np.zeros((10, 10, 3), np.uint8), PreprocessConfig(size=8), resampler="nearest")


# ------------------------------------------------------------------------------------- high bit depth files

def _save(tmp_path, name, array, fmt=None):
    path = tmp_path / name
    Image.fromarray(array).save(path, fmt)
    return path


@pytest.mark.parametrize("name, dtype", [("g16.png", np.uint16), ("g16.tif", np.uint16), ("g16b.tif", ">u2"),
                                         ("g32.tif", np.int32)])
def test_16_bit_files_are_rescaled_not_clipped_to_white(tmp_path, name, dtype):
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64)
    path = _save(tmp_path, name, np.round(ramp).astype(dtype))
    mode = Image.open(path).mode
    assert mode in ("I;16", "I;16B", "I"), mode  # a real high-bit-depth file, as PIL opens it
    image = load_image(path)
    assert image.mode == "L"
    np.testing.assert_array_less(np.abs(np.asarray(image, np.float64) - ramp * 255 / 65535), 0.5 + 1e-9)
    # mid-grey stays mid-grey through the whole transform (open_clip's convert("RGB") makes it white)
    grey = _save(tmp_path, "grey-" + name, np.full((40, 30), 32896, dtype))
    cfg = PreprocessConfig(size=16, mean=(0, 0, 0), std=(1, 1, 1))
    pixels = image_transform(cfg, output="numpy")(grey)
    np.testing.assert_allclose(pixels, 128 / 255, atol=1e-6)
    with Image.open(grey) as raw:
        assert np.asarray(raw.convert("RGB")).min() == 255  # what clipping would have given


def test_float_files_in_0_1_scale_by_255_and_other_ranges_warn_once_and_min_max(tmp_path):
    """0..1 floats are scaled by 255, 0..255 kept, 0..65535 divided by 257; anything else warns and is min-max'd."""
    from anyclip.transforms import depth
    unit = _save(tmp_path, "unit.tif", np.array([[0.0, 0.25, 0.5, 1.0]], np.float32))
    assert Image.open(unit).mode == "F"
    assert list(np.asarray(load_image(unit))[0]) == [0, 64, 128, 255]
    bytes_range = _save(tmp_path, "bytes.tif", np.array([[0.0, 72.0, 128.0, 210.0]], np.float32))
    assert list(np.asarray(load_image(bytes_range))[0]) == [0, 72, 128, 210]  # 0..255 floats kept, not stretched
    words = _save(tmp_path, "words.tif", np.array([[0.0, 257.0, 32896.0, 65535.0]], np.float32))
    assert list(np.asarray(load_image(words))[0]) == [0, 1, 128, 255]
    wide = _save(tmp_path, "wide.tif", np.array([[-10.0, 0.0, 10.0]], np.float32))
    depth._warned = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert list(np.asarray(load_image(wide))[0]) == [0, 128, 255]
        load_image(wide)
    messages = [str(w.message) for w in caught if "min-max" in str(w.message)]
    assert len(messages) == 1 and str(wide) in messages[0] and "-10..10" in messages[0]


def test_embed_decoding_rescales_16_bit_files(tmp_path):
    from anyclip.embed.decode import decode_item
    path = _save(tmp_path, "grey.png", np.full((20, 20), 32896, np.uint16))
    cfg = PreprocessConfig(size=8)
    for fast in (False, True):
        pixels, reason = decode_item(("file", str(path)), str(path), cfg, fast=fast)
        assert reason is None and pixels.shape == (8, 8, 3) and (pixels == 128).all()


def test_pil_images_passed_in_keep_open_clip_clipping_unless_to_8bit():
    from anyclip.transforms import to_8bit
    image = Image.fromarray(np.full((10, 10), 32896, np.uint16))
    cfg = PreprocessConfig(size=4, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(image_transform(cfg, output="numpy")(image), 1.0)  # as open_clip
    np.testing.assert_allclose(image_transform(cfg, output="numpy")(to_8bit(image)), 128 / 255, atol=1e-6)


def test_16_bit_rgb_png_files_keep_their_levels(tmp_path):
    """PIL opens 16-bit RGB PNGs as 8-bit RGB itself (the high byte); load_image keeps that, never white."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    pixels = np.zeros((6, 5, 3), ">u2")
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 32896, 65535, 0
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    path = tmp_path / "rgb16.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 6, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    image = load_image(path)
    assert image.mode == "RGB" and image.getpixel((2, 3)) == (128, 255, 0)
