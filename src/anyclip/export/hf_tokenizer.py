"""A Hugging Face tokenizer folder that gives the ids of anyclip's :class:`~anyclip.tokenizers.HFTokenizer`
with ``transformers.AutoTokenizer`` alone.

open_clip cleans each text in Python before its Hugging Face tokenizer sees it (``clean``: ``whitespace``,
``lower`` or ``canonicalize``); here that cleaning becomes ``tokenizers`` normalizers put in front of the
tokenizer's own: ftfy's character repairs (from its own tables: ligatures, full-width forms, curly quotes,
control characters, terminal escapes, NFC), ``_`` to space and ASCII punctuation removed (canonicalize),
lower case, runs of Python's white space to one space, ends stripped. ftfy's repairs of mojibake and HTML
unescaping (``&amp;``) have no normalizer and are not reproduced. The folder's ``tokenizer_config.json`` names
the generic ``PreTrainedTokenizerFast`` so that transformers reads ``tokenizer.json`` as written.

Example:
    >>> write_hf_tokenizer(anyclip.get_tokenizer("ViT-B-16-SigLIP2"), "siglip2-hf/", 64)  # doctest: +SKIP
    >>> transformers.AutoTokenizer.from_pretrained("siglip2-hf/")("a cat", padding="max_length",
    ...                                                            max_length=64)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UsageError

# every character Python's str.split() splits on (open_clip's cleaning collapses them to one space)
_PY_SPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


def _char_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):X}}}" for c in chars) + "]"


def _ftfy_normalizers() -> list:
    """ftfy's character-level repairs (its tables): terminal escapes, ligatures, full-width forms, curly
    quotes, control characters removed, NFC."""
    from ftfy import chardata
    from tokenizers import Regex, normalizers
    steps = [normalizers.Replace(Regex(r"\x{1B}\[[0-9;]*[A-Za-z]"), "")]
    for table in (chardata.LIGATURES, chardata.WIDTH_MAP):
        steps += [normalizers.Replace(chr(code), text) for code, text in sorted(table.items())]
    for pattern, quote in ((chardata.SINGLE_QUOTE_RE, "'"), (chardata.DOUBLE_QUOTE_RE, '"')):
        steps.append(normalizers.Replace(Regex(pattern.pattern), quote))
    removed = "".join(chr(code) for code in sorted(chardata.CONTROL_CHARS))
    return steps + [normalizers.Replace(Regex(_char_class(removed)), ""), normalizers.NFC()]


def cleaning_normalizers(clean: str) -> list:
    """``tokenizers`` normalizers doing open_clip's ``clean`` (but ftfy's repairs and HTML unescaping).

    Example:
        >>> from tokenizers import normalizers
        >>> normalizers.Sequence(cleaning_normalizers("canonicalize")).normalize_str(" A_Photo, of: THE cat! ")
        'a photo of the cat'
    """
    from tokenizers import Regex, normalizers
    if clean not in ("whitespace", "lower", "canonicalize"):
        raise UsageError(f"the tokenizer's clean={clean!r} has no transformers equivalent")
    steps = _ftfy_normalizers()
    if clean == "canonicalize":
        steps += [normalizers.Replace("_", " "), normalizers.Replace(Regex(_char_class(string.punctuation)), "")]
    if clean in ("lower", "canonicalize"):
        steps.append(normalizers.Lowercase())
    return steps + [normalizers.Replace(Regex(_char_class(_PY_SPACE) + "+"), " "), normalizers.Strip()]


def write_hf_tokenizer(tokenizer, folder: str | os.PathLike, context_length: int) -> list[str]:
    """Write ``tokenizer`` (an :class:`~anyclip.tokenizers.HFTokenizer`) with its cleaning into ``folder``;
    returns the file names. Calling ``AutoTokenizer.from_pretrained(folder)`` with ``padding="max_length",
    truncation=True, max_length=context_length`` then gives the tokenizer's ids.

    Example:
        >>> write_hf_tokenizer(anyclip.get_tokenizer("ViT-B-16-SigLIP"), "out/", 64)  # doctest: +SKIP
        ['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']
    """
    from tokenizers import Tokenizer, normalizers

    from ..tokenizers import HFTokenizer
    if not isinstance(tokenizer, HFTokenizer):
        raise UsageError(f"a transformers SiglipModel folder needs the model's Hugging Face tokenizer, got "
                         f"{type(tokenizer).__name__}")
    if tokenizer.tokenizer_mode or tokenizer.strip_sep_token:
        raise UsageError("tokenizer_mode / strip_sep_token rewrite ids after tokenizing; transformers cannot")
    hf = tokenizer.tokenizer
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:  # a sentencepiece-only tokenizer: transformers' converter, where it has one
        from transformers import convert_slow_tokenizer as converters
        if type(hf).__name__ not in converters.SLOW_TO_FAST_CONVERTERS:
            raise UsageError(f"the model's tokenizer ({type(hf).__name__}) has no tokenizer.json and transformers "
                             f"cannot convert it; install the tokenizers-backed class of this tokenizer")
        backend = converters.convert_slow_tokenizer(hf)
    backend = Tokenizer.from_str(backend.to_str())  # a copy: the caller's tokenizer stays as it is
    own = [backend.normalizer] if backend.normalizer is not None else []
    backend.normalizer = normalizers.Sequence(cleaning_normalizers(tokenizer.clean) + own)
    backend.no_padding()
    backend.no_truncation()
    folder = Path(folder)
    backend.save(str(folder / "tokenizer.json"))
    special = {k: str(v) for k, v in hf.special_tokens_map.items() if isinstance(v, str)}
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context_length,
         "padding_side": hf.padding_side, "truncation_side": hf.truncation_side, **special}, indent=2))
    atomic_write_text(folder / "special_tokens_map.json", json.dumps(special, indent=2))
    return ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
