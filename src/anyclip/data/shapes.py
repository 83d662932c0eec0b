"""Synthetic shapes: procedural images of coloured shapes with captions and labels, for tutorials and smoke tests.

A sample is one to ``max_count`` copies of one shape in one colour on a background, a caption from varied
templates and structured labels. Chosen colour-shape pairs are held out of ``train`` (they alone make up
``test_heldout``). Sample ``i`` depends only on ``(seed, split, i)``, whatever the workers or order.

Example:
    >>> ds = ShapesDataset(ShapesConfig(seed=0), "train", 1000)
    >>> image, caption, labels = ds[0]  # PIL image, "two small blue squares", {"shape": "square", ...}
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw

COLOURS = MappingProxyType({
    "red": (215, 25, 25), "orange": (245, 130, 10), "yellow": (250, 230, 40), "green": (30, 160, 60),
    "blue": (30, 80, 230), "purple": (130, 40, 180), "white": (250, 250, 250), "black": (15, 15, 15),
    "pink": (250, 130, 190), "brown": (130, 80, 35), "cyan": (30, 200, 220)})
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond", "heart", "ellipse", "pentagon")
PLAIN_BACKGROUNDS = MappingProxyType({"grey": (128, 128, 128), "light grey": (200, 200, 200),
                                      "dark grey": (70, 70, 70), "beige": (225, 210, 175)})
BACKGROUNDS = (*PLAIN_BACKGROUNDS, "gradient", "noise")  # gradient/noise use the plain colours as bases
SIZES = MappingProxyType({"small": 0.25, "medium": 0.34, "large": 0.44})  # object extent / image side
POSITIONS = MappingProxyType({  # object centre / image side, when there is one object
    "centre": (0.5, 0.5), "left": (0.28, 0.5), "right": (0.72, 0.5), "top": (0.5, 0.28), "bottom": (0.5, 0.72),
    "top left": (0.28, 0.28), "top right": (0.72, 0.28), "bottom left": (0.28, 0.72), "bottom right": (0.72, 0.72)})
SPLITS = ("train", "val", "test", "test_heldout")
DEFAULT_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
DEFAULT_HELD_OUT = (("red", "triangle"), ("blue", "star"), ("green", "heart"), ("yellow", "hexagon"),
                    ("purple", "square"), ("orange", "cross"))
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
MIN_CONTRAST = 100.0  # least RGB distance between an object colour and a background colour
LABEL_KEYS = ("shape", "colour", "count", "size", "position", "background")
_FRAMES = ("{}", "{}.", "a photo of {}", "a photo of {}.", "an image of {}", "a picture of {}",
           "a drawing of {}", "a rendering of {}", "a simple drawing of {}", "there {be} {}")
_PLACES = MappingProxyType({"centre": "in the centre", "left": "on the left", "right": "on the right",
                            "top": "at the top", "bottom": "at the bottom"})
_GRID = ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))  # cell centres when count > 1


def _an(text: str) -> str:  # "a orange" -> "an orange"
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


_NEUTRALS = MappingProxyType({  # colour -> the plain backgrounds that contrast with it
    c: tuple(b for b, bg in PLAIN_BACKGROUNDS.items() if np.linalg.norm(np.subtract(bg, rgb)) >= MIN_CONTRAST)
    for c, rgb in COLOURS.items()})


@dataclass(frozen=True)
class ShapesConfig:
    """What a shapes dataset contains, validated on construction (a ``ValueError`` names the bad field).

    ``held_out``: ``(colour, shape)`` pairs kept out of training (``None``: those of ``DEFAULT_HELD_OUT``).

    Example:
        >>> ShapesConfig(image_size=64, max_count=2, held_out=[("red", "triangle")], seed=1).held_out
        (('red', 'triangle'),)
    """

    image_size: int = 64
    shapes: tuple = SHAPES[:8]
    colours: tuple = DEFAULT_COLOURS
    sizes: tuple = tuple(SIZES)
    max_count: int = 3
    held_out: tuple | None = None
    backgrounds: tuple = BACKGROUNDS
    colour_jitter: int = 12
    seed: int = 0

    def __post_init__(self):
        for field, lo, hi in (("image_size", 16, 1024), ("max_count", 1, 4), ("colour_jitter", 0, 64),
                              ("seed", 0, 2**63 - 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise ValueError(f"{field} must be an integer in [{lo}, {hi}], got {value!r}")
            object.__setattr__(self, field, int(value))
        for field, known in (("shapes", SHAPES), ("colours", COLOURS), ("sizes", SIZES), ("backgrounds", BACKGROUNDS)):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, Sequence) or not value or len(set(value)) != len(value):
                raise ValueError(f"{field} must be a non-empty sequence without duplicates, got {value!r}")
            if unknown := [v for v in value if v not in known]:
                raise ValueError(f"{field}: unknown name {unknown[0]!r}; choose from {', '.join(known)}")
            object.__setattr__(self, field, tuple(value))
        held = self.held_out if self.held_out is not None else [
            p for p in DEFAULT_HELD_OUT if p[0] in self.colours and p[1] in self.shapes]
        try:
            held = tuple(dict.fromkeys((c, s) for c, s in held))  # drops duplicates, keeps order
        except (TypeError, ValueError):
            raise ValueError(f"held_out must be a sequence of (colour, shape) pairs, got {held!r}") from None
        for c, s in held:
            if c not in self.colours or s not in self.shapes:
                raise ValueError(f"held_out: {(c, s)!r} is not a (colour, shape) pair of the configured colours "
                                 f"{self.colours} and shapes {self.shapes}")
        object.__setattr__(self, "held_out", held)
        seen = self.combinations("train")
        for field, k in (("colours", 0), ("shapes", 1)):
            if missing := sorted(set(getattr(self, field)) - {p[k] for p in seen}):
                raise ValueError(f"held_out leaves no training example of {field} {missing}")
        if bad := [c for c in self.colours if not self._backgrounds_for(c)]:
            raise ValueError(f"backgrounds: none of {self.backgrounds} contrasts with colour {bad[0]!r}")

    @classmethod
    def from_dict(cls, data: dict) -> ShapesConfig:
        """The config stored as JSON (``info.json``'s ``"config"``): lists become tuples, unknown keys are errors.

        Example:
            >>> ShapesConfig.from_dict({"max_count": 2, "held_out": [["red", "triangle"]]}).held_out
            (('red', 'triangle'),)
        """
        if not isinstance(data, dict):
            raise ValueError(f"a shapes config must be a JSON object, got {type(data).__name__}")
        if unknown := sorted(set(data) - {f.name for f in fields(cls)}):
            raise ValueError(f"unknown shapes config keys {unknown}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if isinstance(data.get("held_out"), list):
            values["held_out"] = tuple(tuple(p) if isinstance(p, list) else p for p in data["held_out"])
        return cls(**values)

    @classmethod
    def near(cls, data_path: str | os.PathLike) -> ShapesConfig | None:
        """The config in the ``info.json`` that :func:`make_shapes` wrote beside ``data_path`` (a CSV, a
        shard pattern or their folder), or ``None`` when there is none.

        Example:
            >>> ShapesConfig.near("data/shapes/train/train.csv")  # doctest: +SKIP
            ShapesConfig(image_size=64, ...)
        """
        base = Path(str(data_path).split("::")[0].split("{")[0])
        for folder in (base, base.parent):
            info = folder / "info.json"
            if folder.is_dir() and info.is_file():
                try:
                    config = json.loads(info.read_text(encoding="utf-8")).get("config")
                    return cls.from_dict(config) if config else None
                except (ValueError, AttributeError) as e:
                    raise ValueError(f"{info}: not a shapes info.json ({e})") from None
        return None

    def combinations(self, split: str = "train") -> tuple:
        """``(colour, shape)`` pairs of a split (held-out ones only in ``test_heldout``): ``combinations("test")``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        held = set(self.held_out)
        return tuple((c, s) for c in self.colours for s in self.shapes if ((c, s) in held) == (split == SPLITS[3]))

    def _backgrounds_for(self, colour: str) -> tuple:  # configured backgrounds that contrast with colour
        ok = _NEUTRALS[colour]
        return tuple(b for b in self.backgrounds if b in ok or (b not in PLAIN_BACKGROUNDS and ok))


def _outline(shape: str) -> np.ndarray:
    """``[n, 2]`` outline points (y up), centred on the bounding box, largest half-extent 1, read-only."""
    t, a = np.linspace(0, 2 * np.pi, 64, endpoint=False), 0.32  # a: half-width of a cross arm
    k = {"triangle": 3, "pentagon": 5, "hexagon": 6, "star": 10}.get(shape, 4)  # regular polygons and the star
    ang = np.deg2rad((0.0 if shape == "hexagon" else 90.0) + 360.0 * np.arange(k) / k)
    ngon = np.stack([np.cos(ang), np.sin(ang)], 1) * np.where(np.arange(k) % 2 & (k == 10), 0.45, 1.0)[:, None]
    p = {"circle": np.stack([np.cos(t), np.sin(t)], 1), "ellipse": np.stack([np.cos(t), 0.55 * np.sin(t)], 1),
         "square": np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]),
         "diamond": np.array([[0.0, 1.0], [0.62, 0.0], [0.0, -1.0], [-0.62, 0.0]]),
         "cross": np.array([[-a, 1], [a, 1], [a, a], [1, a], [1, -a], [a, -a], [a, -1], [-a, -1], [-a, -a], [-1, -a],
                            [-1, a], [-a, a]]),
         "heart": np.stack([16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t)
                            - np.cos(4 * t)], 1),
         }.get(shape, ngon)
    p = p - (p.max(0) + p.min(0)) / 2
    p = p / np.abs(p).max()
    p.setflags(write=False)
    return p


