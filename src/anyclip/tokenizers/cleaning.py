"""Text cleaning as open_clip does it before tokenizing, with a shortcut for plain ASCII text.

open_clip's cleaning functions:

* ``basic``: ``ftfy.fix_text``, then ``html.unescape`` twice, then strip;
* ``whitespace``: basic, then runs of white space become one space;
* ``lower``: whitespace, then lower case (CLIP's);
* ``canonicalize``: basic, then big_vision's canonical form (``_`` to space, ASCII punctuation removed,
  lower case, single spaces).

The shortcut: ``ftfy.fix_text`` and ``html.unescape`` return text made only of printable ASCII other than
``&`` (plus tab, line feed and carriage return) unchanged, but for line breaks: HTML unescaping needs an
``&``; ftfy's other steps act on mojibake and other non-ASCII characters (quotes, ligatures, full-width
forms, C1 controls, surrogates, NFC), on ESC terminal sequences and on ASCII control characters (it
deletes ``\\x00``-``\\x08``, ``\\x0b``, ``\\x0e``-``\\x1f`` and ``\\x7f``); its line-break step only rewrites
``\\r``. Every white-space character becomes a single space in all three cleanings, so for such text the
cleanings reduce to white-space collapsing (and case / punctuation changes), skipping ftfy.
"""

from __future__ import annotations

import html
import string
from functools import lru_cache
from typing import Callable, Iterable

import ftfy

__all__ = ["as_text_list", "basic_clean", "canonicalize_text", "clean_lower", "clean_whitespace",
           "clean_canonicalize", "get_clean_fn", "is_plain"]

# Bytes of the text that may skip ftfy and HTML unescaping: printable ASCII but "&", and \t \n \r.
_PLAIN_BYTES = bytes([*range(0x20, 0x26), *range(0x27, 0x7F), 0x09, 0x0A, 0x0D])
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_MAX_MEMO_LEN = 256  # texts up to this length that need ftfy have their cleaned form memoised


def is_plain(text: str) -> bool:
    """True when ``text`` is printable ASCII without ``&`` (tabs, line feeds, carriage returns allowed):
    ftfy and HTML unescaping then change nothing but line breaks.

    Example:
        >>> is_plain("a photo of a cat."), is_plain("fish &amp; chips"), is_plain("café")
        (True, False, False)
    """
    return text.isascii() and not text.encode("ascii").translate(None, _PLAIN_BYTES)


def basic_clean(text: str) -> str:
    """``ftfy.fix_text``, HTML unescape twice, strip (no shortcut).

    Example:
        >>> basic_clean(" fish &amp;amp; chips ")
        'fish & chips'
    """
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def canonicalize_text(text: str) -> str:
    """big_vision's canonical form: ``_`` to space, ASCII punctuation removed, lower case, single spaces.

    Example:
        >>> canonicalize_text("A_Photo, of: THE cat!")
        'a photo of the cat'
    """
    text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


@lru_cache(maxsize=1 << 16)
def _lower_memo(text: str) -> str:
    return " ".join(basic_clean(text).split()).lower()


def clean_lower(text: str) -> str:
    """CLIP's cleaning: ftfy, HTML unescape (twice), single spaces, lower case.

    Example:
        >>> clean_lower("  A &amp;amp; B\\n\\tC ")
        'a & b c'
    """
    if is_plain(text):
        return " ".join(text.split()).lower()
    if len(text) <= _MAX_MEMO_LEN:
        return _lower_memo(text)
    return " ".join(basic_clean(text).split()).lower()


def clean_whitespace(text: str) -> str:
    """ftfy, HTML unescape (twice), single spaces; case kept.

    Example:
        >>> clean_whitespace(" A\\t&lt;b&gt; ")
        'A <b>'
    """
    if is_plain(text):
        return " ".join(text.split())
    return " ".join(basic_clean(text).split())


def clean_canonicalize(text: str) -> str:
    """ftfy, HTML unescape (twice), then :func:`canonicalize_text`.

    Example:
        >>> clean_canonicalize("A_Photo &amp; the CAT!")
        'a photo the cat'
    """
    return canonicalize_text(text if is_plain(text) else basic_clean(text))


_CLEAN_FNS = {"lower": clean_lower, "whitespace": clean_whitespace, "canonicalize": clean_canonicalize}


def get_clean_fn(name: str) -> Callable[[str], str]:
    """The cleaning function called ``name``: ``"lower"``, ``"whitespace"`` or ``"canonicalize"``.

    Example:
        >>> get_clean_fn("lower")("A  Cat")
        'a cat'
    """
    try:
        return _CLEAN_FNS[name]
    except (KeyError, TypeError):
        raise ValueError(f"clean must be one of {sorted(_CLEAN_FNS)}, got {name!r}") from None


def as_text_list(texts) -> list[str]:
    """``texts`` (one string or an iterable of strings) as a list; a non-string item raises naming its index.

    Example:
        >>> as_text_list("a cat")
        ['a cat']
        >>> as_text_list(["a cat", 3])
        Traceback (most recent call last):
        ...
        TypeError: texts[1] must be str, got int
    """
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be str, got {type(text).__name__}")
    return texts
