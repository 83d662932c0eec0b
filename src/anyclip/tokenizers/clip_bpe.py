"""The CLIP byte-pair-encoding tokenizer: same ids as ``open_clip.tokenizer.SimpleTokenizer``, batch-first and fast.

How a text becomes ids (the result is the one open_clip's pure-Python tokenizer gives):

1. Clean: ``ftfy.fix_text``, HTML unescape twice, whitespace collapsed to single spaces, lower case.
2. Split into words with CLIP's pattern (the two special-token literals, the contractions ``'s 't 're 've
   'm 'll 'd`` matched case-insensitively, letter runs, single digits, runs of anything else that is not
   white space).
3. Each word: its UTF-8 bytes mapped to printable characters (GPT-2's reversible table), then BPE merges
   with the ``</w>`` end-of-word marker. The merges run in the Rust ``tokenizers`` BPE model.
4. ``[sot] + ids + [eot]``; when longer than the context length it is cut and ``eot`` is written into the
   last slot; zero padding after.

Why this is fast while giving the same ids:

* No word match in step 2 contains white space, so the words of a cleaned text are the words of its
  space-separated chunks taken one chunk at a time. A chunk's ids depend on the chunk alone, so they are
  memoised per chunk; in the common case a whole text is one ``str.split`` plus dictionary look-ups that
  run in C. Chunks not seen before are split into words and each distinct word goes once through the
  Rust BPE model (``BPE.tokenize``; a ``Tokenizer.encode_batch`` round trip measured 4x slower per word,
  most of it building ``Encoding`` objects).
* Plain ASCII text (printable, no ``&``; tabs and line breaks allowed) skips ftfy and HTML unescaping,
  which provably change nothing in it but white space (see :mod:`.cleaning`). Other text takes the
  full cleaning, memoised for short strings.
* Truncation stops reading ids once the row is full; rows are written into the array in one step.
"""

from __future__ import annotations

import gzip
from importlib import resources
from itertools import chain, islice
from typing import Sequence

import numpy as np
import regex

from ..models.layout import resolve_output, token_output
from .cleaning import (
    _PLAIN_BYTES,
    as_text_list,
    clean_canonicalize,
    clean_lower,
    clean_whitespace,
)

__all__ = ["CLIPTokenizer", "SimpleTokenizer"]

SOT_TEXT = "<start_of_text>"
EOT_TEXT = "<end_of_text>"
DEFAULT_CONTEXT_LENGTH = 77
_NUM_MERGES = 49152 - 256 - 2  # merges used from the vocabulary file (after its header line)

# Word pattern of CLIP (the ``regex`` module, case-insensitive: note that "'ſ" matches "'s").
_WORDS = regex.compile(
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)
_MAX_CACHED_CHUNK = 64  # longer chunks are encoded every time rather than memoised
_MAX_CACHE_ENTRIES = 1 << 20  # the chunk memo is emptied when it grows past this


def _byte_to_char() -> dict[int, str]:
    """GPT-2 / CLIP reversible table from the 256 byte values to printable characters.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes get code points from 256 upwards.
    The insertion order (printable bytes first, then the rest) is the order of the first 256 ids.
    """
    table = {b: chr(b) for b in [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]}
    extra = [b for b in range(256) if b not in table]
    table.update((b, chr(256 + n)) for n, b in enumerate(extra))
    return table


# A cleaned text's space-separated chunks, per ``clean`` option; plain ASCII skips ftfy (see cleaning.py).
def _chunks_lower(text: str) -> list[str]:
    if text.isascii() and not text.encode("ascii").translate(None, _PLAIN_BYTES):
        return text.lower().split()
    return clean_lower(text).split()


def _chunks_whitespace(text: str) -> list[str]:
    return clean_whitespace(text).split()


def _chunks_canonicalize(text: str) -> list[str]:
    return clean_canonicalize(text).split()


_CHUNKERS = {"lower": _chunks_lower, "whitespace": _chunks_whitespace, "canonicalize": _chunks_canonicalize}


def _resolve_length(context_length, default) -> int:
    length = context_length or default  # as open_clip: 0 / None mean "the tokenizer's own"
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"context_length must be a positive int, got {length!r}")
    return int(length)