_OUTLINES = MappingProxyType({s: _outline(s) for s in SHAPES})


def _background(kind: str, colour: str, rng: np.random.Generator, n: int) -> Image.Image:
    if kind in PLAIN_BACKGROUNDS:
        return Image.new("RGB", (n, n), tuple(np.add(PLAIN_BACKGROUNDS[kind], rng.integers(-8, 9)).tolist()))
    bases = np.asarray([PLAIN_BACKGROUNDS[b] for b in _NEUTRALS[colour]], np.float32)
    base = bases[rng.integers(len(bases))]
    if kind == "noise":
        out = base + rng.normal(0.0, 10.0, (n, n, 1)).astype(np.float32)
    else:  # linear gradient between two contrasting plain colours, in a random direction
        other, theta = bases[rng.integers(len(bases))], rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:n, 0:n].astype(np.float32)
        ramp = x * np.cos(theta) + y * np.sin(theta)
        out = base + (other - base) * ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))[..., None]
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def _render(cfg: ShapesConfig, labels: dict, rng: np.random.Generator, supersample: int = 4) -> Image.Image:
    n, ss, count = cfg.image_size, supersample, labels["count"]
    image = _background(labels["background"], labels["colour"], rng, n)
    mask = Image.new("L", (n * ss, n * ss), 0)
    draw, unit = ImageDraw.Draw(mask), _OUTLINES[labels["shape"]]
    cells = [POSITIONS[labels["position"]]] if count == 1 else [_GRID[k] for k in rng.permutation(4)[:count]]
    for cell in cells:
        a = math.radians(rng.uniform(-12.0, 12.0))  # small rotations only: a 45-degree square is a diamond
        r = SIZES[labels["size"]] * n / 2 * rng.uniform(0.92, 1.06)
        pts = unit @ np.array([[math.cos(a) * r, -math.sin(a) * r], [-math.sin(a) * r, -math.cos(a) * r]])  # y down
        if count > 1:  # fit the object's own quarter of the image
            pts = pts * min(1.0, (n / 2 - 1) / float(np.ptp(pts, 0).max()))
        lo, hi, centre = pts.min(0), pts.max(0), np.asarray(cell) * n
        if count == 1:  # jitter around the named position, inside the image
            c = np.clip(centre + rng.uniform(-0.04, 0.04, 2) * n, 1 - lo, n - 1 - hi)
        else:  # anywhere in its quarter
            low, high = centre - n / 4 - lo, centre + n / 4 - hi
            c = np.where(low < high, low + rng.random(2) * (high - low), centre)
        draw.polygon(((pts + c) * ss).ravel().tolist(), fill=255)
    alpha = mask.reduce(ss)  # box-filtered supersampling = anti-aliasing
    return Image.composite(Image.new("RGB", (n, n), tuple(labels["rgb"])), image, alpha)


