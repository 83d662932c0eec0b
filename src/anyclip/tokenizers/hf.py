"""Hugging Face tokenizers (BERT for CLIPA, XLM-V / mT5 for MetaCLIP worldwide), as open_clip uses them."""

from __future__ import annotations

import string
from typing import Sequence

import numpy as np

from .clip_bpe import as_text_list, clean_text

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _basic_clean(text: str) -> str:
    import html

    import ftfy
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _clean_whitespace(text: str) -> str:
    return " ".join(_basic_clean(text).split())


def _clean_lower(text: str) -> str:
    return clean_text(text)


def canonicalize_text(text: str) -> str:
    """big_vision's canonical form: ``_`` -> space, punctuation removed, lower case, single spaces.

    Example:
        >>> canonicalize_text("A_Photo, of: THE cat!")
        'a photo of the cat'
    """
    text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


CLEAN_FUNCTIONS = {
    "whitespace": _clean_whitespace,
    "lower": _clean_lower,
    "canonicalize": lambda text: canonicalize_text(_basic_clean(text)),
}


class HFTokenizer:
    """A ``transformers`` tokenizer used the way open_clip's ``HFTokenizer`` uses it.

    Texts are cleaned (``clean``: whitespace / lower / canonicalize), tokenized with padding to
    ``context_length`` and truncation; ``strip_sep_token`` turns the separator token into padding (0);
    ``language`` sets NLLB-style source-language tokens. Returns int32 ``[batch, context_length]``.

    Example:
        >>> tok = HFTokenizer("bert-base-uncased", context_length=32, strip_sep_token=True)  # doctest: +SKIP
        >>> tok(["a photo of a cat"]).shape  # doctest: +SKIP
        (1, 32)
    """

    def __init__(self, name_or_path: str, context_length: int = 77, clean: str = "whitespace",
                 strip_sep_token: bool = False, language: str | None = None, cache_dir: str | None = None,
                 **kwargs):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ImportError(f"the tokenizer {name_or_path!r} needs the transformers package: "
                              "pip install transformers") from None
        if clean not in CLEAN_FUNCTIONS:
            raise ValueError(f"clean must be one of {sorted(CLEAN_FUNCTIONS)}, got {clean!r}")
        self.name = name_or_path
        self.context_length = context_length
        self.clean = clean
        self.clean_fn = CLEAN_FUNCTIONS[clean]
        self.strip_sep_token = strip_sep_token
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, cache_dir=cache_dir, **kwargs)
        self.vocab_size = len(self.tokenizer)
        self.pad_token_id = self.tokenizer.pad_token_id or 0
        if language is not None:
            self.set_language(language)

    def set_language(self, language: str) -> None:
        """Select the source language (NLLB-style tokenizers); raises if the tokenizer has none."""
        setter = getattr(self.tokenizer, "set_src_lang_special_tokens", None)
        if not callable(setter):
            raise ValueError(f"tokenizer {self.name!r} has no source-language setting")
        setter(language)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> np.ndarray:
        """Tokenize to ``int32 [batch, context_length]``."""
        texts = as_text_list(texts)
        length = context_length or self.context_length
        ids = self.tokenizer([self.clean_fn(t) for t in texts], return_tensors="np", max_length=length,
                             padding="max_length", truncation=True)["input_ids"]
        ids = np.asarray(ids, dtype=np.int64)
        if self.strip_sep_token and self.tokenizer.sep_token_id is not None:
            ids = np.where(ids == self.tokenizer.sep_token_id, 0, ids)
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        """Text of one row of ids, without special tokens."""
        return self.tokenizer.decode(np.asarray(ids).reshape(-1).tolist(), skip_special_tokens=True)

    def save_pretrained(self, folder: str) -> None:
        """Save the underlying tokenizer files to ``folder``."""
        self.tokenizer.save_pretrained(folder)

    def __repr__(self):
        return f"HFTokenizer({self.name!r}, context_length={self.context_length}, clean={self.clean!r})"
