"""Tokenizers: CLIP's BPE (same ids as open_clip's ``SimpleTokenizer``) and Hugging Face tokenizers
used the way open_clip's ``HFTokenizer`` uses them.

Example:
    >>> from anyclip.tokenizers import CLIPTokenizer
    >>> CLIPTokenizer()(["a photo of a cat"]).shape
    (1, 77)
"""

from .cleaning import canonicalize_text, clean_lower
from .clip_bpe import CLIPTokenizer, SimpleTokenizer, decode_captions
from .hf import HFTokenizer

__all__ = ["CLIPTokenizer", "HFTokenizer", "SimpleTokenizer", "canonicalize_text", "clean_lower", "decode_captions"]