def _caption(labels: dict, rng: np.random.Generator) -> str:
    count, colour, shape = labels["count"], labels["colour"], labels["shape"]
    noun = shape if count == 1 else shape + ("es" if shape.endswith("s") else "s")
    det = ("one" if rng.random() < 0.15 else "a") if count == 1 else NUMBER_WORDS[count]
    size = labels["size"] if rng.random() < 0.4 else None
    words = (det, size, noun, "in", colour) if rng.random() < 0.15 else (det, size, colour, noun)
    phrase = " ".join(w for w in words if w)
    if labels["position"] is not None and rng.random() < 0.4:
        phrase += " " + _PLACES.get(labels["position"], f"in the {labels['position']}")
    if rng.random() < 0.3:
        phrase += " on a " + {"noise": "noisy"}.get(labels["background"], labels["background"]) + " background"
    frame = _FRAMES[rng.integers(len(_FRAMES))]
    return _an(frame.format(phrase, be="is" if count == 1 else "are"))


class ShapesDataset(Sequence):
    """``size`` deterministic samples of a split; ``ds[i]`` is ``(PIL.Image, caption, labels)``.

    ``labels``: ``LABEL_KEYS`` (``position`` is ``None`` when count > 1) and ``rgb``, the drawn colour.

    Example:
        >>> image, caption, labels = ShapesDataset(ShapesConfig(seed=3), "test_heldout", 100)[0]
        >>> (labels["colour"], labels["shape"]) in ShapesConfig().held_out
        True
    """

    def __init__(self, config: ShapesConfig | None = None, split: str = "train", size: int = 1000):
        self.config = ShapesConfig() if config is None else config
        if not isinstance(self.config, ShapesConfig):
            raise TypeError(f"config must be a ShapesConfig, got {type(config).__name__}")
        self.combinations = self.config.combinations(split)
        if not self.combinations:
            raise ValueError(f"split {split!r} has no (colour, shape) combinations; set ShapesConfig.held_out")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"size must be a non-negative integer, got {size!r}")
        self.split, self.size = split, int(size)
        self._backgrounds = {c: self.config._backgrounds_for(c) for c in self.config.colours}

    def __len__(self) -> int:
        return self.size

    def describe(self, i: int) -> tuple[str, dict]:
        """Caption and labels of sample ``i``, without drawing it: ``caption, labels = ds.describe(3)``."""
        return self._describe(i)[:2]

    def _describe(self, i: int) -> tuple[str, dict, np.random.Generator]:
        if not -self.size <= operator.index(i) < self.size:
            raise IndexError(f"index {i} out of range for {self.size} samples")
        cfg, rng = self.config, np.random.default_rng([self.config.seed, SPLITS.index(self.split), int(i) % self.size])
        colour, shape = self.combinations[rng.integers(len(self.combinations))]
        count = int(rng.integers(1, cfg.max_count + 1))
        size = cfg.sizes[rng.integers(len(cfg.sizes))]
        position = tuple(POSITIONS)[rng.integers(len(POSITIONS))] if count == 1 else None
        background = self._backgrounds[colour][rng.integers(len(self._backgrounds[colour]))]
        jitter = rng.integers(-cfg.colour_jitter, cfg.colour_jitter + 1, 3)
        rgb = [int(v) for v in np.clip(np.add(COLOURS[colour], jitter), 0, 255)]
        labels = dict(zip((*LABEL_KEYS, "rgb"), (shape, colour, count, size, position, background, rgb), strict=True))
        return _caption(labels, rng), labels, rng

    def __getitem__(self, i):
        caption, labels, rng = self._describe(i)  # drawing continues the random stream
        return _render(self.config, labels, rng), caption, labels


