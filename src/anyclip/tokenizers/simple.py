"""``SimpleTokenizer`` with open_clip's constructor, and ``tokenize`` / ``decode`` (open_clip's module functions)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from ..models.layout import token_output
from .clip_bpe import CLIPTokenizer

__all__ = ["DEFAULT_BPE_PATH", "SimpleTokenizer", "decode", "tokenize"]

DEFAULT_BPE_PATH = str(Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz"))


class SimpleTokenizer(CLIPTokenizer):
    """CLIP's BPE tokenizer with ``open_clip.SimpleTokenizer``'s arguments (ids: int64 torch tensors on the torch
    backend, int32 numpy arrays elsewhere).

    ``additional_special_tokens`` and ``reduction_mask`` (open_clip's text-reduction strategies) are not
    implemented and raise when set.

    Example:
        >>> SimpleTokenizer()(["a cat"])[0, :4].tolist()
        [49406, 320, 2368, 49407]
    """

    def __init__(self, bpe_path: str = DEFAULT_BPE_PATH, additional_special_tokens: Optional[List[str]] = None,
                 context_length: Optional[int] = 77, clean: str = "lower", reduction_mask: str = ""):
        if additional_special_tokens:
            raise ValueError("additional_special_tokens: extra special tokens are not implemented in anyclip; "
                             "leave it None")
        if reduction_mask:
            raise ValueError(f"reduction_mask={reduction_mask!r}: open_clip's text reduction is not implemented "
                             "in anyclip; leave it ''")
        super().__init__(context_length=context_length, clean=clean, vocab_path=bpe_path)


def tokenize(texts: Union[str, List[str]], context_length: int = 77):
    """Token ids ``int64 [N, context_length]`` of ``texts``, equal to ``open_clip.tokenize``: a torch tensor on the
    torch backend (as open_clip's), a numpy array elsewhere.

    Example:
        >>> tokenize("a cat").shape, tokenize("a cat").dtype
        ((1, 77), dtype('int64'))
    """
    ids = np.asarray(CLIPTokenizer(context_length, output="numpy")(texts), dtype=np.int64)
    return token_output(ids, "auto")


def decode(output_ids):
    """The text of one row of token ids, special tokens and padding included, as ``open_clip.decode``.

    Example:
        >>> decode(tokenize("a cat")[0, :4])
        '<start_of_text>a cat <end_of_text>'
    """
    if not isinstance(output_ids, (list, np.ndarray)):
        import keras
        output_ids = keras.ops.convert_to_numpy(output_ids)
    tokenizer = CLIPTokenizer()
    text = "".join(tokenizer._id_to_token[int(i)] for i in np.asarray(output_ids).reshape(-1))
    data = bytes(tokenizer._char_to_byte.get(c, 0) for c in text if c in tokenizer._char_to_byte)
    return data.decode("utf-8", errors="replace").replace("</w>", " ")
