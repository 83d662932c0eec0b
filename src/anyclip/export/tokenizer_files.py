"""Tokenizer files beside an exported model: a ``tokenizer.json`` the ``tokenizers`` library reads on its own.

CLIP's BPE becomes a ``tokenizers`` pipeline built here (NFC, whitespace runs to one space, lower-casing,
CLIP's word split, byte mapping, BPE with ``</w>`` word ends, start/end tokens, cut to the context length
with the end token kept, zero padding): it gives the ids of :class:`anyclip.tokenizers.CLIPTokenizer`
(``tests/test_export_onnx.py`` checks them on awkward texts). A Hugging Face tokenizer is saved as it is.

Example:
    >>> from tokenizers import Tokenizer
    >>> write_tokenizer(tokenizer, "out/")  # doctest: +SKIP
    >>> Tokenizer.from_file("out/tokenizer.json").encode("a cat").ids[:4]  # doctest: +SKIP
    [49406, 320, 2368, 49407]
"""

from __future__ import annotations

import os
from pathlib import Path

START, END = "<|startoftext|>", "<|endoftext|>"
_CLIP_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def clip_bpe_tokenizer(tokenizer, context_length: int):
    """A ``tokenizers.Tokenizer`` with the ids of anyclip's :class:`~anyclip.tokenizers.CLIPTokenizer`.

    Example:
        >>> from anyclip.tokenizers import CLIPTokenizer
        >>> clip_bpe_tokenizer(CLIPTokenizer(), 77).encode("a photo").ids[:4]
        [49406, 320, 1125, 49407]
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import BPE
    if tokenizer.clean != "lower":
        raise ValueError(f"only CLIP's lower-casing tokenizer can be written as tokenizer.json, not "
                         f"clean={tokenizer.clean!r}")
    tokens = list(tokenizer._id_to_token)
    merges = tokenizer._read_merges(None)  # the bundled list; a tokenizer built from another has other tokens
    if tokens[512:-2] != [a + b for a, b in merges]:
        raise ValueError("only the bundled CLIP BPE vocabulary can be written as tokenizer.json")
    out = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, end_of_word_suffix="</w>",
                        continuing_subword_prefix="", unk_token=END))
    out.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    out.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_WORDS), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    out.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}", special_tokens=[(START, tokenizer.sot_token_id), (END, tokenizer.eot_token_id)])
    out.decoder = decoders.BPEDecoder(suffix="</w>")
    out.add_special_tokens([AddedToken(START), AddedToken(END)])
    out.enable_truncation(context_length)
    out.enable_padding(length=context_length, pad_id=tokenizer.pad_token_id, pad_token="!")
    return out


def write_tokenizer(tokenizer, folder: str | os.PathLike, context_length: int) -> list[str]:
    """Write ``tokenizer``'s files into ``folder``; returns their names (``["tokenizer.json"]`` for CLIP's BPE).

    Example:
        >>> write_tokenizer(anyclip.get_tokenizer("ViT-B-32"), "out/", 77)  # doctest: +SKIP
        ['tokenizer.json']
    """
    from ..tokenizers import CLIPTokenizer, HFTokenizer
    folder = Path(folder)
    if isinstance(tokenizer, CLIPTokenizer):
        clip_bpe_tokenizer(tokenizer, context_length).save(str(folder / "tokenizer.json"))
        return ["tokenizer.json"]
    if isinstance(tokenizer, HFTokenizer):
        before = set(os.listdir(folder))
        tokenizer.tokenizer.save_pretrained(str(folder))
        return sorted(set(os.listdir(folder)) - before)
    raise TypeError(f"cannot write tokenizer files for {type(tokenizer).__name__}")
