"""Hugging Face tokenizers (BERT, RoBERTa, XLM-R / XLM-V, mT5, NLLB, SigLIP's) as open_clip uses them.

open_clip's ``HFTokenizer`` cleans each text (``clean``), then calls the ``transformers`` tokenizer with
``max_length=context_length, padding="max_length", truncation=True``; ``strip_sep_token`` turns the
separator token into 0 afterwards; ``language`` selects NLLB-style source-language tokens; the
``tokenizer_mode="clips"`` variant lays rows out as ``[bos] text [eos] pad... [cls]``. This wrapper gives
the same ids as an int32 numpy array, or as open_clip's int64 torch tensor with a torch ``output`` (what
``output="auto"`` gives on the torch backend).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..models.layout import resolve_output, token_output
from .cleaning import as_text_list, get_clean_fn

__all__ = ["HFTokenizer"]


def _auto_tokenizer():
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ImportError("HFTokenizer needs the Hugging Face transformers package: pip install transformers") \
            from e
    return AutoTokenizer


class HFTokenizer:
    """A ``transformers`` tokenizer used the way open_clip's ``HFTokenizer`` uses it.

    Args:
        name_or_path: hub id or local folder, passed to ``transformers.AutoTokenizer.from_pretrained``.
        context_length: default row length.
        clean: ``"whitespace"`` (default), ``"lower"`` or ``"canonicalize"``, as open_clip.
        strip_sep_token: replace the separator token id (e.g. BERT's ``[SEP]``) with 0.
        language: source language for tokenizers that have one (NLLB: ``"fra_Latn"`` ...), set as open_clip
            does (``set_src_lang_special_tokens``). With ``transformers`` NLLB tokenizers this has no effect
            (each call re-applies the tokenizer's ``src_lang``), in open_clip too; pass ``src_lang="fra_Latn"``
            (a ``from_pretrained`` keyword) to select the language.
        cache_dir: Hugging Face cache folder.
        tokenizer_mode: ``None`` or ``"clips"`` (open_clip's CLIPS layout).
        output: ``"auto"`` (torch int64 on the torch backend, numpy int32 elsewhere), ``"numpy"`` or ``"torch"``.
        **kwargs: passed to ``AutoTokenizer.from_pretrained``.

    Calling it returns ids ``[batch, context_length]`` (int32 numpy, or int64 torch; see ``output``).

    Example:
        >>> tok = HFTokenizer("bert-base-uncased", context_length=32, strip_sep_token=True)  # doctest: +SKIP
        >>> tok(["a photo of a cat"])[0, :7].tolist()  # doctest: +SKIP
        [101, 1037, 6302, 1997, 1037, 4937, 0]
    """

    def __init__(self, name_or_path: str, context_length: int | None = 77, clean: str = "whitespace",
                 strip_sep_token: bool = False, language: str | None = None, cache_dir: str | None = None,
                 tokenizer_mode: str | None = None, output: str = "auto", **kwargs):
        self.clean_fn = get_clean_fn(clean)  # invalid names fail before any download
        resolve_output(output)  # checks the value; "auto" is resolved at each call
        self.output = output
        if tokenizer_mode not in (None, "", "clips"):
            raise ValueError(f"tokenizer_mode must be None or 'clips', got {tokenizer_mode!r}")
        self.name = name_or_path
        self.context_length = context_length
        self.clean = clean
        self.strip_sep_token = strip_sep_token
        self.tokenizer_mode = tokenizer_mode or ""
        self.tokenizer = _auto_tokenizer().from_pretrained(name_or_path, cache_dir=cache_dir, **kwargs)
        if language is not None:
            self.set_language(language)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return len(self.tokenizer)

    @property
    def pad_token_id(self) -> int:
        """Id used for padding (the tokenizer's pad token)."""
        return self.tokenizer.pad_token_id

    def set_language(self, src_lang: str) -> None:
        """Select the source language of tokenizers that have one (NLLB); warns otherwise, as open_clip."""
        setter = getattr(self.tokenizer, "set_src_lang_special_tokens", None)
        if callable(setter):
            setter(src_lang)
        else:
            warnings.warn(f"tokenizer {self.name!r} has no source-language setting; language "
                          f"{src_lang!r} ignored", stacklevel=2)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None):
        """Token ids of a string or a sequence of strings, ``[batch, context_length]`` (see ``output``)."""
        return token_output(self._ids(texts, context_length), self.output)

    def _ids(self, texts: str | Sequence[str], context_length: int | None) -> np.ndarray:
        texts = as_text_list(texts)
        length = context_length or self.context_length
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"context_length must be a positive int, got {length!r}")
        length = int(length)
        if not texts:
            return np.zeros((0, length), dtype=np.int32)
        texts = [self.clean_fn(t) for t in texts]
        if self.tokenizer_mode == "clips":
            return self._clips_rows(texts, length)
        ids = self.tokenizer(texts, max_length=length, padding="max_length", truncation=True,
                             return_tensors="np")["input_ids"]
        ids = np.asarray(ids, dtype=np.int64)
        sep = self.tokenizer.sep_token_id
        if self.strip_sep_token and sep is not None:
            ids[ids == sep] = 0
        return ids.astype(np.int32)

    def _clips_rows(self, texts: list[str], length: int) -> np.ndarray:
        # [bos] + text ids[:length - 3] + [eos], cut to length - 1, padded with the pad id, then [cls]
        # (the slice as open_clip writes it, so lengths below 3 behave the same).
        tk = self.tokenizer
        encoded = tk(texts, add_special_tokens=False, padding=False, truncation=False)["input_ids"]
        out = np.zeros((len(texts), length), dtype=np.int32)
        for i, ids in enumerate(encoded):
            row = ([tk.bos_token_id] + list(ids)[:length - 3] + [tk.eos_token_id])[:length - 1]
            row += [tk.pad_token_id] * (length - 1 - len(row)) + [tk.cls_token_id]
            out[i, :len(row)] = row
        return out

    def decode(self, ids) -> str:
        """Text of one row of ids, special tokens and padding left out.

        Example:
            >>> tok = HFTokenizer("bert-base-uncased")  # doctest: +SKIP
            >>> tok.decode(tok("A photo of a cat")[0])  # doctest: +SKIP
            'a photo of a cat'
        """
        return self.tokenizer.decode(np.asarray(ids).reshape(-1).tolist(), skip_special_tokens=True)

    def save_pretrained(self, dest: str) -> None:
        """Write the tokenizer's files to the folder ``dest``."""
        self.tokenizer.save_pretrained(dest)

    def __repr__(self) -> str:
        return (f"HFTokenizer({self.name!r}, context_length={self.context_length}, clean={self.clean!r}, "
                f"strip_sep_token={self.strip_sep_token})")
