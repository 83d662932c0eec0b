"""Tokenizers: CLIP BPE (exactly open_clip's) and Hugging Face tokenizers for the other text towers."""

from .clip_bpe import CLIPTokenizer, SimpleTokenizer, clean_text
from .hf import HFTokenizer, canonicalize_text

__all__ = ["CLIPTokenizer", "HFTokenizer", "SimpleTokenizer", "canonicalize_text", "clean_text"]