def _prompt(template: str, classname: str) -> str:
    return _an(template.format(classname))


@dataclass(frozen=True)
class ZeroShotTask:
    """A zero-shot task: class names, prompt templates (callables), split to score, labels that give the class.

    Example:
        >>> task = zero_shot_tasks()["shape"]
        >>> task.classnames[task.target({"shape": "star", "colour": "red"})]
        'star'
    """

    name: str
    classnames: tuple
    templates: tuple
    label_keys: tuple
    split: str

    def target(self, labels: dict) -> int:
        """Class index of a sample from its labels: ``task.target({"shape": "star", "colour": "red"})``."""
        return self.classnames.index(" ".join(str(labels[k]) for k in self.label_keys))


def zero_shot_tasks(config: ShapesConfig | None = None) -> dict:
    """Tasks ``shape`` and ``colour`` (on ``test``; prompts ensembled over the other attribute) and
    ``combination`` (every colour-shape pair as a class, on ``test_heldout``).

    Example:
        >>> tasks = zero_shot_tasks(ShapesConfig())
        >>> tasks["combination"].split, tasks["colour"].templates[0]("orange")
        ('test_heldout', 'an orange circle')
    """
    cfg = ShapesConfig() if config is None else config
    frames = ("a {}", "a photo of a {}", "a drawing of a {}")
    def task(name, classnames, words, keys, split):
        templates = tuple(partial(_prompt, f.format(w)) for w in words for f in frames)
        return ZeroShotTask(name, tuple(classnames), templates, keys, split)
    return {"shape": task("shape", cfg.shapes, [f"{c} {{}}" for c in cfg.colours], ("shape",), "test"),
            "colour": task("colour", cfg.colours, [f"{{}} {s}" for s in cfg.shapes], ("colour",), "test"),
            "combination": task("combination", [f"{c} {s}" for c in cfg.colours for s in cfg.shapes], ["{}"],
                                ("colour", "shape"), SPLITS[3])}
