"""The training transform: torchvision's crop rule and pixels, reproducible randomness, open_clip's wiring."""

import numpy as np
import pytest
import torch
from PIL import Image

import anyclip
from anyclip.transforms import AugmentConfig, PreprocessConfig, TrainTransform, train_transform
from anyclip.transforms.augment import crop_box, resized_crop


def photo(w=300, h=200, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return image.convert(mode)


@pytest.mark.parametrize("box", [(0, 0, 200, 300), (10, 20, 150, 170), (37, 3, 99, 250)])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_pixels_for_a_box_equal_torchvision(box, mode):
    import open_clip
    import torchvision.transforms as T
    import torchvision.transforms.functional as F
    image = photo(mode=mode)
    cfg = PreprocessConfig(size=64)
    transform = TrainTransform(cfg)
    ours = (np.asarray(resized_crop(image, box, (64, 64)).convert("RGB"), np.float32) / np.float32(255)
            - transform._mean) / transform._std
    ref = F.resized_crop(image, *box, [64, 64], interpolation=T.InterpolationMode.BICUBIC)
    ref = T.Compose([open_clip.transform.MaybeConvertMode(), T.ToTensor(),  # open_clip's train pipeline order
                     T.Normalize(cfg.mean, cfg.std)])(ref).permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() <= 1e-6


def test_crop_boxes_follow_the_scale_and_ratio_rule():
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, h, w = crop_box(640, 480, (0.3, 0.9), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + h <= 480 and 0 <= left and left + w <= 640
        assert 0.3 * 0.97 <= h * w / (640 * 480) <= 0.9 * 1.03
        assert 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03


@pytest.mark.parametrize("size", [(2000, 10), (10, 2000), (100, 100)])
def test_fallback_crop_equals_torchvision(size):
    import torchvision.transforms as T
    # scale (1, 1) on a very elongated image: no random box fits, both fall back to the same centred crop
    torch.manual_seed(0)
    expected = T.RandomResizedCrop.get_params(Image.new("RGB", size), [1.0, 1.0], [3 / 4, 4 / 3])
    if size == (100, 100):
        assert crop_box(*size, (1.0, 1.0), (1.0, 1.0), np.random.default_rng(0)) == (0, 0, 100, 100)
    else:
        assert crop_box(*size, (1.0, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0)) == tuple(expected)


def test_randomness_is_seeded_and_per_call_generators_decide():
    image = photo()
    t = train_transform(size=32, augment={"scale": [0.2, 0.5]}, seed=1)
    a, b = t(image), t(image)
    assert not np.array_equal(a, b)  # a new crop each call
    again = train_transform(size=32, augment={"scale": [0.2, 0.5]}, seed=1)
    np.testing.assert_array_equal(again(image), a)
    x = t(image, rng=np.random.default_rng([5, 0]))
    np.testing.assert_array_equal(again(image, rng=np.random.default_rng([5, 0])), x)


def test_grayscale_and_jitter():
    image = photo()
    cfg = PreprocessConfig(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    gray = TrainTransform(cfg, AugmentConfig(gray_scale_prob=1.0), seed=0)(image)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    plain = TrainTransform(cfg, AugmentConfig(), seed=0)(image)
    jittered = TrainTransform(cfg, AugmentConfig(color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=1.0), seed=0)(image)
    assert jittered.shape == plain.shape and not np.allclose(jittered, plain)


@pytest.mark.parametrize("kwargs,match", [
    ({"scale": (0.0, 1.0)}, "scale"), ({"scale": (0.9, 0.5)}, "scale"), ({"ratio": (2.0, 1.0)}, "ratio"),
    ({"gray_scale_prob": 1.5}, "gray_scale_prob"), ({"color_jitter_prob": 0.5}, "color_jitter"),
])
def test_bad_augment_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)


def test_create_model_and_transforms_returns_the_train_transform(tmp_path):
    _, train, val = anyclip.create_model_and_transforms("ViT-S-32", load_weights=False)
    assert isinstance(train, TrainTransform) and train.cfg == val.cfg
    with pytest.raises(anyclip.ImageLoadError):
        train(b"not an image")
