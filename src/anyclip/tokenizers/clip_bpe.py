"""The CLIP byte-pair-encoding tokenizer, identical to ``open_clip.SimpleTokenizer``, batch-first and fast.

Pipeline (same results as OpenAI's / open_clip's Python tokenizer):

1. clean: ``ftfy.fix_text``, HTML unescape twice, collapse whitespace, lower-case. Plain ASCII text
   without ``&`` or control characters is left unchanged by ftfy and HTML unescaping, so it skips them.
2. split with CLIP's regular expression (contractions, letter runs, single digits, punctuation runs).
3. each word -> its UTF-8 bytes mapped to printable characters -> BPE merges. The merges run in the
   Rust ``tokenizers`` BPE model; results are memoised per word, so common words cost one dict lookup.
4. ``[sot] + ids + [eot]``, cut to the context length keeping ``eot`` last, zero padded.
"""

from __future__ import annotations

import gzip
import html
import re as _stdlib_re
from importlib import resources
from itertools import chain
from typing import Iterable, Sequence

import ftfy
import numpy as np
import regex

SOT_TEXT, EOT_TEXT = "<start_of_text>", "<end_of_text>"
# Characters for which ftfy.fix_text and html.unescape are provably the identity (printable ASCII
# and the whitespace that cleaning collapses anyway); anything else takes the full ftfy path.
_PLAIN = _stdlib_re.compile(r"[\x20-\x25\x27-\x7e\t\n\r]*\Z")
# After cleaning, ASCII text is lower case with single spaces: there \p{L} is [a-z] and \p{N} is [0-9],
# and the standard library's faster engine gives the same words.
_ASCII_SPLIT = _stdlib_re.compile(r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")
_SPLIT = regex.compile(
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP reversible byte -> printable character table.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def as_text_list(texts) -> list[str]:
    """``texts`` (a string or an iterable of strings) as a list; a non-string item raises naming its index."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
    return texts


def clean_text(text: str) -> str:
    """CLIP's cleaning: ftfy, HTML unescape (twice), whitespace collapse, lower case.

    Example:
        >>> clean_text("  A &amp; B\\n")
        'a & b'
    """
    if not _PLAIN.match(text):
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class CLIPTokenizer:
    """OpenAI CLIP's BPE tokenizer: ``tok(texts) -> int32 [batch, context_length]``.

    Output equals ``open_clip.tokenizer.SimpleTokenizer()(texts)`` (ids, truncation keeping the end
    token, zero padding) as int32 numpy instead of a torch tensor.

    Example:
        >>> tok = CLIPTokenizer()
        >>> tok(["a photo of a cat"])[0, :7].tolist()
        [49406, 320, 1125, 539, 320, 2368, 49407]
        >>> tok.decode(tok(["a photo of a cat"])[0])
        'a photo of a cat'
    """

    def __init__(self, context_length: int = 77, vocab_path: str | None = None):
        if not isinstance(context_length, int) or context_length < 2:
            raise ValueError(f"context_length must be an int >= 2 (room for start and end tokens), got "
                             f"{context_length!r}")
        self.context_length = context_length
        byte_encoder = _bytes_to_unicode()
        self._byte_table = {b: c for b, c in byte_encoder.items()}
        self._latin1_to_unicode = str.maketrans({chr(b): c for b, c in byte_encoder.items()})
        merges = self._read_merges(vocab_path)
        vocab = list(byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + [SOT_TEXT, EOT_TEXT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self._byte_decoder = {c: b for b, c in byte_encoder.items()}
        self.sot_token_id = self.encoder[SOT_TEXT]
        self.eot_token_id = self.encoder[EOT_TEXT]
        self.pad_token_id = 0
        self.vocab_size = len(vocab)
        self._bpe = self._build_bpe(merges)
        self._cache: dict[str, tuple[int, ...]] = {SOT_TEXT: (self.sot_token_id,), EOT_TEXT: (self.eot_token_id,)}

    @staticmethod
    def _read_merges(vocab_path) -> list[tuple[str, str]]:
        if vocab_path is None:
            raw = resources.files("anyclip.tokenizers").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
        else:
            with open(vocab_path, "rb") as f:
                raw = f.read()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        return [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]

    def _build_bpe(self, merges):
        from tokenizers.models import BPE
        vocab = {tok: i for tok, i in self.encoder.items() if tok not in (SOT_TEXT, EOT_TEXT)}
        return BPE(vocab=vocab, merges=list(merges), end_of_word_suffix="</w>", continuing_subword_prefix="",
                   cache_capacity=0)

    # ------------------------------------------------------------------ encoding
    def _word_ids(self, word: str) -> tuple[int, ...]:
        ids = self._cache.get(word)
        if ids is None:
            mapped = word.encode("utf-8").decode("latin-1").translate(self._latin1_to_unicode)
            ids = tuple(t.id for t in self._bpe.tokenize(mapped))
            if len(self._cache) < 1_000_000:
                self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without start/end tokens.

        Example:
            >>> CLIPTokenizer().encode("Hello world!")
            [3306, 1002, 256]
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        return self._encode_clean(clean_text(text))

    def _encode_clean(self, text: str) -> list[int]:
        words = (_ASCII_SPLIT if text.isascii() else _SPLIT).findall(text)
        try:  # common case: every word already memoised, the loop runs in C
            return list(chain.from_iterable(map(self._cache.__getitem__, words)))
        except KeyError:
            return list(chain.from_iterable(map(self._word_ids, words)))

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> np.ndarray:
        """Tokenize a string or a list of strings to ``int32 [batch, context_length]``."""
        texts = as_text_list(texts)
        length = context_length or self.context_length
        if length < 2:
            raise ValueError(f"context_length must be >= 2, got {length}")
        sot, eot, room = self.sot_token_id, self.eot_token_id, length - 2
        encode, plain = self._encode_clean, _PLAIN.match
        rows = [[sot, *encode(" ".join(t.split()).lower() if plain(t) else clean_text(t))[:room], eot]
                for t in texts]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
        out = np.zeros((len(rows), length), dtype=np.int32)
        out[np.arange(length) < lengths[:, None]] = flat  # row-major fill, zero padding after eot
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids: skips the start token and stops at the end token (so padding is dropped).

        Example:
            >>> tok = CLIPTokenizer()
            >>> tok.decode([49406, 3306, 1002, 49407, 0, 0])
            'hello world'
        """
        pieces = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == self.eot_token_id:
                break
            if i == self.sot_token_id:
                continue
            if i not in self.decoder:
                raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            pieces.append(self.decoder[i])
        text = "".join(pieces)
        raw = bytearray(self._byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def batch_decode(self, ids) -> list[str]:
        """:meth:`decode` for each row of ``[batch, length]`` ids."""
        return [self.decode(row) for row in np.asarray(ids)]

    def __repr__(self):
        return f"CLIPTokenizer(context_length={self.context_length}, vocab_size={self.vocab_size})"


SimpleTokenizer = CLIPTokenizer
