"""Argument types for every ``anyclip`` command: values are checked once, by their declared type, at parse time.

Each function takes the command-line text and returns the value, or raises :class:`argparse.ArgumentTypeError`,
which argparse prints as one line naming the option, followed by exit status 2.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="anyclip classify")
    >>> _ = parser.add_argument("--batch-size", type=positive_int, default=32)
    >>> parser.parse_args(["--batch-size", "8"]).batch_size
    8
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable

__all__ = [
    "batch_or_dynamic", "dir_or_keyword", "existing_dir", "existing_file", "existing_path", "file_or_keyword",
    "float_range", "fraction", "int_range", "non_negative_float", "non_negative_int", "open_fraction", "output_file",
    "output_target", "positive_float", "positive_int", "prompt_template", "separator",
]


def _number(text: str, kind: type, expected: str):
    if not text.isascii() or "_" in text:  # Python's int() also reads "٣" and "1_0"; a command line should not
        raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1 (batch sizes, counts, top-k).

    Example:
        >>> positive_int("4")
        4
    """
    value = _number(text, int, "a whole number of at least 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def batch_or_dynamic(text: str) -> str | int:
    """``dynamic`` (any batch size) or a fixed batch size of at least 1 (``anyclip export --batch``).

    Example:
        >>> batch_or_dynamic("dynamic"), batch_or_dynamic("8")
        ('dynamic', 8)
    """
    if text == "dynamic":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'dynamic' nor a whole number of at least 1") from None


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (0 often meaning "none" or "off").

    Example:
        >>> non_negative_int("0")
        0
    """
    value = _number(text, int, "a whole number of at least 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return value


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A type for integers in ``[low, high]`` (``high=None``: no upper bound).

    Example:
        >>> int_range(1, 10)("10")
        10
    """
    expected = f"a whole number from {low} to {high}" if high is not None else f"a whole number of at least {low}"

    def parse(text: str) -> int:
        value = _number(text, int, expected)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
        return value
    parse.__name__ = f"int_range({low}, {high})"
    return parse


def positive_float(text: str) -> float:
    """A finite number above 0 (learning rates, temperatures, seconds).

    Example:
        >>> positive_float("1e-4")
        0.0001
    """
    value = _number(text, float, "a number above 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (weight decay, label smoothing, warm-up).

    Example:
        >>> non_negative_float("0")
        0.0
    """
    value = _number(text, float, "a number of at least 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of at least 0")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (ratios, recall targets, dropout).

    Example:
        >>> fraction("0.97")
        0.97
    """
    value = _number(text, float, "a number from 0 to 1")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1")
    return value


def open_fraction(text: str) -> float:
    """A number in [0, 1) (Adam betas, EMA decay: 1 would never move).

    Example:
        >>> open_fraction("0.999")
        0.999
    """
    value = _number(text, float, "a number from 0 up to (not including) 1")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 up to (not including) 1")
    return value


def float_range(low: float, high: float, *, include_low: bool = True, include_high: bool = True
                ) -> Callable[[str], float]:
    """A type for finite numbers between ``low`` and ``high`` (each end included or not).

    Example:
        >>> float_range(0, 1, include_low=False, include_high=False)("0.2")
        0.2
    """
    expected = (f"a number {'from' if include_low else 'above'} {low:g} "
                f"{'to' if include_high else 'and below'} {high:g}")

    def parse(text: str) -> float:
        value = _number(text, float, expected)
        if value < low or value > high or (value == low and not include_low) or (value == high and not include_high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
        return value
    parse.__name__ = f"float_range({low}, {high})"
    return parse


def _path_or_keyword(check: Callable[[str], str], keywords: tuple, name: str) -> Callable[[str], str]:
    """A type accepting ``keywords`` (when no such path exists) or what ``check`` accepts."""
    def parse(text: str) -> str:
        if text in keywords and not os.path.exists(text):
            return text
        try:
            return check(text)
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{e} (or give one of: {', '.join(keywords)})") from None
    parse.__name__ = f"{name}{keywords}"
    return parse


def file_or_keyword(*keywords: str) -> Callable[[str], str]:
    """A type for an existing file, or one of ``keywords`` (``--classnames imagenet``).

    Example:
        >>> file_or_keyword("imagenet")("imagenet")
        'imagenet'
    """
    return _path_or_keyword(existing_file, keywords, "file_or_keyword")


def separator(text: str) -> str:
    """A CSV separator: one character, ``tab`` or ``\\t`` (a tab), or ``auto`` (told from the header line).

    Example:
        >>> separator(";"), separator("tab")
        (';', 'tab')
    """
    if len(text) != 1 and text not in ("tab", "\\t", "auto"):
        raise argparse.ArgumentTypeError(f"{text!r} is not one character (or tab, or auto)")
    return text


def dir_or_keyword(*keywords: str) -> Callable[[str], str]:
    """A type for an existing folder, or one of ``keywords`` (``--resume latest``).

    Example:
        >>> dir_or_keyword("latest")("latest")
        'latest'
    """
    return _path_or_keyword(existing_dir, keywords, "dir_or_keyword")


def existing_file(text: str) -> str:
    """The path of a file that exists (not a folder).

    Example:
        >>> existing_file(__file__) == __file__
        True
    """
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file")
    return os.fspath(path)


def existing_dir(text: str) -> str:
    """The path of a folder that exists.

    Example:
        >>> existing_dir(os.path.dirname(__file__)) == os.path.dirname(__file__)
        True
    """
    path = Path(os.path.expanduser(text))
    if path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: no such folder")
    return os.fspath(path)


def existing_path(text: str) -> str:
    """The path of a file or folder that exists.

    Example:
        >>> existing_path(__file__) == __file__
        True
    """
    path = Path(os.path.expanduser(text))
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file or folder")
    return os.fspath(path)


def output_file(*suffixes: str) -> Callable[[str], str]:
    """A type for a file to write whose name ends with one of ``suffixes`` and that is not a folder.

    Example:
        >>> output_file(".png", ".pdf")("curves.png")
        'curves.png'
    """
    def parse(text: str) -> str:
        if not _ends_with(text, suffixes):
            raise argparse.ArgumentTypeError(f"{text!r}: the file name must end with {' or '.join(suffixes)}")
        if Path(text).is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
        return text
    parse.__name__ = f"output_file{suffixes}"
    return parse


def _ends_with(text: str, suffixes) -> str | None:
    """The first of ``suffixes`` that ``text`` ends with (case-insensitive, trailing slashes ignored), or None."""
    lower = text.lower().rstrip("/" + os.sep)
    return next((s for s in suffixes if lower.endswith(s.lower())), None)


# Names that end like these are files to a user: an output folder named ``out.txt`` is almost surely a mistake.
FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".npy", ".npz", ".parquet", ".arrow",
                 ".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".h5", ".keras", ".onnx", ".tflite", ".pb",
                 ".tar", ".gz", ".zip", ".jpg", ".jpeg", ".png", ".webp", ".gif", ".html", ".pdf", ".svg", ".log")


def output_target(*file_suffixes: str) -> Callable[[str], str]:
    """A type for an output that is a folder, or a file whose name ends with one of ``file_suffixes``.

    A name ending in another file extension (``out.txt`` where a folder is meant) is refused, and so is an
    existing folder named like one of the accepted files.

    Example:
        >>> output_target(".npy", ".parquet")("emb/"), output_target(".npy")("emb.npy")
        ('emb/', 'emb.npy')
    """
    def parse(text: str) -> str:
        if not text.rstrip("/" + os.sep):
            raise argparse.ArgumentTypeError(f"{text!r}: give a folder name")
        accepted = _ends_with(text, file_suffixes)
        if accepted:
            if Path(text).is_dir():
                raise argparse.ArgumentTypeError(f"{text!r} is a folder; a name ending in {accepted} means a file: "
                                                 f"give another name")
            return text
        looks_like = _ends_with(text, FILE_SUFFIXES)
        if looks_like:
            wanted = f"a folder, or a file ending in {' or '.join(file_suffixes)}" if file_suffixes else "a folder"
            raise argparse.ArgumentTypeError(f"{text!r} looks like a {looks_like} file; the output is {wanted}")
        if Path(text).is_file():
            raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder")
        return text
    parse.__name__ = f"output_target{file_suffixes}"
    return parse


def prompt_template(text: str) -> str:
    """A prompt template holding the class-name slot ``{}`` (or clip_benchmark's ``{c}``) once and no other braces.

    Example:
        >>> prompt_template("itap of a {c}.")
        'itap of a {}.'
    """
    template = text.replace("{c}", "{}")
    try:
        ok = template.count("{}") == 1 and bool(template.format("x").strip())
    except (IndexError, KeyError, ValueError):
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"template {text!r} must hold the class-name slot {{}} (or {{c}}) exactly "
                                         "once and no other braces, e.g. 'a photo of a {}.'")
    return template