class CLIPTokenizer:
    """OpenAI CLIP's BPE tokenizer: ``tok(texts) -> int32 [batch, context_length]``.

    Gives the ids of ``open_clip.tokenizer.SimpleTokenizer()(texts, context_length)`` (start token 49406,
    end token 49407, cut to the context length with the end token kept last, zero padding), as an int32
    numpy array, or with ``output="torch"`` (what ``"auto"``, the default, gives on the torch backend) as
    open_clip's int64 torch tensor.

    Args:
        context_length: default length of the rows (77 for every CLIP model).
        clean: ``"lower"`` (CLIP's), ``"whitespace"`` (no lower-casing) or ``"canonicalize"`` (punctuation
            removed), as open_clip's ``clean`` argument.
        vocab_path: a ``bpe_simple_vocab_16e6.txt.gz``-format merge list; the bundled one by default.
        output: ``"auto"``, ``"numpy"`` or ``"torch"`` (see :mod:`anyclip.models.layout`).

    Example:
        >>> tok = CLIPTokenizer(output="numpy")
        >>> ids = tok(["a photo of a cat", "a dog"])
        >>> ids.shape, ids.dtype
        ((2, 77), dtype('int32'))
        >>> ids[0, :7].tolist()
        [49406, 320, 1125, 539, 320, 2368, 49407]
        >>> tok.decode(ids[0])
        'a photo of a cat'
    """

    def __init__(self, context_length: int = DEFAULT_CONTEXT_LENGTH, clean: str = "lower",
                 vocab_path: str | None = None, output: str = "auto"):
        resolve_output(output)  # checks the value; "auto" is resolved at each call
        self.output = output
        self.context_length = None if context_length is None else _resolve_length(context_length, None)
        if clean not in _CHUNKERS:
            raise ValueError(f"clean must be one of {sorted(_CHUNKERS)}, got {clean!r}")
        self.clean = clean
        self._chunker = _CHUNKERS[clean]

        merges = self._read_merges(vocab_path)
        byte_to_char = _byte_to_char()
        chars = list(byte_to_char.values())
        tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [SOT_TEXT, EOT_TEXT]
        self._id_to_token = tokens
        self._sot, self._eot = len(tokens) - 2, len(tokens) - 1
        self._char_to_byte = {c: b for b, c in byte_to_char.items()}
        # bytes -> chars as a str.translate table over latin-1 code points (byte value == code point)
        self._latin1_to_chars = str.maketrans({chr(b): c for b, c in byte_to_char.items()})
        self._special_ids = {SOT_TEXT: self._sot, EOT_TEXT: self._eot}
        self._bpe = self._build_bpe(tokens, merges)  # Rust BPE; its input is one byte-mapped word
        self._cache: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _read_merges(vocab_path) -> list[tuple[str, str]]:
        if vocab_path is None:
            raw = resources.files(__package__).joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
        else:
            with open(vocab_path, "rb") as f:
                raw = f.read()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")[1:_NUM_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        bad = [m for m in merges if len(m) != 2]
        if bad or len(merges) != _NUM_MERGES:
            raise ValueError(f"{vocab_path or 'bundled vocabulary'} is not a CLIP BPE merge list")
        return merges

    @staticmethod
    def _build_bpe(tokens, merges):
        from tokenizers.models import BPE

        vocab = {tok: i for i, tok in enumerate(tokens[:-2])}
        return BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix="")

    # ------------------------------------------------------------------ properties
    @property
    def vocab_size(self) -> int:
        """Number of token ids (49408)."""
        return len(self._id_to_token)

    @property
    def sot_token_id(self) -> int:
        """Id of ``<start_of_text>`` (49406)."""
        return self._sot

    @property
    def eot_token_id(self) -> int:
        """Id of ``<end_of_text>`` (49407)."""
        return self._eot

    @property
    def pad_token_id(self) -> int:
        """Id used for padding (0)."""
        return 0

    # ------------------------------------------------------------------ encoding
    def _encode_chunks(self, chunks: list[str]) -> dict[str, tuple[int, ...]]:
        """Ids of each chunk (CLIP word split, byte mapping, Rust BPE per distinct word); memoises short ones."""
        specials = self._special_ids
        to_chars = self._latin1_to_chars
        tokenize = self._bpe.tokenize
        word_ids: dict[str, tuple[int, ...]] = {}
        out = {}
        for chunk in chunks:
            ids = []
            for word in _WORDS.findall(chunk):
                if word in specials:  # only the exact lower-case literals, as open_clip
                    ids.append(specials[word])
                    continue
                found = word_ids.get(word)
                if found is None:
                    mapped = word.encode("utf-8").decode("latin-1").translate(to_chars)
                    found = word_ids[word] = tuple(t.id for t in tokenize(mapped))
                ids.extend(found)
            out[chunk] = tuple(ids)
        cache = self._cache
        cache.update((c, ids) for c, ids in out.items() if len(c) <= _MAX_CACHED_CHUNK)
        return out

    def _lookup(self, chunk_lists: list[list[str]], row=list) -> list:
        """``row(iterator over a text's ids)`` for each text given as its chunks.

        Memoised chunks are plain dictionary look-ups; chunks not seen before are encoded in one batch.
        """
        cache = self._cache
        try:  # common case: everything memoised, the loops run in C
            return [row(chain.from_iterable(map(cache.__getitem__, chunks))) for chunks in chunk_lists]
        except KeyError:
            pass
        if len(cache) > _MAX_CACHE_ENTRIES:
            cache.clear()
        found = self._encode_chunks(list(set(chain.from_iterable(chunk_lists)).difference(cache)))
        try:  # now memoised, unless too long to keep or another thread emptied the memo meanwhile
            return [row(chain.from_iterable(map(cache.__getitem__, chunks))) for chunks in chunk_lists]
        except KeyError:
            pass
        table = dict(found)
        try:
            for chunks in chunk_lists:
                for c in chunks:
                    if c not in table:
                        table[c] = cache[c]
        except KeyError:  # emptied by another thread: encode everything here
            table = self._encode_chunks(list(set(chain.from_iterable(chunk_lists))))
        return [row(chain.from_iterable(map(table.__getitem__, chunks))) for chunks in chunk_lists]

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, cleaned as for :meth:`__call__`, without start/end tokens or truncation.

        Example:
            >>> CLIPTokenizer().encode("Hello world!")
            [3306, 1002, 256]
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        return self._lookup([self._chunker(text)])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of each text.

        Example:
            >>> CLIPTokenizer().encode_batch(["a cat", ""])
            [[320, 2368], []]
        """
        texts = as_text_list(texts)
        chunker = self._chunker
        return self._lookup([chunker(t) for t in texts])

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None):
        """Token ids of a string or a sequence of strings, ``[batch, context_length]``: numpy int32, or with a torch
        ``output`` (``"auto"`` on the torch backend) an int64 torch tensor, as open_clip's.

        Example:
            >>> CLIPTokenizer()("a cat", context_length=5).tolist()
            [[49406, 320, 2368, 49407, 0]]
        """
        return token_output(self._ids(texts, context_length), self.output)

    def _ids(self, texts: str | Sequence[str], context_length: int | None) -> np.ndarray:
        texts = as_text_list(texts)
        length = _resolve_length(context_length, self.context_length)
        chunker, sot, eot = self._chunker, self._sot, self._eot
        if length == 1:  # open_clip: the single slot is overwritten with the end token
            for text in texts:
                chunker(text)  # same errors as for longer rows
            return np.full((len(texts), 1), eot, dtype=np.int32)
        room = length - 2  # [sot, first `room` ids, eot]: open_clip's cut with eot written last
        rows = self._lookup([chunker(t) for t in texts], row=lambda ids: [sot, *islice(ids, room), eot])
        lengths = np.fromiter(map(len, rows), dtype=np.intp, count=len(rows))
        flat = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))
        out = np.zeros((len(rows), length), dtype=np.int32)
        out[np.arange(length) < lengths[:, None]] = flat  # row-major fill; zeros after each end token
        return out

    # ------------------------------------------------------------------ decoding
    def decode(self, ids) -> str:
        """Text of a sequence of ids: the start token is skipped and decoding stops at the end token
        (so padding after it is dropped); ``</w>`` becomes a space; surrounding spaces are stripped.

        Example:
            >>> CLIPTokenizer().decode([49406, 3306, 1002, 256, 49407, 0, 0])
            'hello world !'
        """
        pieces = []
        vocab, n = self._id_to_token, len(self._id_to_token)
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == self._eot:
                break
            if i == self._sot:
                continue
            if not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"token id {i!r} is outside the vocabulary (0..{n - 1})")
            pieces.append(vocab[i])
        data = bytes(self._char_to_byte[c] for c in "".join(pieces))
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def batch_decode(self, ids) -> list[str]:
        """:meth:`decode` of each row of a ``[batch, length]`` array.

        Example:
            >>> tok = CLIPTokenizer()
            >>> tok.batch_decode(tok(["a cat", "two dogs"]))
            ['a cat', 'two dogs']
        """
        return [self.decode(row) for row in np.asarray(ids)]

    def __repr__(self) -> str:
        return (f"CLIPTokenizer(context_length={self.context_length}, clean={self.clean!r}, "
                f"vocab_size={self.vocab_size})")


SimpleTokenizer = CLIPTokenizer


def decode_captions(ids, tokenizer=None) -> list[str]:
    """Caption strings of generated ids: start token skipped, cut at the end token (open_clip's ``decode`` use).

    Example:
        >>> decode_captions([[49406, 320, 2368, 49407, 0]])
        ['a cat']
    """
    tokenizer = tokenizer or CLIPTokenizer()
    if not isinstance(ids, (list, np.ndarray)):
        import keras
        ids = keras.ops.convert_to_numpy(ids)
    ids = np.asarray(ids)
    return [tokenizer.decode(row) for row in np.atleast_2d(ids)]
